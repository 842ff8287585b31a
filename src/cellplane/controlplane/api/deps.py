"""Request plumbing shared by the routes: the caller, permission checks and audited units of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cellplane.controlplane import audit
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.rbac import Principal, Target
from cellplane.errors import CellplaneError, ConflictError, ForbiddenError, InvalidError
from cellplane.model.document import problems_from
from cellplane.model.meta import DNS_LABEL


def platform(request: Request) -> Platform:
    return request.app.state.platform


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


# Declares the scheme in the OpenAPI document only; ``bearer`` reads the header and a bad one gets our 401.
BEARER = HTTPBearer(auto_error=False, description="an API token: Authorization: Bearer cpt_...")


# Where the console's in-process API calls put the signed-in user (cellplane.console.apicall). An ASGI scope is built
# by the server from the connection: no client can set this key, so a request over HTTP never carries it.
SCOPE_PRINCIPAL = "cellplane.principal"


async def principal(request: Request, _: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> Principal:
    """The caller: the console's signed-in user when the console calls in-process (one dict lookup), else the
    bearer token's. A token verified a moment ago is answered here, on the event loop; a lookup in the database goes
    to a worker thread. (A sync dependency would cost every request a second trip through the thread pool.)"""
    inside = request.scope.get(SCOPE_PRINCIPAL)
    if inside is not None:
        return inside
    authenticate = platform(request).authenticate
    token = bearer(request)
    kept = authenticate.kept(token)
    return kept if kept is not None else await run_in_threadpool(authenticate, token)


def require(who: Principal, permission: str, target: Target) -> None:
    if not who.can(permission, target):
        held = "; ".join(b.describe() for b in who.bindings if b.organization == target.organization)
        raise ForbiddenError(
            f"permission '{permission}' is required on {target.describe()}"
            + (f" (you have: {held})" if held else f" (you have no role in organization '{target.organization}')"),
        )


def require_superuser(who: Principal, what: str) -> None:
    if not who.superuser:
        raise ForbiddenError(f"only a platform administrator may {what}")


@dataclass
class Work:
    """What an audited unit of work is about; routes may fill in details as they learn them."""

    action: str
    kind: str = ""
    organization: str = ""
    project: str = ""
    name: str = ""
    message: str = ""


@contextmanager
def audited(p: Platform, who: Principal, work: Work, dry_run: bool = False) -> Iterator[Session]:
    """One transaction for a mutation, with its audit event; a failure is audited in a transaction of its own.

    A unique constraint that fires at flush or commit means a concurrent request created the same thing between
    our check and our write (PostgreSQL's read committed allows that): a 409, never a 500.
    """
    try:
        try:
            with p.store.transaction(dry_run=dry_run) as s:
                yield s
                if not dry_run:
                    audit.record(s, who.user, work.action, "succeeded", work.kind, work.organization, work.project,
                                 work.name, work.message)
        except IntegrityError:
            raise ConflictError("a concurrent request changed the same resource first; retry") from None
    except CellplaneError as e:
        outcome = "denied" if e.status in (401, 403) else "failed"
        with p.store.transaction() as s:
            audit.record(s, who.user, work.action, outcome, work.kind, work.organization, work.project, work.name,
                         e.message)
        raise


@dataclass
class Page:
    limit: int
    after: str | None


async def page(limit: int = Query(100, ge=1, le=1000, description="page size"),
         continue_: str | None = Query(None, alias="continue", max_length=1000,
                                       description="token from the previous page")) -> Page:
    return Page(limit, continue_)


Caller = Depends(principal)
# Path parameters are bounded like the columns they are looked up in (and audited into).
NamePath = Annotated[str, PathParam(min_length=1, max_length=63, description="a name (at most 63 characters)")]
KeyPath = Annotated[str, PathParam(min_length=1, max_length=255, description="a configuration key")]
# An artifact's digest: the pattern is documented; routes check it themselves, after the permission (their own
# message and field).
DigestPath = Annotated[str, PathParam(min_length=71, max_length=71, description="sha256:<64 hex digits>",
                                      json_schema_extra={"pattern": r"^sha256:[0-9a-f]{64}$"})]
# The name of a resource the route may create: the document states the name rule, the route checks it (so that
# its answer is the API's own 422 at field ``path.name``).
NewNamePath = Annotated[str, PathParam(min_length=1, max_length=63, json_schema_extra={"pattern": DNS_LABEL.pattern},
                                       description="a name: lower-case letters, digits and '-' (DNS-1123 label)")]
Paging = Depends(page)


def parse(model: type[BaseModel], raw: Any, what: str) -> Any:
    """A request body validated by hand (routes that take raw JSON, so that errors carry their field paths)."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise InvalidError(f"invalid {what}", problems_from(e)) from None
