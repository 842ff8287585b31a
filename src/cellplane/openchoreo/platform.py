"""OpenChoreo's platform kinds as Cellplane's: Organization, DataPlane, Environment, DeploymentPipeline, Project.

Each function takes the document's ``spec`` (already known to be a mapping or absent) and returns the Cellplane
spec; what has no equivalent is a warning at its path. Pure: no I/O, a few dictionary reads per field.
"""

from __future__ import annotations

from typing import Any

from cellplane.openchoreo.reader import Reader

CLUSTER_DATA_PLANE = ("a ClusterDataPlane has no equivalent in Cellplane: the environment runs on the default data "
                      "plane (name a DataPlane with kind DataPlane to choose one)")


def organization_spec(r: Reader, spec: dict[Any, Any], titles: dict[str, str]) -> dict[str, Any]:
    """OpenChoreo's Organization (releases before namespaces took its place) has nothing but its names."""
    r.fields(spec, "spec", ())
    return dict(titles)


def dataplane_spec(r: Reader, spec: dict[Any, Any]) -> dict[str, Any]:
    """A DataPlane is a Kubernetes cluster reached through its cluster agent: a Cellplane ``kubernetes`` data
    plane; the gateway's external and internal hosts become the gateway URLs. The agent's credentials, the secret
    store and the observability plane have no place in Cellplane's DataPlane (its agent registers with a token)."""
    r.fields(spec, "spec", ("planeID", "clusterAgent", "gateway", "secretStoreRef", "observabilityPlaneRef"))
    r.no_equivalent(spec, "spec", ("planeID", "clusterAgent", "secretStoreRef", "observabilityPlaneRef"),
                    "no equivalent in Cellplane (its data plane agent registers with a token); ignored")
    out: dict[str, Any] = {"type": "kubernetes"}
    gateway = r.mapping(spec.get("gateway"), "spec.gateway") or {}
    r.fields(gateway, "spec.gateway", ("ingress", "egress"))
    r.no_equivalent(gateway, "spec.gateway", ("egress",), "no equivalent in Cellplane (egress is per cell); ignored")
    ingress = r.mapping(gateway.get("ingress"), "spec.gateway.ingress") or {}
    r.fields(ingress, "spec.gateway.ingress", ("external", "internal"))
    urls = {}
    for key, field in (("external", "externalUrl"), ("internal", "internalUrl")):
        url = _gateway_url(r, ingress.get(key), f"spec.gateway.ingress.{key}")
        if url:
            urls[field] = url
            r.origin(f"spec.gateway.{field}", f"spec.gateway.ingress.{key}")
    if urls:
        out["gateway"] = urls
    return out


def dataplane_hint(r: Reader, name: str) -> None:
    """How the data plane comes to run deployments: OpenChoreo's control plane reaches the cluster through its
    agent's credentials; Cellplane's agent calls the control plane with a token of its own, made by the CLI."""
    r.warn("", f"DataPlane '{name}' runs deployments once its agent registers: make its token with `cellplane "
           f"dataplane token --name {name} --output FILE`, then start `cellplane dataplane run --token-file FILE` "
           "where it runs")


def _gateway_url(r: Reader, raw: Any, path: str) -> str | None:
    data = r.mapping(raw, path)
    if data is None:
        return None
    r.fields(data, path, ("name", "namespace", "http", "https", "tls"))
    r.no_equivalent(data, path, ("name", "namespace", "tls"), "no equivalent in Cellplane's gateway settings; "
                    "ignored")
    for scheme in ("https", "http"):
        listener = r.mapping(data.get(scheme), f"{path}.{scheme}")
        if listener is None:
            continue
        r.fields(listener, f"{path}.{scheme}", ("listenerName", "port", "host"))
        host = r.text(listener.get("host"), f"{path}.{scheme}.host", required=True)
        port = r.port(listener.get("port"), f"{path}.{scheme}.port")
        if host:
            default = 443 if scheme == "https" else 80
            return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")
    return None


def environment_spec(r: Reader, spec: dict[Any, Any], titles: dict[str, str]) -> dict[str, Any]:
    r.fields(spec, "spec", ("dataPlaneRef", "isProduction", "gateway"))
    out: dict[str, Any] = dict(titles)
    production = r.flag(spec.get("isProduction"), "spec.isProduction")
    if production is not None:
        out["production"] = production
        r.origin("spec.production", "spec.isProduction")
    ref = r.mapping(spec.get("dataPlaneRef"), "spec.dataPlaneRef")
    if ref is not None:
        r.fields(ref, "spec.dataPlaneRef", ("kind", "name"))
        kind = r.text(ref.get("kind"), "spec.dataPlaneRef.kind") or "DataPlane"
        name = r.name(ref.get("name"), "spec.dataPlaneRef.name", required=True)
        if kind == "ClusterDataPlane":
            r.warn("spec.dataPlaneRef", CLUSTER_DATA_PLANE)
        elif kind != "DataPlane":
            r.fail("spec.dataPlaneRef.kind", f"'{kind}' is not DataPlane or ClusterDataPlane")
        elif name:
            out["dataPlane"] = name
            r.origin("spec.dataPlane", "spec.dataPlaneRef.name")
    r.no_equivalent(spec, "spec", ("gateway",), "no equivalent in Cellplane (an environment's gateway is its data "
                    "plane's: spec.gateway of the DataPlane); ignored")
    return out


