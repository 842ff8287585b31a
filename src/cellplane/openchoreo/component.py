"""An OpenChoreo Component's spec as a Cellplane Component's: its type, its build workflow as source and build
settings, its component-type parameters where Cellplane has the same setting, and a warning for the rest.

OpenChoreo's component type is ``<workloadType>/<name>`` (``deployment/service``, ``cronjob/scheduled-task``);
the workload type says most of what Cellplane's ``type`` says, the name the rest. A build workflow's parameters
are free-form (each Workflow defines its own); those of OpenChoreo's shipped workflows (``repository``,
``docker``, ``buildEnv``) are read, anything else warns. Pure, linear in the document's size.
"""

from __future__ import annotations

from typing import Any

from cellplane.openchoreo.reader import Reader

WORKLOAD_TYPES = ("deployment", "statefulset", "cronjob", "job", "proxy")
CONCURRENCY = {"Forbid": "Forbid", "Allow": "Allow", "Replace": "Forbid"}
# Parameters of OpenChoreo's shipped component types that a Cellplane spec states elsewhere or not at all.
READ_PARAMETERS = ("replicas", "resources", "schedule", "timeZone", "concurrencyPolicy")


def component_type(r: Reader, raw: Any) -> str | None:
    ref = r.mapping(raw, "spec.componentType", required=True)
    if ref is None:
        return None
    r.fields(ref, "spec.componentType", ("kind", "name"))
    kind = r.text(ref.get("kind"), "spec.componentType.kind")
    if kind not in (None, "ComponentType", "ClusterComponentType"):
        r.fail("spec.componentType.kind", f"'{kind}' is not ComponentType or ClusterComponentType")
    name = r.text(ref.get("name"), "spec.componentType.name", required=True)
    if name is None:
        return None
    workload, _, type_name = name.partition("/")
    if workload not in WORKLOAD_TYPES or not type_name:
        r.fail("spec.componentType.name", f"'{name[:80]}' is not <workloadType>/<name> with a workload type of "
               f"{', '.join(WORKLOAD_TYPES)}")
        return None
    r.origin("spec.type", "spec.componentType.name")
    if workload == "cronjob":
        return "scheduled-task"
    if workload == "job":
        return "manual-task"
    if workload == "proxy":
        r.fail("spec.componentType.name", "an OpenChoreo proxy component has no equivalent here; write it as a "
               "Cellplane api-proxy Component (apiVersion cellplane.dev/v1alpha1, spec.proxy.upstream)")
        return None
    if workload == "statefulset":
        r.warn("spec.componentType.name", "Cellplane has no persistent volumes: the stateful set is read as a "
               "service whose files do not outlive a restart")
    words = type_name.replace("_", "-")
    if "web-app" in words or "webapp" in words or "web-application" in words:
        return "web-app"
    if "worker" in words:
        return "worker"
    if words != "service":
        r.warn("spec.componentType.name", f"component type '{type_name}' is read as a service")
    return "service"


