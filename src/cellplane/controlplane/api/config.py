"""Routes for a component's configuration values; secrets are accepted, stored encrypted, shown masked."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field

from cellplane.controlplane import config as service
from cellplane.controlplane import deployments
from cellplane.controlplane import resources as store
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.deps import Caller, KeyPath, NamePath, Work, audited, platform, require
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import Principal, Target
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
        store.get(s, store.Scope(KINDS["Environment"], org), env)
    return env or service.ALL


@router.get(BASE, response_model=schemas.ConfigList, response_model_exclude_unset=True)
def list_config(request: Request, org: NamePath, project: NamePath, component: NamePath, env: str | None = ENV,
                who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with p.store.transaction() as s:
        require(who, "config:read", Target(org, project, env or ""))
        row = store.get_component(s, org, project, component)
        _environment(s, org, env)
        return {"items": service.effective(s, org, project, component, row.spec, env)}


@router.put(BASE + "/{key}", response_model=schemas.ConfigChange, response_model_exclude_unset=True)
def set_config(request: Request, org: NamePath, project: NamePath, component: NamePath, key: KeyPath,
               body: ConfigValue, env: str | None = ENV, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    work = Work("config.set", "Component", org, project, component, f"{key} ({'secret' if body.secret else 'plain'})"
                + (f" in {env}" if env else ""))
    with audited(p, who, work) as s:
        require(who, "config:write", Target(org, project, env or ""))
        store.get_component(s, org, project, component)
        environment = _environment(s, org, env)
        row, changed = service.set_value(s, p.keyring, org, project, component, environment, key, body.value,
                                         body.secret, who.user)
        work.message += "" if changed else " unchanged"
        if changed:
            deployments.refresh(s, p.keyring, store.get_component(s, org, project, component), who.user,
                                f"configuration changed: {key}", env)
        return {**service.public_view(row), "changed": changed}


@router.delete(BASE + "/{key}", response_model=schemas.Deleted, response_model_exclude_unset=True)
def unset_config(request: Request, org: NamePath, project: NamePath, component: NamePath, key: KeyPath,
                 env: str | None = ENV, who: Principal = Caller) -> dict[str, Any]:
    p = platform(request)
    with audited(p, who, Work("config.unset", "Component", org, project, component, key)) as s:
        require(who, "config:write", Target(org, project, env or ""))
        row = store.get_component(s, org, project, component)
        service.unset_value(s, org, project, component, _environment(s, org, env), key)
        deployments.refresh(s, p.keyring, row, who.user, f"configuration changed: {key} unset", env)
        return {"deleted": key}
