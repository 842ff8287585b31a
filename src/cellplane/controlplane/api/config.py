"""Routes for a component's configuration values; secrets are accepted, stored encrypted, shown masked."""

from __future__ import annotations

from typing import Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from cellplane.controlplane import config as service
from cellplane.controlplane import deployments, resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import COMPONENT_SUBJECT, Call, environment, requires
from cellplane.controlplane.api.deps import KeyPath, NamePath
from cellplane.controlplane.api.routing import api_router
from cellplane.model import KINDS

router = api_router(tags=["config"])
BASE = "/organizations/{org}/projects/{project}/components/{component}/config"
ENV = Query(None, max_length=63, description="environment; omit for a value used in every environment")


class ConfigValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str = Field(max_length=1_048_576)
    secret: bool = False


def _environment(s: Any, org: str, env: str | None) -> str:
    if env:
        resources.get(s, resources.Scope(KINDS["Environment"], org), env)
    return env or service.ALL


@router.read(BASE, requires("config:read"), environment("query", "env"), response_model=schemas.ConfigList,
             response_model_exclude_unset=True)
def list_config(c: Call[None], org: NamePath, project: NamePath, component: NamePath,
                env: str | None = ENV) -> dict[str, Any]:
    s = c.session
    row = resources.get_component(s, org, project, component)
    _environment(s, org, env)
    return {"items": service.effective(s, org, project, component, row.spec, env)}


def _set_message(c: Call[ConfigValue]) -> str:
    env = c["env"]
    return f"{c['key']} ({'secret' if c.body.secret else 'plain'})" + (f" in {env}" if env else "")


@router.mutation("PUT", BASE + "/{key}", requires("config:write"), environment("query", "env"), action="config.set",
                 subject=COMPONENT_SUBJECT, body=ConfigValue, message=_set_message,
                 response_model=schemas.ConfigChange, response_model_exclude_unset=True)
def set_config(c: Call[ConfigValue], org: NamePath, project: NamePath, component: NamePath, key: KeyPath,
               env: str | None = ENV) -> dict[str, Any]:
    p, s, body = c.platform, c.session, c.body
    resources.get_component(s, org, project, component)
    environment_ = _environment(s, org, env)
    row, changed = service.set_value(s, p.keyring, org, project, component, environment_, key, body.value,
                                     body.secret, c.who.user)
    c.work.message += "" if changed else " unchanged"
    if changed:
        deployments.refresh(s, p.keyring, resources.get_component(s, org, project, component), c.who.user,
                            f"configuration changed: {key}", env)
    return {**service.public_view(row), "changed": changed}


@router.mutation("DELETE", BASE + "/{key}", requires("config:write"), environment("query", "env"),
                 action="config.unset", subject=COMPONENT_SUBJECT, message=lambda c: c["key"],
                 response_model=schemas.Deleted, response_model_exclude_unset=True)
def unset_config(c: Call[None], org: NamePath, project: NamePath, component: NamePath, key: KeyPath,
                 env: str | None = ENV) -> dict[str, Any]:
    p, s = c.platform, c.session
    row = resources.get_component(s, org, project, component)
    service.unset_value(s, org, project, component, _environment(s, org, env), key)
    deployments.refresh(s, p.keyring, row, c.who.user, f"configuration changed: {key} unset", env)
    return {"deleted": key}
