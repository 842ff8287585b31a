"""Routes for a component's scaling per environment: what it resolves to, and ``cellplane scale``."""

from __future__ import annotations

from typing import Any

from cellplane.controlplane import resources
from cellplane.controlplane import scaling as service
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import COMPONENT_SUBJECT, PROJECT, Call, reads, requires
from cellplane.controlplane.api.deps import NamePath
from cellplane.controlplane.api.routing import api_router
from cellplane.model.scaling import ScalingSettings

router = api_router(tags=["scaling"])
BASE = "/organizations/{org}/projects/{project}/components/{component}/scaling"


@router.read(BASE, reads("components:get"), PROJECT, session="read", response_model=schemas.ComponentScaling,
             response_model_exclude_unset=True)
def show_scaling(c: Call[None], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    """The component's scaling in each environment: the settings it resolves to (null: its fixed replicas run)."""
    return service.view(c.session, resources.get_component(c.session, org, project, component))


def _message(c: Call[ScalingSettings]) -> str:
    given = ", ".join(f"{k}={getattr(c.body, k)}" for k in sorted(c.body.model_fields_set))
    return f"in {c['environment']}: {given or 'nothing'}"


@router.mutation("PATCH", BASE + "/{environment}", requires("components:update"), PROJECT, action="scaling.set",
                 subject=COMPONENT_SUBJECT, body=ScalingSettings, message=_message,
                 response_model=schemas.ScalingChange, response_model_exclude_unset=True)
def set_scaling(c: Call[ScalingSettings], org: NamePath, project: NamePath, component: NamePath,
                environment: NamePath) -> dict[str, Any]:
    """Change ``spec.scaling.environments.<environment>`` (a JSON merge patch: a field given sets it, null removes
    it), through the same validation and steps as ``apply``. Running deployments follow at their data plane's next
    poll, without a new release."""
    s, body = c.session, c.body
    row = resources.get_component(s, org, project, component)
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    action = service.set_environment(s, c.platform.keyring, row, environment, changes, c.who.user)
    c.work.message += f" ({action})"
    return {**service.view(s, resources.get_component(s, org, project, component)), "action": action}
