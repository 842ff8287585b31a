"""A deployment's configuration as a container sees it on Kubernetes: environment, files, secrets, connections.

What the local data plane hands a process (``cellplane.dataplane.launchspec``), in the same precedence (lowest
first: the configuration's variables, the connections' variables, ``CELLPLANE_*``, ``PORT``), split three ways:
plain variables go into the pod template as values; plain files into a ConfigMap; every secret (a sealed
variable, a sealed file, a connection's consumer secret) is opened here, through the ``Opener``, and goes only
into the data of the deployment's Secret, which the container reads by ``secretKeyRef`` or as a mounted file. A
value that cannot be opened blocks the deployment (``Blocked``) instead of rendering anything half-configured.

Connection URLs (``ServiceURL``) point where the cluster routes them: a same-project target straight at its
Service (``http://<service>.<namespace>.svc.<domain>:<port><basePath>``: the workload sees the path it would see
behind the gateway), an internal or external target at that environment's Cellplane gateway Service with the
route of the URL scheme (``contract.urlscheme``), a ``url:`` target as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cellplane.canonical import canonical
from cellplane.contract import DesiredConnection, DesiredDeployment, DesiredTarget
from cellplane.contract.urlscheme import route_prefix
from cellplane.dataplane.launchspec import place
from cellplane.gateway.auth import TOKEN_PATH
from cellplane.kubernetes import names
from cellplane.kubernetes.layout import ClusterLayout
from cellplane.kubernetes.opener import Opener
from cellplane.sealing import SealError

_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
PortOf = Callable[[DesiredTarget], int | None]  # a target endpoint's port, None when not in this data plane


class Blocked(Exception):
    """The deployment cannot be rendered; the message says why, in one line."""


@dataclass
class Configuration:
    """What ``configuration`` makes of a deployment's configuration."""

    env: list[dict[str, Any]]  # the container's ``env`` (EnvVar objects), in the order the names first came
    config: dict[str, str] = field(default_factory=dict)  # the ConfigMap's data (plain files)
    secret: dict[str, str] = field(default_factory=dict)  # the Secret's data, plaintext (secret files and values)
    files: list[tuple[str, str, bool]] = field(default_factory=list)  # (key, mountPath, secret) of each file
    checksum: str = ""  # the Opener's fingerprint of all of it: a different one rolls new pods


def secret_key(kind: str, name: str) -> str:
    """The key of a value in a ConfigMap's or Secret's data: ``kind.name`` when Kubernetes takes it as a key,
    else ``kind.`` and a hash of the name."""
    key = f"{kind}.{name}"
    return key if _KEY.fullmatch(key) else f"{kind}.{names.digest(name)}"


def configuration(d: DesiredDeployment, organization: str, opener: Opener, layout: ClusterLayout,
                  port_of: PortOf, run: str | None = None) -> Configuration:
    """The configuration of deployment ``d`` (``run``: a manual run's id, its ``CELLPLANE_TASK_RUN``). Raises
    ``Blocked`` when a sealed value cannot be opened or a connection has no address in this cluster."""
    out = Configuration(env=[])
    env: dict[str, dict[str, Any]] = {}

    def secret(kind: str, name: str, sealed: str | None, where: str, sealed_as: str | None = None) -> str:
        key = secret_key(kind, name)
        if key in out.secret:
            return key
        if sealed is None:
            raise Blocked(f"{where} is sealed for a key this data plane does not have yet (register the agent)")
        try:
            out.secret[key] = opener.open(sealed, place(d, sealed_as or name))
        except SealError as e:
            raise Blocked(f"{where} cannot be opened with this data plane's key ({e.message})") from None
        return key

    def secret_ref(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": names.workload(d.component, d.version), "key": key}}

    for item in d.env:
        if "sealed" in item.model_fields_set:
            key = secret("env", item.name, item.sealed, f"the secret variable {item.name}")
            env[item.name] = {"name": item.name, "valueFrom": secret_ref(key)}
        elif item.value is not None:
            env[item.name] = {"name": item.name, "value": item.value}
    for file in d.files:
        if "sealed" in file.model_fields_set:
            key = secret("file", file.name, file.sealed, f"the secret file {file.name}")
            out.files.append((key, file.mountPath, True))
        else:
            key = secret_key("file", file.name)
            out.config[key] = file.content or ""
            out.files.append((key, file.mountPath, False))
    for conn in d.connections:
        if conn.state != "resolved":
            continue
        plain, sealed = _connection_values(d, conn, organization, layout, port_of)
        keys = {name: secret("connection", conn.name, value, f"the credentials of connection '{conn.name}'",
                             sealed_as=f"connection:{conn.name}") for name, value in sealed.items()}
        for wired in conn.env:
            if wired.from_ in plain:
                env[wired.to] = {"name": wired.to, "value": plain[wired.from_]}
            elif wired.from_ in keys:
                env[wired.to] = {"name": wired.to, "valueFrom": secret_ref(keys[wired.from_])}
    env.update({name: {"name": name, "value": value} for name, value in (
        ("CELLPLANE_ENVIRONMENT", d.environment), ("CELLPLANE_PROJECT", d.project),
        ("CELLPLANE_COMPONENT", d.component), ("CELLPLANE_RELEASE", d.release))})
    if run is not None:
        env["CELLPLANE_TASK_RUN"] = {"name": "CELLPLANE_TASK_RUN", "value": run}
    elif d.type == "scheduled-task":  # a CronJob's run is its Job
        env["CELLPLANE_TASK_RUN"] = {"name": "CELLPLANE_TASK_RUN", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}}
    if d.endpoints and d.type not in ("scheduled-task", "manual-task"):
        env["PORT"] = {"name": "PORT", "value": str(d.endpoints[0].port)}
    out.env = list(env.values())
    out.checksum = opener.fingerprint(canonical({"config": out.config, "secret": out.secret}))
    return out


def _connection_values(d: DesiredDeployment, conn: DesiredConnection, organization: str, layout: ClusterLayout,
                       port_of: PortOf) -> tuple[dict[str, str], dict[str, str | None]]:
    """A resolved connection's values: (plain ones, sealed ones) by their ``from`` names."""
    if conn.via == "url":
        if conn.url is None:
            raise Blocked(f"connection '{conn.name}': via url, without a url")
        return {"ServiceURL": conn.url}, {}
    target = conn.target
    if target is None:
        raise Blocked(f"connection '{conn.name}': via {conn.via}, without a target")
    if conn.via == "cell":
        port = port_of(target)
        if port is None:
            raise Blocked(f"connection '{conn.name}': {target.project}/{target.component} endpoint "
                          f"'{target.endpoint}' is not deployed by this data plane")
        service = names.service(target.component, target.version, target.endpoint)
        namespace = names.namespace(organization, target.project, d.environment)
        path = target.basePath if target.basePath != "/" else ""
        return {"ServiceURL": f"http://{service}.{namespace}.svc.{layout.cluster_domain}:{port}{path}"}, {}
    base = layout.gateway_base(d.environment, str(conn.via))
    plain = {"ServiceURL": base + route_prefix(target.project, target.component, target.version, target.basePath)}
    sealed: dict[str, str | None] = {}
    if conn.credentials is not None:
        plain.update({"ConsumerKey": conn.credentials.consumerKey,
                      "TokenURL": layout.gateway_base(d.environment, "internal") + TOKEN_PATH.decode()})
        sealed.update({"ConsumerSecret": conn.credentials.consumerSecret.sealed,
                       "APIKey": conn.credentials.consumerSecret.sealed})
    return plain, sealed
