"""Routes for resources of every kind, and ``apply`` of many documents in one transaction."""

from __future__ import annotations

from enum import Enum
from typing import Any, cast

from fastapi import Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from cellplane import API_VERSION, openchoreo
from cellplane.controlplane import bindings, lifecycle, resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.declare import (
    ORGANIZATION,
    PLATFORM,
    PROJECT,
    Call,
    Rule,
    Scope,
    Subject,
    anyone,
    found,
    raw,
    reads,
    requires,
)
from cellplane.controlplane.api.deps import NamePath, Page, Paging, require, require_superuser
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import Principal, Target
from cellplane.errors import CellplaneError, FieldProblem, InvalidError, NotFoundError
from cellplane.model import KINDS, Document, KindInfo, dns_label_problem, parse_document
from cellplane.openchoreo import Translation
from cellplane.store.tables import ResourceRow

router = api_router()
APPLY_EXAMPLE = {"organization": "default", "documents": [
    {"apiVersion": API_VERSION, "kind": "Project", "metadata": {"name": "shop"}, "spec": {}}]}


def target_of(info: KindInfo, org: str, project: str, name: str) -> Target:
    """Where acting on a resource happens. Environments, pipelines and data planes are the organization's:
    an environment-scoped admin works *in* an environment and cannot redefine it (e.g. drop its approvals)."""
    if info.kind == "Project":
        return Target(org, name)
    if info.kind == "Organization":
        return Target(name)
    return Target(org, project)


def authorize_write(s: Session, who: Principal, place: resources.Scope, name: str) -> None:
    """Creating needs ``<kind>:create`` (an Organization: a platform administrator), replacing ``<kind>:update``."""
    info = place.info
    exists = resources.exists(s, place, name)
    if info.kind == "Organization" and not exists:
        require_superuser(who, "create organizations")
    require(who, f"{info.plural}:{'update' if exists else 'create'}",
            target_of(info, place.organization, place.project, name))


def can_read(who: Principal, row: ResourceRow) -> bool:
    info = KINDS[row.kind]
    if info.kind == "Organization":
        return who.member_of(row.name)
    if info.kind == "Project":
        return who.sees_project(row.organization, row.name)
    if info.scope == "project":
        return who.sees_project(row.organization, row.project)
    return who.member_of(row.organization)


def _list(c: Call[None], info: KindInfo, org: str | None, project: str | None, page: Page) -> JSONResponse:
    """One page of the kind's resources (in the organization, or the project) that the caller may read."""
    rows, cont = resources.list_rows(c.session, info.kind, org, project, page.limit, page.after,
                                     visible=lambda row: can_read(c.who, row))
    return JSONResponse({"apiVersion": API_VERSION, "kind": f"{info.kind}List",
                         "items": [resources.to_document(r) for r in rows], "metadata": {"continue": cont}})


def _reading(info: KindInfo) -> tuple[Rule, Scope]:
    """What the get route of a kind declares. The scope finds the resource (``Call.row``, None when absent): one
    the caller reads (``can_read``: a member of its organization, whoever sees its project) is shown; to anyone
    else, a resource that exists, or one absent from an organization the caller is a member of, needs
    ``<kind>:get`` on its place (a 403), and then is not found; an outsider is told nothing else (a 404)."""
    permission = f"{info.plural}:get"

    def place(c: Call[Any]) -> tuple[resources.Scope, str]:
        return resources.Scope(info, c.params.get("org", ""), c.params.get("project", "")), c["name"]

    def where(c: Call[Any], _: str) -> Target:
        scope, name = place(c)
        c.row = resources.find(c.session, scope, name)
        return target_of(info, scope.organization, scope.project, name)

    def reader(c: Call[Any], target: Target) -> None:
        if c.row is None or not can_read(c.who, c.row):
            scope, name = place(c)
            if c.row is not None or c.who.member_of(scope.organization or name):
                require(c.who, permission, target)
            raise NotFoundError(f"{scope.describe(name)} not found")

    own = {"Organization": "organization (its own)", "Project": "project (its own)"}.get(
        info.kind, "project" if info.scope == "project" else "organization")
    return Rule(permission, reader, f"{permission} unless a member"), Scope(own, where)


