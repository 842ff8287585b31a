"""One handler per kind of resource: what storing or deleting a resource of that kind sets off elsewhere.

``lifecycle`` drives every apply, create and delete the same way and asks the kind's ``KindHandler`` at each step:

* ``references``: the resources a spec names (field path, kind, name), checked to exist before it is stored;
* ``prepare``: the spec as it is stored, and whether something stored elsewhere for it changed (a Component's
  secret values move to ``config``, encrypted);
* ``created``: what a new resource brings (an Organization its default environments and pipeline);
* ``changed``: what an updated resource sets off (a Component's deployments get a new release);
* ``used_by``: the kind whose specs may name this one, and how to read the names from such a spec (deleting a
  resource still named is refused);
* ``deleting``: the checks before a deletion and what it removes elsewhere (``cascade``), returning what was
  deleted.

A new kind adds one ``KindHandler`` to ``HANDLERS`` (a kind without one stores and deletes its row alone); no
if-chain elsewhere names kinds. This module sits above the entity services (``resources``, ``config``,
``deployments``, ``builds``, ``previews``) and below the API: nothing it calls imports it back.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cellplane.controlplane import (
    builds,
    cascade,
    config,
    deployments,
    identityproviders,
    previews,
    registries,
    resources,
)
from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.resources import ApplyResult, Reference, Scope
from cellplane.errors import ConflictError
from cellplane.store.tables import BuildRow, DeploymentRow, PreviewRow, ResourceRow, RoleBindingRow

Prepare = Callable[[Session, KeyRing, Scope, str, dict[str, Any], str], tuple[dict[str, Any], bool]]


@dataclass(frozen=True)
class KindHandler:
    """What storing or deleting a resource of one kind sets off (each part: nothing, when not given)."""

    references: Callable[[Any], list[Reference]] | None = None  # the kind's typed spec -> what it names
    prepare: Prepare | None = None  # (session, key ring, scope, name, spec, actor) -> (spec to store, touched)
    created: Callable[[Session, ResourceRow], list[ApplyResult]] | None = None
    changed: Callable[[Session, KeyRing, ResourceRow, str, bool], None] | None = None  # (..., actor, spec changed)
    used_by: tuple[str, Callable[[dict[str, Any]], Collection[Any]]] | None = None
    deleting: Callable[[Session, Scope, str], list[str]] | None = None


NO_HANDLER = KindHandler()


def handler(kind: str) -> KindHandler:
    return HANDLERS.get(kind, NO_HANDLER)


# -- Organization ---------------------------------------------------------------------------------------------------


def _organization_created(s: Session, row: ResourceRow) -> list[ApplyResult]:
    return resources.create_organization_defaults(s, row.name)


def _organization_prepare(s: Session, keyring: KeyRing, scope: Scope, name: str, spec: dict[str, Any],
                          actor: str) -> tuple[dict[str, Any], bool]:
    """The registry's password leaves the spec for encrypted storage (``registries``)."""
    return registries.absorb(s, keyring, name, registries.ORGANIZATION, spec, actor)


def _delete_organization(s: Session, scope: Scope, name: str) -> list[str]:
    projects = s.scalars(select(ResourceRow.name).where(
        ResourceRow.kind == "Project", ResourceRow.organization == name)).all()
    if projects:
        raise ConflictError(f"organization '{name}' still has projects: {', '.join(sorted(projects))}; "
                            "delete them first", code="not-empty")
    owned = s.scalars(select(ResourceRow).where(ResourceRow.organization == name)).all()
    deleted = [f"{r.kind.lower()}/{r.name}" for r in owned]
    s.execute(delete(ResourceRow).where(ResourceRow.organization == name))
    identityproviders.forget(s, name)  # before the bindings: its own go with it
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == name))
    cascade.forget(s, name)
    s.execute(delete(PreviewRow).where(PreviewRow.organization == name))
    return deleted


# -- Project --------------------------------------------------------------------------------------------------------


def _project_references(spec: Any) -> list[Reference]:
    return [("spec.deploymentPipeline", "DeploymentPipeline", spec.deploymentPipeline)]


def _delete_project(s: Session, scope: Scope, name: str) -> list[str]:
    org = scope.organization
    comps = s.scalars(select(ResourceRow).where(
        ResourceRow.kind == "Component", ResourceRow.organization == org, ResourceRow.project == name)).all()
    deleted = [f"component/{c.name}" for c in comps]
    s.execute(delete(ResourceRow).where(ResourceRow.organization == org, ResourceRow.project == name))
    config.forget(s, org, name)
    # A binding outlives nothing it is scoped to: a later project of the same name must not inherit it.
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == org, RoleBindingRow.project == name))
    builds.forget(s, org, name)
    cascade.forget(s, org, name)
    for preview in previews.list_rows(s, org, name):
        deleted += cascade.delete_preview(s, preview)
    return deleted


# -- Component ------------------------------------------------------------------------------------------------------


