"""From a desired deployment and its unpacked artifact to the spec of one replica process.

This is where secrets are opened: only here, only when a process is about to start. The environment
a workload sees is, lowest precedence first: the artifact's own env, its configuration, its
connections, Cellplane's metadata (``CELLPLANE_*``) and the port variables. It reads the deployment as the
contract's ``DesiredDeployment`` (parsed once by the agent's loop).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import DesiredConnection, DesiredDeployment, DesiredProbe
from cellplane.contract.urlscheme import route_prefix
from cellplane.dataplane.limits import Limits, parse_cpu, parse_memory
from cellplane.dataplane.network import Network
from cellplane.dataplane.probes import ProbeSpec
from cellplane.dataplane.replicaid import ReplicaId
from cellplane.dataplane.sandbox import Isolation, workspace_env
from cellplane.dataplane.supervisor import FileMount, ReplicaSpec
from cellplane.gateway.auth import TOKEN_PATH
from cellplane.runtime.launch import Launch, literal_port, read_manifest
from cellplane.sealing import open_sealed

PORT_VARIABLES = ("PORT", "HOST", "FLASK_RUN_PORT", "FLASK_RUN_HOST", "UVICORN_PORT", "UVICORN_HOST",
                  "GUNICORN_CMD_ARGS")


class Unresolvable(Exception):
    """A connection cannot be given a URL on this data plane (its listener is not open)."""


def place(d: DesiredDeployment, name: str) -> str:
    """The associated data a secret of this deployment was sealed with."""
    return f"{d.environment}/{d.project}/{d.component}/{name}"


def declared_port(d: DesiredDeployment, tree: Path) -> int | None:
    if d.endpoints:
        return int(d.endpoints[0].port)
    port = read_manifest(tree).get("port")
    return int(port) if port else None


def binds_literally(d: DesiredDeployment, tree: Path) -> bool:
    """Whether the start command names the declared port itself: then only one replica fits, and a new
    release can only start once the old one has let go of the port."""
    manifest = read_manifest(tree)
    run = (manifest.get("processes") or {}).get("web") or manifest.get("run")
    return literal_port(run, declared_port(d, tree))


def connection_env(d: DesiredDeployment, network: Network, key: X25519PrivateKey) -> dict[str, str]:
    env: dict[str, str] = {}
    for conn in d.connections:
        if conn.state != "resolved":
            continue
        values = _connection_values(d, conn, network, key)
        for item in conn.env:
            value = values.get(item.from_)
            if value is not None:
                env[item.to] = value
    return env


def _connection_values(d: DesiredDeployment, conn: DesiredConnection, network: Network,
                       key: X25519PrivateKey) -> dict[str, str]:
    via = conn.via
    if via == "url":
        if conn.url is None:
            raise Unresolvable(f"connection '{conn.name}': via url, without a url")
        return {"ServiceURL": conn.url}
    target = conn.target
    if target is None:
        raise Unresolvable(f"connection '{conn.name}': via {via}, without a target")
    # a connection inside the project carries the cell's credential in its URL: the cell listener serves no one else
    base = (network.cell_base(d.environment, d.project) if via == "cell"
            else network.base(cast(str, via), d.environment))
    if base is None:
        raise Unresolvable(f"connection '{conn.name}': the {via} listener of {d.environment} is not open")
    values = {"ServiceURL": base + route_prefix(target.project, target.component, target.version, target.basePath)}
    credentials = conn.credentials
    if credentials:
        # (sealed is null only while the agent has no key: open_sealed fails on it, as on any value not for us)
        secret = open_sealed(key, cast(str, credentials.consumerSecret.sealed), place(d, f"connection:{conn.name}"))
        internal = network.base("internal", d.environment)
        values.update({"ConsumerKey": credentials.consumerKey, "ConsumerSecret": secret, "APIKey": secret,
                       "TokenURL": (internal or "") + TOKEN_PATH.decode()})
    return values


def configuration(d: DesiredDeployment, key: X25519PrivateKey) -> tuple[dict[str, str], list[FileMount]]:
    env = {}
    for item in d.env:
        if "sealed" in item.model_fields_set:  # a secret (sealed null: the agent had no key; open_sealed fails)
            env[item.name] = open_sealed(key, cast(str, item.sealed), place(d, item.name))
        elif item.value is not None:
            env[item.name] = item.value
    files = []
    for file in d.files:
        if "sealed" in file.model_fields_set:
            content, secret = open_sealed(key, cast(str, file.sealed), place(d, file.name)), True
        else:
            content, secret = file.content or "", False
        files.append(FileMount(file.name, file.mountPath, content.encode(), secret))
    return env, files


def probe(raw: DesiredProbe | None) -> ProbeSpec | None:
    """The probe a desired one describes; None (the default probe) for none or an empty one (``{}``)."""
    if raw is None or not (raw.model_fields_set or raw.model_extra):
        return None
    return ProbeSpec(path=raw.path, port=raw.port, initial_delay=raw.initialDelaySeconds, period=raw.periodSeconds,
                     timeout=raw.timeoutSeconds, failure_threshold=raw.failureThreshold)


def manifest_probe(tree: Path, kind: str = "readiness") -> ProbeSpec | None:
    """The readiness (or liveness) probe the artifact's manifest carries (a Dockerfile's HEALTHCHECK), for a
    component that declares none: an HTTP GET of its path on the replica's port."""
    raw = read_manifest(tree).get(kind)
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        return None
    return ProbeSpec(path=raw["path"], timeout=float(raw.get("timeoutSeconds") or 1),
                     failure_threshold=int(raw.get("failureThreshold") or 3),
                     period=float(raw.get("periodSeconds") or 1),
                     initial_delay=float(raw.get("initialDelaySeconds") or 0))