def _document(raw: Any, info: KindInfo, org: str, project: str, name: str | None) -> Document:
    if isinstance(raw, dict):
        raw = {"apiVersion": API_VERSION, "kind": info.kind, **raw}
    doc = parse_document(raw)
    problems = []
    if doc.kind != info.kind:
        problems.append(FieldProblem("kind", f"this path takes a {info.kind}, not a {doc.kind}"))
    if name is not None and doc.name != name:
        problems.append(FieldProblem("metadata.name", f"must match the name in the path ('{name}')"))
    if org and doc.metadata.organization not in (None, org):
        problems.append(FieldProblem("metadata.organization", f"must match the path ('{org}')"))
    if project and doc.metadata.project not in (None, project):
        problems.append(FieldProblem("metadata.project", f"must match the path ('{project}')"))
    if problems:
        raise InvalidError("the document does not match the request path", problems)
    return doc


def _write(c: Call[Document], info: KindInfo, replace: bool) -> JSONResponse:
    """Create or replace the document ``c.body`` (parsed and authorized by the declaration)."""
    p, s, doc = c.platform, c.session, c.body
    place = resources.Scope(info, c.params.get("org", ""), c.params.get("project", ""))
    results = (lifecycle.apply if replace else lifecycle.create)(s, doc, place, p.keyring, c.who.user)
    c.work.message = ", ".join(f"{r.kind.lower()}/{r.name} {r.action}" for r in results)
    row = resources.get(s, place, doc.name)
    body = resources.to_document(row)
    body["status"] = {**body["status"], "warnings": doc.warnings} if doc.warnings else body["status"]
    return JSONResponse(body, status_code=201 if results[0].action == "created" else 200)


def _delete(c: Call[None], info: KindInfo, name: str) -> dict[str, Any]:
    place = resources.Scope(info, c.params.get("org", ""), c.params.get("project", ""))
    return {"deleted": lifecycle.delete(c.session, place, name)}