def pipeline_spec(r: Reader, spec: dict[Any, Any], titles: dict[str, str]) -> dict[str, Any]:
    r.fields(spec, "spec", ("promotionPaths",))
    out: dict[str, Any] = {"promotionPaths": []}
    if "displayName" in titles:
        out["displayName"] = titles["displayName"]
    for path, raw in r.items(spec.get("promotionPaths"), "spec.promotionPaths"):
        item = r.mapping(raw, path, required=True)
        if item is None:
            continue
        r.fields(item, path, ("sourceEnvironmentRef", "targetEnvironmentRefs"))
        at = f"spec.promotionPaths[{len(out['promotionPaths'])}]"
        r.origin(at, path)
        source = _environment_ref(r, item.get("sourceEnvironmentRef"), f"{path}.sourceEnvironmentRef")
        r.origin(f"{at}.source", f"{path}.sourceEnvironmentRef.name")
        targets: list[dict[str, Any]] = []
        for tpath, traw in r.items(item.get("targetEnvironmentRefs"), f"{path}.targetEnvironmentRefs"):
            target = r.mapping(traw, tpath, required=True)
            if target is None:
                continue
            # requiresApproval: OpenChoreo releases before v0.4 had it on the target; later ones dropped it.
            r.fields(target, tpath, ("kind", "name", "requiresApproval"))
            _ref_kind(r, target, tpath)
            name = r.name(target.get("name"), f"{tpath}.name", required=True)
            approval = r.flag(target.get("requiresApproval"), f"{tpath}.requiresApproval")
            r.origin(f"{at}.targets[{len(targets)}]", tpath)
            targets.append({"name": name, **({"requiresApproval": approval} if approval is not None else {})})
        if not targets:
            r.fail(f"{path}.targetEnvironmentRefs", "required: at least one target environment")
        out["promotionPaths"].append({"source": source, "targets": targets})
    return out


def _environment_ref(r: Reader, raw: Any, path: str) -> str | None:
    ref = r.mapping(raw, path, required=True)
    if ref is None:
        return None
    r.fields(ref, path, ("kind", "name"))
    _ref_kind(r, ref, path)
    return r.name(ref.get("name"), f"{path}.name", required=True)


def _ref_kind(r: Reader, ref: dict[Any, Any], path: str) -> None:
    kind = r.text(ref.get("kind"), f"{path}.kind")
    if kind not in (None, "Environment"):
        r.fail(f"{path}.kind", f"'{kind}' is not Environment")


def project_spec(r: Reader, spec: dict[Any, Any], titles: dict[str, str]) -> dict[str, Any]:
    """The pipeline reference maps; a project type other than the default one, and its parameters, have no
    Cellplane equivalent (a project is a cell in each environment, the same for every project)."""
    r.fields(spec, "spec", ("deploymentPipelineRef", "type", "parameters"))
    out: dict[str, Any] = dict(titles)
    ref = r.mapping(spec.get("deploymentPipelineRef"), "spec.deploymentPipelineRef")
    if ref is not None:
        r.fields(ref, "spec.deploymentPipelineRef", ("kind", "name"))
        kind = r.text(ref.get("kind"), "spec.deploymentPipelineRef.kind")
        if kind not in (None, "DeploymentPipeline"):
            r.fail("spec.deploymentPipelineRef.kind", f"'{kind}' is not DeploymentPipeline")
        name = r.name(ref.get("name"), "spec.deploymentPipelineRef.name", required=True)
        if name:
            out["deploymentPipeline"] = name
            r.origin("spec.deploymentPipeline", "spec.deploymentPipelineRef.name")
    kind_of_type = r.mapping(spec.get("type"), "spec.type")
    if kind_of_type is not None:
        r.fields(kind_of_type, "spec.type", ("kind", "name"))
        type_name = r.text(kind_of_type.get("name"), "spec.type.name", required=True)
        if type_name not in (None, "default"):
            r.warn("spec.type", f"project type '{type_name}' has no equivalent in Cellplane (every project is a cell "
                   "with default-deny networking in each environment); ignored")
    if isinstance(spec.get("parameters"), dict):
        for key in spec["parameters"]:
            r.warn(f"spec.parameters.{str(key)[:60]}", "project type parameters have no equivalent in Cellplane; "
                   "ignored")
    return out
