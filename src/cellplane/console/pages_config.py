"""The component's Configuration and Connections tabs.

Configuration (``.../config?env=E``): what the component sees in E (``GET .../config?env=E``: variables, and files
as ``file:NAME``), where each value comes from, and for who may (``config:write``, the API decides) forms that set,
replace and unset values (``PUT/DELETE .../config/{key}?env=``). SECRETS ARE WRITE-ONLY: the page never renders a
secret's value (not even the API's mask) and never puts a value back into a form, a refused one included; a secret
is replaced, never shown.

Connections (``.../connections?env=E``): the component's dependencies (its spec), what each resolves to in E (the
deployment's ``connections``: state, via, reason), the target endpoint's visibility and URL (``GET
/organizations/{org}/endpoints``), the environment variable names injected (the dependency's ``env`` entries, or
Choreo's default names: ``controlplane.connections.default_env``), the callers in the project's cell (``GET
.../graph``) and those of other projects (``GET /organizations/{org}/components``: their dependencies on it, only
the components the viewer may read). Each tab is three to five in-process API requests.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cellplane.console.actions import by_htmx
from cellplane.console.apicall import ApiProblem
from cellplane.console.pages_observe import attempt
from cellplane.console.place import Place, place
from cellplane.console.viewer import Viewer, viewer
from cellplane.controlplane.connections import default_env

router = APIRouter()
COMPONENT = "/console/orgs/{org}/projects/{project}/components/{component}"
FILE_PREFIX = "file:"
ALL = "all"  # the form's scope for a value used in every environment

Text = Annotated[str, Query(max_length=200)]
Field = Annotated[str, Form(max_length=400)]


def _scope_label(p: Place, environment: str | None) -> str:
    return environment or "every environment"


def config_cli(p: Place) -> dict[str, str]:
    base = f"-p {p.project}"
    return {"read": f"cellplane config get {p.component} --env {p.environment} {base}",
            "set": f"cellplane config set {p.component} KEY=VALUE --env {p.environment} {base}",
            "secret": f"cellplane config set {p.component} KEY=- --secret --env {p.environment} {base}"
                      "   # the value read from stdin",
            "unset": f"cellplane config unset {p.component} KEY --env {p.environment} {base}"}


async def _config_page(v: Viewer, p: Place, status: int = 200, problem: ApiProblem | None = None,
                       form: dict[str, Any] | None = None, flash: str = "") -> HTMLResponse:
    found, read_problem = await attempt(v.api.get(p.api + "/config", env=p.environment))
    items = (found or {}).get("items", [])
    variables = [i for i in items if not str(i["key"]).startswith(FILE_PREFIX)]
    files = [i for i in items if str(i["key"]).startswith(FILE_PREFIX)]
    mounts = {f.get("name"): f.get("mountPath") for f in (p.spec.get("configuration") or {}).get("files") or []}
    return v.render("component/config.html", status=status, place=p, tab="config",
                    breadcrumbs=p.breadcrumbs("Configuration"), variables=variables, files=files, mounts=mounts,
                    read_problem=read_problem, problem=problem, flash=flash,
                    form=form or {"key": "", "secret": False, "scope": "env"},
                    may_write=v.can("config:write", p.org, p.project, p.environment),
                    scope_label=_scope_label, cli=config_cli(p))


@router.get(COMPONENT + "/config", include_in_schema=False)
async def config(org: str, project: str, component: str, env: Text = "", v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    return await _config_page(v, p)


async def _done(v: Viewer, p: Place, message: str) -> Response:
    """After a change: a 303 back to the tab (plain form), or the tab rendered at once with ``message`` in the live
    region (htmx: the form's hx-select takes the tables and forms out of it, keeping the page's place)."""
    if by_htmx(v.request):
        return await _config_page(v, p, flash=message)
    return RedirectResponse(f"{p.url}/config?{urlencode({'env': p.environment})}", status_code=303)


def _target_env(p: Place, scope: str) -> str | None:
    return None if scope == ALL else p.environment


@router.post(COMPONENT + "/config/set", include_in_schema=False)
async def set_value(org: str, project: str, component: str, key: Field = "",
                    value: Annotated[str, Form(max_length=1_048_576)] = "", secret: Field = "", scope: Field = "env",
                    env: Field = "", v: Viewer = Depends(viewer)) -> Response:
    """``PUT .../config/{key}``; the value is never echoed back, a refusal shows the form again without it."""
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    key = key.strip()
    is_secret = secret in ("1", "on", "true")
    try:
        if not key:
            raise ApiProblem(422, "invalid", "a key is needed", [("key", "required")])
        await v.api.send("PUT", f"{p.api}/config/{quote(key, safe='')}", {"value": value, "secret": is_secret},
                         env=_target_env(p, scope))
    except ApiProblem as e:
        return await _config_page(v, p, e.status, e, {"key": key, "secret": is_secret, "scope": scope})
    return await _done(v, p, f"{key} {'replaced' if is_secret else 'set'} in {_scope_label(p, _target_env(p, scope))}")


@router.post(COMPONENT + "/config/unset", include_in_schema=False)
async def unset_value(org: str, project: str, component: str, key: Field = "", scope: Field = "env",
                      env: Field = "", v: Viewer = Depends(viewer)) -> Response:
    """``DELETE .../config/{key}``."""
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    try:
        await v.api.send("DELETE", f"{p.api}/config/{quote(key.strip(), safe='')}", env=_target_env(p, scope))
    except ApiProblem as e:
        return await _config_page(v, p, e.status, e)
    return await _done(v, p, f"{key.strip()} unset in {_scope_label(p, _target_env(p, scope))}")


# -- connections ---------------------------------------------------------------------------------------------------


def connection_rows(p: Place, endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dependency: its target, what it resolved to in the environment, the target's visibility and
    URLs, and the variable names the component gets."""
    resolved = {c.get("name"): c for c in (p.deployment or {}).get("connections") or []}
    rows = []
    for dep in p.spec.get("dependencies") or []:
        state = resolved.get(dep["name"]) or {}
        via = state.get("via")
        target_project = dep.get("project") or p.project
        target = None
        if dep.get("component"):
            target = next((e for e in endpoints if e["project"] == target_project
                           and e["component"] == dep["component"]
                           and (not dep.get("endpoint") or e["endpoint"] == dep["endpoint"])), None)
        names = [e["to"] for e in dep.get("env") or []] or [e["to"] for e in default_env(dep["name"], via)]
        rows.append({"name": dep["name"], "url": dep.get("url"), "project": target_project,
                     "component": dep.get("component"), "endpoint": dep.get("endpoint"),
                     "version": dep.get("version"), "state": state.get("state") or "not deployed",
                     "via": via, "reason": state.get("reason"), "target": target, "variables": names})
    return rows


