"""OpenChoreo kinds that are not a Cellplane resource: a ReleaseBinding is a request to run a component in an
environment (a deploy or a promotion, done by the apply route through the same functions as ``cellplane deploy``
and ``promote``), a SecretReference names values kept in an external store (a warning saying what to set with the
CLI), and the kinds with no equivalent (component types, traits, workflows, planes other than data planes...)
are one warning line each, never applied.

Pure: each function reads one document's ``spec`` and records problems and warnings on its ``Reader``; cost
linear in the document's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cellplane.model.component import ENV_NAME
from cellplane.openchoreo.reader import Reader

# Every kind of openchoreo.dev/v1alpha1 (OpenChoreo's api/v1alpha1, and older releases' BuildPlane, Release, Build,
# DeploymentTrack, DeployableArtifact, Deployment, Endpoint, ConfigurationGroup) that Cellplane does not map,
# with what to do instead. A kind that is none of these nor a mapped one is an error (a typo).
NO_EQUIVALENT: dict[str, str] = {
    "ComponentType": "Cellplane's component types are built in (spec.type: service, web-app, worker, "
                     "scheduled-task, manual-task, api-proxy)",
    "ClusterComponentType": "Cellplane's component types are built in (spec.type)",
    "Trait": "Cellplane has no traits; a Component's trait references warn when it is applied",
    "ClusterTrait": "Cellplane has no traits",
    "Workflow": "Cellplane detects how to build from the source (spec.build); start a build with `cellplane build`",
    "ClusterWorkflow": "Cellplane detects how to build from the source (spec.build)",
    "WorkflowRun": "start a build with `cellplane build COMPONENT`",
    "WorkflowPlane": "Cellplane's control plane runs the builds itself",
    "ClusterWorkflowPlane": "Cellplane's control plane runs the builds itself",
    "BuildPlane": "Cellplane's control plane runs the builds itself",
    "ObservabilityPlane": "Cellplane's control plane keeps logs and metrics itself (`cellplane logs`, `metrics`)",
    "ClusterObservabilityPlane": "Cellplane's control plane keeps logs and metrics itself",
    "ObservabilityAlertRule": "define alert rules with `cellplane alerts`",
    "ObservabilityAlertsNotificationChannel": "alert notifications are set with `cellplane alerts`",
    "ProjectType": "every Cellplane project is a cell with default-deny networking",
    "ClusterProjectType": "every Cellplane project is a cell with default-deny networking",
    "ComponentRelease": "Cellplane makes a release from a build when it deploys (a ReleaseBinding deploys one)",
    "ProjectRelease": "Cellplane makes a release from a build when it deploys",
    "RenderedRelease": "Cellplane renders what runs from the release itself",
    "Release": "Cellplane makes a release from a build when it deploys",
    "ProjectReleaseBinding": "a project is in every environment of its pipeline already",
    "Resource": "Cellplane has no project-bound resources: give the address as configuration or a dependency URL",
    "ResourceType": "Cellplane has no project-bound resources",
    "ClusterResourceType": "Cellplane has no project-bound resources",
    "ResourceRelease": "Cellplane has no project-bound resources",
    "ResourceReleaseBinding": "Cellplane has no project-bound resources",
    "AuthzRole": "grant roles with `cellplane grant`",
    "ClusterAuthzRole": "grant roles with `cellplane grant`",
    "AuthzRoleBinding": "grant roles with `cellplane grant`",
    "ClusterAuthzRoleBinding": "grant roles with `cellplane grant`",
    "ClusterDataPlane": "write it as a DataPlane of an organization (environments naming it run on the default "
                        "data plane)",
    "Build": "start a build with `cellplane build COMPONENT`",
    "DeploymentTrack": "a Cellplane track is a branch of the component's source (spec.tracks)",
    "DeployableArtifact": "Cellplane deploys a component's builds",
    "Deployment": "deploy with `cellplane deploy COMPONENT --env ENV`",
    "Endpoint": "endpoints are part of a Component (spec.endpoints)",
    "ConfigurationGroup": "set configuration with `cellplane config set`",
}
UNDEPLOY = "Undeploy"
STATES = ("Active", UNDEPLOY)


@dataclass(frozen=True)
class Binding:
    """A ReleaseBinding: run ``component`` of ``project`` in ``environment`` (or stop it there: ``undeploy``)."""

    index: int
    name: str
    organization: str | None  # its namespace; None: the request's organization
    project: str
    component: str
    environment: str
    undeploy: bool
    env: tuple[tuple[str, str], ...] = ()  # workloadOverrides' env values: configuration in this environment


def no_equivalent(r: Reader, kind: str, name: str | None) -> None:
    """One warning line for a document of a kind Cellplane does not map."""
    r.warn("", f"{kind} '{name or '?'}' has no equivalent in Cellplane; not applied ({NO_EQUIVALENT[kind]})")


def secret_reference(r: Reader, spec: dict[Any, Any], name: str | None) -> None:
    """A SecretReference maps keys of a Kubernetes Secret onto values in an external store, which Cellplane cannot
    read: one warning naming each key and the command that sets it as a secret value of a component."""
    r.fields(spec, "spec", ("targetPlane", "template", "data", "refreshInterval"))
    keys = []
    for path, raw in r.items(spec.get("data"), "spec.data"):
        item = r.mapping(raw, path, required=True)
        if item is None:
            continue
        r.fields(item, path, ("secretKey", "remoteRef"))
        key = r.text(item.get("secretKey"), f"{path}.secretKey", required=True)
        remote = r.mapping(item.get("remoteRef"), f"{path}.remoteRef", required=True)
        if remote is not None:
            r.fields(remote, f"{path}.remoteRef", ("key", "property", "version"))
            r.text(remote.get("key"), f"{path}.remoteRef.key", required=True)
        if key:
            keys.append(key)
    shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
    what = f"its values ({shown}) are" if keys else "its values are"
    example = keys[0] if keys else "KEY"
    r.warn("", f"SecretReference '{name or '?'}': {what} in an external store Cellplane does not read; not applied: "
           f"set each on the components that use it with `cellplane config set COMPONENT {example}=- --secret` "
           "(the value from stdin)")


def release_binding(r: Reader, spec: dict[Any, Any], name: str, organization: str | None) -> Binding | None:
    """A ReleaseBinding as a deploy request. OpenChoreo binds a named ComponentRelease; Cellplane makes its releases
    from builds, so the binding deploys what Cellplane would: what runs in the environment before this one in the
    project's pipeline (a promotion, the same artifact), else the component's latest succeeded build."""
    r.fields(spec, "spec", ("owner", "environment", "releaseName", "componentTypeEnvironmentConfigs",
                            "traitEnvironmentConfigs", "workloadOverrides", "state"))
    owner = r.mapping(spec.get("owner"), "spec.owner", required=True) or {}
    r.fields(owner, "spec.owner", ("projectName", "componentName"))
    project = r.name(owner.get("projectName"), "spec.owner.projectName", required=True)
    component = r.name(owner.get("componentName"), "spec.owner.componentName", required=True)
    environment = r.name(spec.get("environment"), "spec.environment", required=True)
    state = r.text(spec.get("state"), "spec.state")
    if state is not None and state not in STATES:
        r.fail("spec.state", f"'{state[:60]}' is not Active or Undeploy")
    # Where a problem the deploy finds (its request's fields, the component's path) was written.
    for at in ("environment", "to", "from"):
        r.origin(at, "spec.environment")
    r.origin("path.component", "spec.owner.componentName")
    r.origin("path.project", "spec.owner.projectName")
    r.origin("path.organization", "metadata.namespace")
    r.origin("key", "spec.workloadOverrides.container.env")
    release = r.text(spec.get("releaseName"), "spec.releaseName")
    if release and state != UNDEPLOY:
        r.warn("spec.releaseName", f"OpenChoreo's release '{release[:80]}' does not carry over: Cellplane runs what "
               "runs in the environment before this one in the pipeline (promoted), else the latest build")
    r.no_equivalent(spec, "spec", ("componentTypeEnvironmentConfigs", "traitEnvironmentConfigs"),
                    "per-environment parameters have no equivalent in Cellplane (replicas and resources are the "
                    "Component's); ignored")
    values = _overrides(r, spec.get("workloadOverrides"), component or "COMPONENT", environment or "ENV")
    if values and state == UNDEPLOY:
        r.warn("spec.workloadOverrides", "ignored: the binding undeploys")
        values = ()
    if project is None or component is None or environment is None:
        return None
    return Binding(r.index, name, organization, project, component, environment, state == UNDEPLOY, values)


def _overrides(r: Reader, raw: Any, component: str, environment: str) -> tuple[tuple[str, str], ...]:
    """``workloadOverrides.container``: its env values are the component's configuration in that environment (set
    as ``cellplane config set --env`` sets them, before the deploy); a secret reference or a file's value there is a
    warning naming the command that sets it."""
    overrides = r.mapping(raw, "spec.workloadOverrides")
    if overrides is None:
        return ()
    r.fields(overrides, "spec.workloadOverrides", ("container",))
    container = r.mapping(overrides.get("container"), "spec.workloadOverrides.container") or {}
    r.fields(container, "spec.workloadOverrides.container", ("env", "files"))
    values: dict[str, str] = {}
    for path, raw_item in r.items(container.get("env"), "spec.workloadOverrides.container.env"):
        item = r.mapping(raw_item, path, required=True)
        if item is None:
            continue
        r.fields(item, path, ("key", "value", "valueFrom"))
        key = r.text(item.get("key"), f"{path}.key", required=True)
        if key is not None and not (ENV_NAME.fullmatch(key) and len(key) <= 255):
            r.fail(f"{path}.key", f"'{key[:80]}' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            continue
        value = item.get("value")
        if item.get("valueFrom") is not None:
            r.warn(f"{path}.valueFrom", f"the value is in a secret, which is not imported: set it with `cellplane "
                   f"config set {component} {key or 'KEY'}=- --env {environment} --secret`")
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            r.fail(f"{path}.value", "required: a string" if value is None else "expected a string")
        elif key is not None:
            values[key] = str(value)
    for path, raw_item in r.items(container.get("files"), "spec.workloadOverrides.container.files"):
        item = r.mapping(raw_item, path, required=True)
        if item is None:
            continue
        name = r.text(item.get("key"), f"{path}.key", required=True) or "KEY"
        r.warn(path, f"a file for '{environment}' only is not applied: set its content with `cellplane config set "
               f"{component} file:<name>=- --env {environment}` (<name>: the file's name in the component's spec, "
               f"from '{name[:60]}')")
    return tuple(values.items())
