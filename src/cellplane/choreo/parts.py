"""What has been read from a descriptor, and how it becomes a spec with every clash resolved."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cellplane.choreo.walker import Walker


@dataclass
class Connection:
    """A Choreo connection that maps onto a Cellplane dependency on a component."""

    name: str
    choreo_name: str  # as written in Choreo, for configurations.env connectionRef look-ups
    path: str
    component: str
    project: str | None
    env: list[tuple[str, str]] = field(default_factory=list)  # (Cellplane value, env variable)
    default_keys: tuple[str, ...] = ()  # keys Choreo injects as CHOREO_<NAME>_<KEY> unless renamed


@dataclass
class Parts:
    """Spec pieces in file order, each with the key path it came from (for warnings)."""

    endpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    unmapped: dict[str, str] = field(default_factory=dict)  # Choreo connection name -> why it was left out
    env: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    files: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    proxy: dict[str, Any] | None = None
    source: dict[str, Any] | None = None

    def assemble(self, w: Walker) -> dict[str, Any]:
        """The spec, with every clash Cellplane would reject resolved (and reported) here."""
        endpoints = self._endpoints(w)
        files = self._files(w)
        claimed: set[str] = set()  # environment variable names; connections claim theirs first
        dependencies = self._dependencies(w, claimed)
        env = self._env(w, claimed)
        spec: dict[str, Any] = {"endpoints": endpoints, "dependencies": dependencies,
                                "configuration": {"env": env, "files": files}}
        if self.proxy is not None:
            spec["type"] = "api-proxy"
            spec["proxy"] = self.proxy
        if self.source:
            spec["source"] = self.source
        return spec

    def _endpoints(self, w: Walker) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        routes: dict[tuple[int, str], str] = {}
        for path, ep in self.endpoints:
            route = (ep["port"], ep["basePath"])
            if route in routes:
                w.warn(path, f"port {route[0]} with base path {route[1]} is already served by "
                             f"{routes[route]}; endpoint left out")
                continue
            routes[route] = path
            ep["name"] = _unique(w, path + ".name", ep["name"], names)
            out.append(ep)
        return out

    def _dependencies(self, w: Walker, claimed: set[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        for conn in self.connections:
            renamed = {value for value, _ in conn.env}
            defaults = [(k, f"CHOREO_{_env_word(conn.choreo_name)}_{k.upper()}")
                        for k in conn.default_keys if k not in renamed]
            env = []
            for value, variable in conn.env + defaults:
                if variable in claimed:
                    w.warn(conn.path, f"environment variable {variable} is already set elsewhere; "
                                      f"{value} not injected again")
                    continue
                claimed.add(variable)
                env.append({"from": value, "to": variable})
            dep: dict[str, Any] = {"name": _unique(w, conn.path + ".name", conn.name, names),
                                   "component": conn.component}
            if conn.project:
                dep["project"] = conn.project
            dep["env"] = env
            out.append(dep)
        return out

    def _env(self, w: Walker, claimed: set[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path, var in self.env:
            if var["name"] in claimed:
                w.warn(path, f"environment variable {var['name']} is already set elsewhere; left out")
                continue
            claimed.add(var["name"])
            out.append(var)
        return out

    def _files(self, w: Walker) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        mounts: set[str] = set()
        for path, item in self.files:
            if item["mountPath"] in mounts:
                w.warn(path, f"another file is already mounted at {item['mountPath']}; left out")
                continue
            mounts.add(item["mountPath"])
            item["name"] = _unique(w, path + ".name", item["name"], names)
            out.append(item)
        return out


def _unique(w: Walker, path: str, name: str, used: set[str]) -> str:
    out, n = name, 1
    while out in used:
        n += 1
        suffix = f"-{n}"
        out = name[: 63 - len(suffix)].rstrip("-") + suffix
    if out != name:
        w.warn(path, f"'{name}' is used more than once; using '{out}'")
    used.add(out)
    return out


def _env_word(name: str) -> str:
    """Choreo's spelling of a connection name inside CHOREO_<NAME>_<KEY>."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")