def other_callers(components: list[dict[str, Any]], project: str, component: str) -> list[dict[str, Any]]:
    """The components of OTHER projects that declare a dependency on this one (an Organization endpoint, called
    through the internal gateway), from the organization's components list: the API lists only those the viewer may
    read, so a caller in a project the viewer cannot see is not named."""
    found = []
    for doc in components:
        meta = doc.get("metadata") or {}
        if meta.get("project") == project:
            continue  # the project's own callers come from its cell's graph, with their request rates
        for dep in (doc.get("spec") or {}).get("dependencies") or []:
            if dep.get("project") == project and dep.get("component") == component:
                found.append({"project": meta.get("project"), "component": meta.get("name"), "name": dep["name"],
                              "endpoint": dep.get("endpoint"), "version": dep.get("version")})
    return sorted(found, key=lambda c: (c["project"] or "", c["component"] or "", c["name"]))


@router.get(COMPONENT + "/connections", include_in_schema=False)
async def connections(org: str, project: str, component: str, env: Text = "",
                      v: Viewer = Depends(viewer)) -> HTMLResponse:
    try:
        p = await place(v, org, project, component, env)
    except ApiProblem as e:
        return v.problem(e)
    (endpoints, endpoints_problem), (graph, graph_problem), (listed, _) = await asyncio.gather(
        attempt(v.api.get(f"/organizations/{org}/endpoints", environment=p.environment)),
        attempt(v.api.get(f"/organizations/{org}/projects/{project}/graph", environment=p.environment)),
        attempt(v.api.get(f"/organizations/{org}/components", limit=1000)))
    callers = [c for c in (graph or {}).get("connections", [])
               if (c.get("to") or {}).get("component") == component and (c.get("to") or {}).get("project") == project]
    return v.render("component/connections.html", place=p, tab="connections",
                    breadcrumbs=p.breadcrumbs("Connections"),
                    rows=connection_rows(p, (endpoints or {}).get("items", [])), problem=endpoints_problem,
                    callers=callers, graph_problem=graph_problem,
                    others=other_callers((listed or {}).get("items", []), project, component),
                    cli=f"cellplane describe component {component} -p {project}")