def _component_references(spec: Any) -> list[Reference]:
    refs: list[Reference] = []
    for section in ("env", "files"):
        for i, item in enumerate(getattr(spec.configuration, section)):
            refs += [(f"spec.configuration.{section}[{i}].environments.{env}", "Environment", env)
                     for env in item.environments]
    if spec.scaling is not None:
        refs += [(f"spec.scaling.environments.{env}", "Environment", env) for env in spec.scaling.environments]
    return refs


def _component_prepare(s: Session, keyring: KeyRing, scope: Scope, name: str, spec: dict[str, Any],
                       actor: str) -> tuple[dict[str, Any], bool]:
    """Secret values leave the spec for ``config``, encrypted; a changed one counts as a change of the component."""
    return config.absorb_spec_secrets(s, keyring, scope.organization, scope.project, name, spec, actor)


def _component_changed(s: Session, keyring: KeyRing, row: ResourceRow, actor: str, spec_changed: bool) -> None:
    """A changed spec or configuration makes new releases of what runs (``deployments.refresh``)."""
    s.flush()
    deployments.refresh(s, keyring, row, actor, "spec changed" if spec_changed else "configuration changed")


def _delete_component(s: Session, scope: Scope, name: str) -> list[str]:
    builds.forget(s, scope.organization, scope.project, name)
    cascade.forget(s, scope.organization, scope.project, name)
    config.forget(s, scope.organization, scope.project, name)
    return []


# -- Environment ----------------------------------------------------------------------------------------------------


def _environment_references(spec: Any) -> list[Reference]:
    return [("spec.dataPlane", "DataPlane", spec.dataPlane)] if spec.dataPlane else []


def _environments_of_pipeline(spec: dict[str, Any]) -> set[Any]:
    paths = spec.get("promotionPaths") or []
    return {p.get("source") for p in paths} | {t.get("name") for p in paths for t in p.get("targets") or []}


def _delete_environment(s: Session, scope: Scope, name: str) -> list[str]:
    org = scope.organization
    deployed = s.execute(select(DeploymentRow.project, DeploymentRow.component).where(
        DeploymentRow.organization == org, DeploymentRow.environment == name)
        .order_by(DeploymentRow.project, DeploymentRow.component)).all()
    if deployed:
        names = ", ".join(f"{p}/{c}" for p, c in deployed[:20]) + (", ..." if len(deployed) > 20 else "")
        raise ConflictError(f"environment '{name}' still has deployments: {names}; undeploy them first",
                            code="in-use")
    cascade.forget_environment(s, org, name)
    s.execute(delete(PreviewRow).where(PreviewRow.organization == org, PreviewRow.environment == name))
    s.execute(update(BuildRow).where(BuildRow.organization == org, BuildRow.deploy_to == name).values(deploy_to=None))
    return []


# -- DeploymentPipeline ---------------------------------------------------------------------------------------------


def _pipeline_references(spec: Any) -> list[Reference]:
    refs: list[Reference] = []
    for i, path in enumerate(spec.promotionPaths):
        refs.append((f"spec.promotionPaths[{i}].source", "Environment", path.source))
        refs += [(f"spec.promotionPaths[{i}].targets[{j}].name", "Environment", t.name)
                 for j, t in enumerate(path.targets)]
    return refs


# -- DataPlane ------------------------------------------------------------------------------------------------------


def _dataplane_prepare(s: Session, keyring: KeyRing, scope: Scope, name: str, spec: dict[str, Any],
                       actor: str) -> tuple[dict[str, Any], bool]:
    return registries.absorb(s, keyring, scope.organization, registries.dataplane_key(name), spec, actor)


def _delete_dataplane(s: Session, scope: Scope, name: str) -> list[str]:
    """Its agent's tokens stop working (a later namesake gets new ones); its registry password goes."""
    registries.forget_dataplane(s, scope.organization, name)
    s.execute(delete(RoleBindingRow).where(RoleBindingRow.organization == scope.organization,
                                           RoleBindingRow.dataplane == name))
    return []


HANDLERS: dict[str, KindHandler] = {
    "Organization": KindHandler(prepare=_organization_prepare, created=_organization_created,
                                deleting=_delete_organization),
    "DataPlane": KindHandler(prepare=_dataplane_prepare, used_by=("Environment", lambda spec: {spec.get("dataPlane")}),
                             deleting=_delete_dataplane),
    "Environment": KindHandler(references=_environment_references,
                               used_by=("DeploymentPipeline", _environments_of_pipeline),
                               deleting=_delete_environment),
    "DeploymentPipeline": KindHandler(references=_pipeline_references,
                                      used_by=("Project", lambda spec: {spec.get("deploymentPipeline", "default")})),
    "Project": KindHandler(references=_project_references, deleting=_delete_project),
    "Component": KindHandler(references=_component_references, prepare=_component_prepare,
                             changed=_component_changed, deleting=_delete_component),
}