def _declarations(info: KindInfo) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What the create, replace and delete routes of a kind declare: their permission and scope, audit action and
    body. A write's permission is ``<kind>:create`` or ``<kind>:update`` as the resource exists or not (creating an
    Organization: a platform administrator too); the document is parsed (``_document``) before it is checked."""

    def parsed(c: Call[Any]) -> None:
        c.body = _document(c.body, info, c.params.get("org", ""), c.params.get("project", ""), c.params.get("name"))
        c.work.name = c.body.name

    def where(c: Call[Any], _: str) -> Target:
        name = c.body.name if isinstance(c.body, Document) else c["name"]
        return target_of(info, c.params.get("org", ""), c.params.get("project", ""), name)

    def writer(c: Call[Document], _: Target) -> None:
        authorize_write(c.session, c.who, resources.Scope(info, c.params.get("org", ""), c.params.get("project", "")),
                        c.body.name)

    scope = Scope({"Organization": "organization (the document's own)", "Project": "project (the document's own)"}.get(
        info.kind, "project" if info.scope == "project" else "organization"), where)
    body = raw(schemas.SCHEMAS[info.kind].body, f"a {info.kind} document (apiVersion and kind may be left out)")
    write = {"permission": Rule(f"{info.plural}:create (new) or {info.plural}:update (existing)", writer),
             "scope": scope, "subject": Subject(info.kind, "name"), "body": body, "before": parsed,
             "dry_run": lambda c: c["dryRun"]}
    delete = {"permission": requires(f"{info.plural}:delete"), "scope": scope, "action": "delete",
              "subject": Subject(info.kind, "name")}
    return {**write, "action": "create"}, {**write, "action": "update"}, delete


def _register(info: KindInfo) -> None:
    """Five routes per kind; the path parameters depend on the kind's scope.

    Bodies are documented as the kind's document (``<Kind>Body``) but parsed by ``parse_document``; responses
    are documented as ``<Kind>`` and ``<Kind>List`` but sent as stored (see ``schemas``).
    """
    tag: list[str | Enum] = [info.plural]
    docs = schemas.SCHEMAS[info.kind]
    creating, replacing, deleting = _declarations(info)
    reader, its_place = _reading(info)
    lister = reads(f"{info.plural}:list")
    read: dict[str, Any] = {"response_model": None,
                            "responses": {200: {"model": docs.resource, "description": f"the {info.kind}"}}}
    listed: dict[str, Any] = {"response_model": None,
                              "responses": {200: {"model": docs.list, "description": "one page"}}}
    created = {201: {"model": docs.resource, "description": f"the {info.kind} as stored"}}
    create_: dict[str, Any] = {"response_model": None, "status_code": 201, "responses": created}
    replace: dict[str, Any] = {"response_model": None, "responses": {
        200: {"model": docs.resource, "description": f"the {info.kind} as stored (updated or unchanged)"}, **created}}
    delete_: dict[str, Any] = {"response_model": schemas.ResourceDeleted, "response_model_exclude_unset": True}

    if info.scope == "cluster":
        base = f"/{info.plural}"

        @router.read(base, anyone(f"the {info.plural} it is a member of"), PLATFORM, session="read", tags=tag,
                     name=f"list_{info.plural}", **listed)
        def list_(c: Call[None], page: Page = Paging) -> JSONResponse:
            return _list(c, info, None, None, page)

        @router.mutation("POST", base, **creating, tags=tag, name=f"create_{info.singular}", **create_)
        def create(c: Call[Document], dryRun: bool = False) -> JSONResponse:
            return _write(c, info, False)

        @router.read(base + "/{name}", reader, its_place, session="read", tags=tag, name=f"get_{info.singular}",
                     **read)
        def get(c: Call[None], name: NamePath) -> JSONResponse:
            return JSONResponse(resources.to_document(c.row))

        @router.mutation("PUT", base + "/{name}", **replacing, tags=tag, name=f"replace_{info.singular}", **replace)
        def put(c: Call[Document], name: NamePath, dryRun: bool = False) -> JSONResponse:
            return _write(c, info, True)

        @router.mutation("DELETE", base + "/{name}", **deleting, tags=tag, name=f"delete_{info.singular}", **delete_)
        def delete(c: Call[None], name: NamePath) -> dict[str, Any]:
            return _delete(c, info, name)

    elif info.scope == "organization":
        base = f"/organizations/{{org}}/{info.plural}"

        @router.read(base, lister, found(ORGANIZATION), session="read", tags=tag, name=f"list_{info.plural}",
                     **listed)
        def list_o(c: Call[None], org: NamePath, page: Page = Paging) -> JSONResponse:
            return _list(c, info, org, None, page)

        @router.mutation("POST", base, **creating, tags=tag, name=f"create_{info.singular}", **create_)
        def create_o(c: Call[Document], org: NamePath, dryRun: bool = False) -> JSONResponse:
            return _write(c, info, False)

        @router.read(base + "/{name}", reader, its_place, session="read", tags=tag, name=f"get_{info.singular}",
                     **read)
        def get_o(c: Call[None], org: NamePath, name: NamePath) -> JSONResponse:
            return JSONResponse(resources.to_document(c.row))

        @router.mutation("PUT", base + "/{name}", **replacing, tags=tag, name=f"replace_{info.singular}", **replace)
        def put_o(c: Call[Document], org: NamePath, name: NamePath, dryRun: bool = False) -> JSONResponse:
            return _write(c, info, True)

        @router.mutation("DELETE", base + "/{name}", **deleting, tags=tag, name=f"delete_{info.singular}", **delete_)
        def delete_o(c: Call[None], org: NamePath, name: NamePath) -> dict[str, Any]:
            return _delete(c, info, name)

    else:
        base = f"/organizations/{{org}}/projects/{{project}}/{info.plural}"

        @router.read(f"/organizations/{{org}}/{info.plural}", lister, found(ORGANIZATION), session="read", tags=tag,
                     name=f"list_{info.plural}_in_organization", **listed)
        def list_all(c: Call[None], org: NamePath, page: Page = Paging) -> JSONResponse:
            return _list(c, info, org, None, page)

        @router.read(base, lister, found(PROJECT), session="read", tags=tag, name=f"list_{info.plural}", **listed)
        def list_p(c: Call[None], org: NamePath, project: NamePath, page: Page = Paging) -> JSONResponse:
            return _list(c, info, org, project, page)

        @router.mutation("POST", base, **creating, tags=tag, name=f"create_{info.singular}", **create_)
        def create_p(c: Call[Document], org: NamePath, project: NamePath, dryRun: bool = False) -> JSONResponse:
            return _write(c, info, False)

        @router.read(base + "/{name}", reader, its_place, session="read", tags=tag, name=f"get_{info.singular}",
                     **read)
        def get_p(c: Call[None], org: NamePath, project: NamePath, name: NamePath) -> JSONResponse:
            return JSONResponse(resources.to_document(c.row))

        @router.mutation("PUT", base + "/{name}", **replacing, tags=tag, name=f"replace_{info.singular}", **replace)
        def put_p(c: Call[Document], org: NamePath, project: NamePath, name: NamePath,
                  dryRun: bool = False) -> JSONResponse:
            return _write(c, info, True)

        @router.mutation("DELETE", base + "/{name}", **deleting, tags=tag, name=f"delete_{info.singular}", **delete_)
        def delete_p(c: Call[None], org: NamePath, project: NamePath, name: NamePath) -> dict[str, Any]:
            return _delete(c, info, name)


for _info in sorted(KINDS.values(), key=lambda i: i.order):
    _register(_info)


def _each_document(c: Call[Any], _: Target) -> None:
    """Nothing here: ``apply`` authorizes each document as it comes to it (``authorize_write``), since what an
    earlier document created decides whether a later one is a create or an update."""


@router.mutation("POST", "/apply", Rule("<kind>:create or <kind>:update, for each document", _each_document),
                 Scope("each document's project or organization", lambda c, _: Target("")), action="apply",
                 subject=Subject(organization=lambda c: str(c.body.get("organization") or ""),
                                 project=lambda c: str(c.body.get("project") or "")),
                 body=raw(schemas.ApplyRequest, examples=[APPLY_EXAMPLE]), dry_run=lambda c: c["dryRun"],
                 tags=["apply"], response_model=schemas.ApplyResponse, response_model_exclude_unset=True)
def apply(c: Call[dict[str, Any]],
          dryRun: bool = Query(False, description="validate and report what would change, store nothing"),
          ) -> dict[str, Any]:
    """Create or update many documents in one transaction: all of them are stored, or none."""
    p, s, who = c.platform, c.session, c.who
    results = []
    org, project, docs, translation = _parse_all(s, c.body)
    c.work.name = f"{len(docs)} documents"
    for i, doc in sorted(docs, key=lambda d: (d[1].info.order, d[0])):
        try:
            place = resources.scope_of(doc, org, project)
            authorize_write(s, who, place, doc.name)
            for r in lifecycle.apply(s, doc, place, p.keyring, who.user):
                results.append({"document": i if r.name == doc.name and r.kind == doc.kind else None,
                                **r.as_dict()})
        except CellplaneError as e:
            e = type(e)(e.message, translation.locate(i, e), e.code, e.status)
            e.message = f"{doc.kind} '{doc.name}': {e.message}; nothing was applied"
            raise e from None
    results += [_bind(c, b, org, translation) for b in translation.bindings]
    c.work.message = ", ".join(f"{r['kind'].lower()}/{r['name']} {r['action']}" for r in results)
    notes = translation.notes()
    return {"dryRun": dryRun, "results": results, **({"warnings": notes} if notes else {})}


def _bind(c: Call[dict[str, Any]], b: openchoreo.Binding, org: str | None, translation: Translation
          ) -> dict[str, Any]:
    """An OpenChoreo ReleaseBinding, after every document is stored: a deploy, promotion or undeploy, which needs
    ``deployments:create`` in its environment, as ``cellplane deploy`` does (and ``config:write`` when it sets
    configuration there)."""
    where = b.organization or org or ""
    try:
        if not where:
            raise InvalidError("it has no organization", [FieldProblem("metadata.organization",
                                                                        "required (or give --org)")])
        require(c.who, "deployments:create", Target(where, b.project, b.environment))
        if b.env:
            require(c.who, "config:write", Target(where, b.project, b.environment))
        component = resources.get_component(c.session, where, b.project, b.component)
        bound = bindings.bind(c.session, c.platform.keyring, component, b.environment, c.who.user,
                              undeploy=b.undeploy, values=b.env)
    except CellplaneError as e:
        details = translation.locate(b.index, e) if e.details else [FieldProblem(f"documents[{b.index}]",
                                                                                 "this binding")]
        e = type(e)(e.message, details, e.code, e.status)
        e.message = f"ReleaseBinding '{b.name}': {e.message}; nothing was applied"
        raise e from None
    return {"document": b.index, "kind": "ReleaseBinding", "name": b.name, "organization": where,
            "project": b.project, "action": bound.action, "detail": bound.detail,
            "warnings": translation.warnings(b.index)}


def _parse_all(s: Session, body: dict[str, Any]
               ) -> tuple[str | None, str | None, list[tuple[int, Document]], Translation]:
    """Every document is validated before any is stored; all problems are reported together. OpenChoreo's documents
    are mapped onto Cellplane's first (``cellplane.openchoreo``), and their problems reported where they were
    written; a Workload without its Component in the request applies to the stored Component."""
    org, project, raws = _apply_body(body)
    translation = openchoreo.translate(raws)
    for workload in translation.pending:
        place = resources.Scope(KINDS["Component"], workload.organization or org or "", workload.project)
        row = resources.find(s, place, workload.component)
        translation.with_workload(workload, resources.to_document(row) if row is not None else None)
    docs, problems = [], list(translation.problems)
    for i, given in translation.documents:
        try:
            doc = parse_document(given)
        except CellplaneError as e:
            problems.extend(translation.locate(i, e))
            continue
        doc.warnings = translation.warnings(i)
        docs.append((i, doc))
    problems += _binding_problems(s, org, project, docs, translation.bindings)
    problems.sort(key=lambda p: _document_index(p.field))
    if problems:
        bad = len({p.field.split("]")[0] for p in problems})
        raise InvalidError(f"{bad} of {len(raws)} documents are not valid; nothing was applied", problems)
    return org, project, docs, translation


def _binding_problems(s: Session, org: str | None, project: str | None, docs: list[tuple[int, Document]],
                      bindings: list[openchoreo.Binding]) -> list[FieldProblem]:
    """A ReleaseBinding's environment and component must be in the request or stored: checked with the other
    documents, so every such problem is listed at once (what only the deploy can find comes after storing)."""
    if not bindings:
        return []
    given = set()
    for _, doc in docs:
        if doc.kind in ("Environment", "Component"):
            given.add((doc.kind, doc.metadata.organization or org or "",
                       (doc.metadata.project or project or "") if doc.kind == "Component" else "", doc.name))
    out = []
    for b in bindings:
        where = b.organization or org or ""
        for kind, scope_project, name, path in (("Environment", "", b.environment, "spec.environment"),
                                                ("Component", b.project, b.component, "spec.owner.componentName")):
            if (kind, where, scope_project, name) in given:
                continue
            if where and resources.exists(s, resources.Scope(KINDS[kind], where, scope_project), name):
                continue
            of = f" of project '{b.project}'" if kind == "Component" else ""
            out.append(FieldProblem(f"documents[{b.index}].{path}", f"no {kind} '{name}'{of} in organization "
                                    f"'{where or '?'}', in this apply or stored"))
    return out


def _document_index(field: str) -> int:
    """The ``i`` of ``documents[i]...``, to list problems in the order of the documents."""
    head = field.partition("]")[0].removeprefix("documents[")
    return int(head) if head.isdigit() else -1


def _apply_body(body: dict[str, Any]) -> tuple[str | None, str | None, list[Any]]:
    problems = []
    unknown = set(body) - {"organization", "project", "documents"}
    problems += [FieldProblem(k, "unknown field") for k in sorted(unknown)]
    docs = body.get("documents")
    if not isinstance(docs, list):
        problems.append(FieldProblem("documents", "required: a list of documents"))
    elif not docs:
        problems.append(FieldProblem("documents", "no documents to apply"))
    elif len(docs) > 5000:
        problems.append(FieldProblem("documents", "at most 5000 documents in one apply"))
    for key in ("organization", "project"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problems.append(FieldProblem(key, "must be a string"))
        elif body.get(key) and (problem := dns_label_problem(body[key])):
            problems.append(FieldProblem(key, problem))
    if problems:
        raise InvalidError("the apply request is not valid", problems)
    return body.get("organization"), body.get("project"), cast(list[Any], docs)  # a list: checked above