def limits(d: DesiredDeployment) -> Limits:
    resources = d.resources
    return Limits(memory_bytes=parse_memory(resources.memory) if resources.memory else None,
                  cpu_millis=parse_cpu(resources.cpu) if resources.cpu else None)


def replica_spec(d: DesiredDeployment, index: int, launch: Launch, tree: Path, network: Network,
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
        sandbox = isolation.sandbox(f"{d.environment}/{d.project}/{d.component}", [tree, *runtime])
    if sandbox is not None:
        # a home and a temporary directory of its own (the agent's would be hidden), where package managers'
        # caches go too (the shared ones are hidden); its configuration may still set them
        home = workspace_env(run_dir)
        env.update(home)
        env.update({name: str(Path(home["HOME"]) / ".cache" / sub) for name, sub in (
            ("UV_CACHE_DIR", "uv"), ("PIP_CACHE_DIR", "pip"), ("npm_config_cache", "npm")) if name in env})
    env.update(config_env)
    env.update(connection_env(d, network, key))
    env.update({"CELLPLANE_ENVIRONMENT": d.environment, "CELLPLANE_PROJECT": d.project,
                "CELLPLANE_COMPONENT": d.component, "CELLPLANE_RELEASE": d.release,
                "CELLPLANE_REPLICA": str(index)})
    env.update({k: launch.env[k] for k in PORT_VARIABLES if k in launch.env})
    health = d.health
    has_port = bool(d.endpoints) and not task
    identity = ReplicaId(d.environment, d.project, d.component, d.id, d.release, index, run)
    if run is not None:
        env["CELLPLANE_TASK_RUN"] = run
    return ReplicaSpec(
        key=identity.key, identity=identity,
        argv=launch.argv, cwd=launch.cwd, env=env,
        port=launch.port if has_port else None,
        declared_port=declared_port(d, tree) if has_port else None,
        readiness=(probe(health.readiness if health is not None else None) or manifest_probe(tree)) if has_port
        else None,
        liveness=probe(health.liveness if health is not None else None) or (
            manifest_probe(tree, "liveness") if has_port else None),
        restart="never" if task else "always",
        grace=float(health.gracePeriodSeconds if health is not None else 10),
        limits=limits(d), files=files, run_dir=run_dir, sandbox=sandbox,
    )