def component_spec(r: Reader, spec: dict[Any, Any], titles: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """The Cellplane spec, and the owning project's name."""
    r.fields(spec, "spec", ("owner", "componentType", "autoDeploy", "autoBuild", "parameters", "traits",
                            "workflow"))
    owner = r.mapping(spec.get("owner"), "spec.owner", required=True)
    project = None
    if owner is not None:
        r.fields(owner, "spec.owner", ("projectName",))
        project = r.name(owner.get("projectName"), "spec.owner.projectName", required=True)
    out: dict[str, Any] = dict(titles)
    kind = component_type(r, spec.get("componentType"))
    if kind:
        out["type"] = kind
    _parameters(r, spec.get("parameters"), kind, out)
    branch = _workflow(r, spec.get("workflow"), out)
    auto_build = r.flag(spec.get("autoBuild"), "spec.autoBuild")
    if auto_build is not None:
        out.setdefault("build", {})["autoBuild"] = auto_build
        r.origin("spec.build.autoBuild", "spec.autoBuild")
    if r.flag(spec.get("autoDeploy"), "spec.autoDeploy"):
        if branch:
            out["tracks"] = [{"name": branch, "autoDeploy": True}]
            r.origin("spec.tracks", "spec.autoDeploy")
        else:
            r.warn("spec.autoDeploy", "Cellplane deploys a track's builds automatically, and a track is a git "
                   "branch: no branch is given (spec.workflow.parameters.repository.revision.branch); ignored")
    for tpath, raw in r.items(spec.get("traits"), "spec.traits"):
        trait = r.mapping(raw, tpath, required=True) or {}
        r.fields(trait, tpath, ("kind", "name", "instanceName", "parameters"))
        name = r.text(trait.get("name"), f"{tpath}.name", required=True)
        r.warn(tpath, f"trait '{name}' has no equivalent in Cellplane; ignored")
    return out, project


def _parameters(r: Reader, raw: Any, kind: str | None, out: dict[str, Any]) -> None:
    params = r.mapping(raw, "spec.parameters") or {}
    replicas = params.get("replicas")
    if replicas is not None:
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            r.fail("spec.parameters.replicas", "expected a number")
        else:
            out["replicas"] = replicas
            r.origin("spec.replicas", "spec.parameters.replicas")
    resources = r.mapping(params.get("resources"), "spec.parameters.resources")
    if resources is not None:
        limits = r.mapping(resources.get("limits"), "spec.parameters.resources.limits") or {}
        picked = {k: str(limits[k]) for k in ("cpu", "memory") if limits.get(k) is not None}
        if picked:
            out["resources"] = picked
            r.origin("spec.resources", "spec.parameters.resources.limits")
        if resources.get("requests"):
            r.warn("spec.parameters.resources.requests", "Cellplane sets limits only; requests are ignored")
    if kind == "scheduled-task":
        cron = r.text(params.get("schedule"), "spec.parameters.schedule")
        if cron is None:
            r.fail("spec.parameters.schedule", "required for a cronjob component: Cellplane keeps one schedule per "
                   "component (OpenChoreo sets it per environment, in a ReleaseBinding); give it here")
        schedule: dict[str, Any] = {"cron": cron}
        r.origin("spec.schedule", "spec.parameters")
        r.origin("spec.schedule.cron", "spec.parameters.schedule")
        zone = r.text(params.get("timeZone"), "spec.parameters.timeZone")
        if zone:
            schedule["timezone"] = zone
            r.origin("spec.schedule.timezone", "spec.parameters.timeZone")
        policy = r.text(params.get("concurrencyPolicy"), "spec.parameters.concurrencyPolicy")
        if policy:
            if policy not in CONCURRENCY:
                r.fail("spec.parameters.concurrencyPolicy", f"'{policy}' is not Forbid, Allow or Replace")
            elif policy == "Replace":
                r.warn("spec.parameters.concurrencyPolicy", "Cellplane does not stop a running task for the next "
                       "one; read as Forbid")
            schedule["concurrencyPolicy"] = CONCURRENCY.get(policy, "Forbid")
        out["schedule"] = schedule
    for key in params:
        if key in READ_PARAMETERS and (kind == "scheduled-task" or key not in ("schedule", "timeZone",
                                                                              "concurrencyPolicy")):
            continue
        r.warn(f"spec.parameters.{str(key)[:60]}", "component type parameter with no equivalent in Cellplane; "
               "ignored")


def _workflow(r: Reader, raw: Any, out: dict[str, Any]) -> str | None:
    """Source and build settings from the build workflow; returns the branch it builds, if one is named."""
    workflow = r.mapping(raw, "spec.workflow")
    if workflow is None:
        r.warn("spec", "no build workflow (spec.workflow): the component's source must be given before it can be "
               "built (cellplane.dev spec.source)")
        return None
    r.fields(workflow, "spec.workflow", ("kind", "name", "parameters"))
    name = r.text(workflow.get("name"), "spec.workflow.name", required=True) or ""
    params = r.mapping(workflow.get("parameters"), "spec.workflow.parameters") or {}
    source: dict[str, Any] = {}
    build: dict[str, Any] = {}
    repo = r.mapping(params.get("repository"), "spec.workflow.parameters.repository") or {}
    rp = "spec.workflow.parameters.repository"
    url = r.text(repo.get("url"), f"{rp}.url")
    if url:
        source["repository"] = url
        r.origin("spec.source.repository", f"{rp}.url")
    revision = r.mapping(repo.get("revision"), f"{rp}.revision") or {}
    branch = r.text(revision.get("branch"), f"{rp}.revision.branch")
    commit = r.text(revision.get("commit"), f"{rp}.revision.commit")
    if commit:
        source["ref"] = commit
        r.origin("spec.source.ref", f"{rp}.revision.commit")
        if branch:
            r.warn(f"{rp}.revision.branch", "a Cellplane source names a branch or a commit; the commit is used")
    elif branch:
        source["branch"] = branch
        r.origin("spec.source.branch", f"{rp}.revision.branch")
    app_path = (r.text(repo.get("appPath"), f"{rp}.appPath") or "").strip("/")
    if app_path and app_path != ".":
        source["path"] = app_path.removeprefix("./")
        r.origin("spec.source.path", f"{rp}.appPath")
    for key in repo:
        if key not in ("url", "revision", "appPath"):
            r.warn(f"{rp}.{str(key)[:60]}", "no equivalent in Cellplane (git credentials are the control plane's); "
                   "ignored")
    docker = r.mapping(params.get("docker"), "spec.workflow.parameters.docker")
    if docker is not None or "docker" in name:
        build["mode"] = "dockerfile"
        _dockerfile(r, docker or {}, app_path, build)
    for key in params:
        if key not in ("repository", "docker"):
            r.warn(f"spec.workflow.parameters.{str(key)[:60]}", "build workflow parameter with no equivalent in "
                   "Cellplane (it detects how to build from the source); ignored")
    if source:
        out["source"] = source
    if build:
        out["build"] = build
    return branch if not commit else None


def _dockerfile(r: Reader, docker: dict[Any, Any], app_path: str, build: dict[str, Any]) -> None:
    dp = "spec.workflow.parameters.docker"
    given = (r.text(docker.get("filePath"), f"{dp}.filePath") or "").strip("/")
    prefix = f"{app_path}/" if app_path else ""
    if given:
        if prefix and not given.startswith(prefix):
            r.warn(f"{dp}.filePath", f"'{given}' is outside the component's directory ('{app_path}'); the "
                   "Dockerfile there is used")
        else:
            relative = given[len(prefix):]
            if relative != "Dockerfile":
                build["dockerfile"] = relative
                r.origin("spec.build.dockerfile", f"{dp}.filePath")
    context = (r.text(docker.get("context"), f"{dp}.context") or "").strip("/")
    if context and context != app_path:
        r.warn(f"{dp}.context", f"Cellplane builds with the component's directory ('{app_path or '.'}') as the "
               "context; ignored")
