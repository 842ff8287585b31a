"""From a desired deployment and its unpacked artifact to the spec of one replica process.

This is where secrets are opened: only here, only when a process is about to start. The environment
a workload sees is, lowest precedence first: the artifact's own env, its configuration, its
connections, Cellplane's metadata (``CELLPLANE_*``) and the port variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.dataplane.limits import Limits, parse_cpu, parse_memory
from cellplane.dataplane.network import Network
from cellplane.dataplane.probes import ProbeSpec
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.sandbox import Isolation, workspace_env
from cellplane.dataplane.supervisor import FileMount, ReplicaSpec
from cellplane.gateway.auth import TOKEN_PATH
from cellplane.runtime.launch import Launch, literal_port, read_manifest
from cellplane.sealing import open_sealed
from cellplane.urlscheme import route_prefix

PORT_VARIABLES = ("PORT", "HOST", "FLASK_RUN_PORT", "FLASK_RUN_HOST", "UVICORN_PORT", "UVICORN_HOST",
                  "GUNICORN_CMD_ARGS")


class Unresolvable(Exception):
    """A connection cannot be given a URL on this data plane (its listener is not open)."""


def place(d: dict[str, Any], name: str) -> str:
    """The associated data a secret of this deployment was sealed with."""
    return f"{d['environment']}/{d['project']}/{d['component']}/{name}"


def declared_port(d: dict[str, Any], tree: Path) -> int | None:
    endpoints = d.get("endpoints") or []
    if endpoints:
        return int(endpoints[0]["port"])
    port = read_manifest(tree).get("port")
    return int(port) if port else None


def binds_literally(d: dict[str, Any], tree: Path) -> bool:
    """Whether the start command names the declared port itself: then only one replica fits, and a new
    release can only start once the old one has let go of the port."""
    manifest = read_manifest(tree)
    run = (manifest.get("processes") or {}).get("web") or manifest.get("run")
    return literal_port(run, declared_port(d, tree))


def connection_env(d: dict[str, Any], network: Network, key: X25519PrivateKey) -> dict[str, str]:
    env: dict[str, str] = {}
    for conn in d.get("connections") or []:
        if conn.get("state") != "resolved":
            continue
        values = _connection_values(d, conn, network, key)
        for item in conn.get("env") or []:
            value = values.get(item["from"])
            if value is not None:
                env[item["to"]] = value
    return env


def _connection_values(d: dict[str, Any], conn: dict[str, Any], network: Network,
                       key: X25519PrivateKey) -> dict[str, str]:
    via = conn.get("via")
    if via == "url":
        return {"ServiceURL": conn["url"]}
    target = conn["target"]
    # a connection inside the project carries the cell's credential in its URL: the cell listener serves no one else
    base = (network.cell_base(d["environment"], d["project"]) if via == "cell"
            else network.base(cast(str, via), d["environment"]))
    if base is None:
        raise Unresolvable(f"connection '{conn['name']}': the {via} listener of {d['environment']} is not open")
    values = {"ServiceURL": base + route_prefix(target["project"], target["component"], target.get("version", "v1"),
                                                target.get("basePath", "/"))}
    credentials = conn.get("credentials")
    if credentials:
        secret = open_sealed(key, credentials["consumerSecret"]["sealed"], place(d, f"connection:{conn['name']}"))
        internal = network.base("internal", d["environment"])
        values.update({"ConsumerKey": credentials["consumerKey"], "ConsumerSecret": secret, "APIKey": secret,
                       "TokenURL": (internal or "") + TOKEN_PATH.decode()})
    return values


def configuration(d: dict[str, Any], key: X25519PrivateKey) -> tuple[dict[str, str], list[FileMount]]:
    env = {}
    for item in d.get("env") or []:
        if "sealed" in item:
            env[item["name"]] = open_sealed(key, item["sealed"], place(d, item["name"]))
        elif item.get("value") is not None:
            env[item["name"]] = item["value"]
    files = []
    for item in d.get("files") or []:
        if "sealed" in item:
            content, secret = open_sealed(key, item["sealed"], place(d, item["name"])), True
        else:
            content, secret = item.get("content") or "", False
        files.append(FileMount(item["name"], item["mountPath"], content.encode(), secret))
    return env, files


def probe(raw: dict[str, Any] | None) -> ProbeSpec | None:
    if not raw:
        return None
    return ProbeSpec(path=raw.get("path"), port=raw.get("port"), initial_delay=raw.get("initialDelaySeconds", 0),
                     period=raw.get("periodSeconds", 1), timeout=raw.get("timeoutSeconds", 1),
                     failure_threshold=raw.get("failureThreshold", 3))


def limits(d: dict[str, Any]) -> Limits:
    resources = d.get("resources") or {}
    return Limits(memory_bytes=parse_memory(resources["memory"]) if resources.get("memory") else None,
                  cpu_millis=parse_cpu(resources["cpu"]) if resources.get("cpu") else None)


def replica_spec(d: dict[str, Any], index: int, launch: Launch, tree: Path, network: Network,
                 key: X25519PrivateKey, run_dir: Path, run: str | None = None,
                 isolation: Isolation | None = None) -> ReplicaSpec:
    """The spec of replica ``index`` of deployment ``d``'s release, or (``run`` given) of that task run."""
    task = run is not None
    config_env, files = configuration(d, key)
    env = dict(launch.env)
    sandbox = None
    if isolation is not None:
        # its own user per environment/project/component; it reads its tree and runtime, nothing else of ours
        runtime = [Path(launch.env["VIRTUAL_ENV"])] if launch.env.get("VIRTUAL_ENV") else []
        modules = launch.cwd / "node_modules"
        if modules.is_symlink():
            runtime.append(modules.resolve())
        sandbox = isolation.sandbox(f"{d['environment']}/{d['project']}/{d['component']}", [tree, *runtime])
    if sandbox is not None:
        # a home and a temporary directory of its own (the agent's would be hidden), where package managers'
        # caches go too (the shared ones are hidden); its configuration may still set them
        home = workspace_env(run_dir)
        env.update(home)
        env.update({name: str(Path(home["HOME"]) / ".cache" / sub) for name, sub in (
            ("UV_CACHE_DIR", "uv"), ("PIP_CACHE_DIR", "pip"), ("npm_config_cache", "npm")) if name in env})
    env.update(config_env)
    env.update(connection_env(d, network, key))
    env.update({"CELLPLANE_ENVIRONMENT": d["environment"], "CELLPLANE_PROJECT": d["project"],
                "CELLPLANE_COMPONENT": d["component"], "CELLPLANE_RELEASE": d["release"],
                "CELLPLANE_REPLICA": str(index)})
    env.update({k: launch.env[k] for k in PORT_VARIABLES if k in launch.env})
    health = d.get("health") or {}
    has_port = bool(d.get("endpoints")) and not task
    identity = ReplicaId(d["environment"], d["project"], d["component"], d["id"], d["release"], index, run)
    if run is not None:
        env["CELLPLANE_TASK_RUN"] = run
    return ReplicaSpec(
        key=identity.key, identity=identity,
        argv=launch.argv, cwd=launch.cwd, env=env,
        port=launch.port if has_port else None,
        declared_port=declared_port(d, tree) if has_port else None,
        readiness=probe(health.get("readiness")) if has_port else None,
        liveness=probe(health.get("liveness")),
        restart="never" if task else "always",
        grace=float(health.get("gracePeriodSeconds", 10)),
        limits=limits(d), files=files, run_dir=run_dir, sandbox=sandbox,
    )
