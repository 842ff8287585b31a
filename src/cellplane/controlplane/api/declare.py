"""Routes declared with their permission: ``router.mutation(...)`` and ``router.read(...)`` (``routing.ApiRouter``).

A route that changes state used to repeat the same steps by hand: find the platform, open an audited transaction,
parse the body, work out where the call acts (the RBAC target), check the permission, act. One declaration now says
what is particular to the route, and ``Declared.endpoint`` does the rest, in this order:

1. open the unit of work: ``deps.audited`` under the declared audit ``action`` (kind and subject from the path), or
   no transaction at all for an unaudited route (a data plane's reports open their own);
2. read the body (``body=documented(Model, "what")``: parsed by hand so that problems carry their field paths, as
   ``deps.parse`` always did; ``body=Model``: validated by FastAPI before the route runs; ``body=raw(Model)``:
   handed to the action as sent);
3. ``before``: checks a route makes before the permission (a body validated whole first), if any;
4. ``scope``: where the call acts (organization, project, an environment named by the path, the query or the body,
   or a row the route looks up first), a ``Target``;
5. ``permission``: the check, a ``Rule`` (``requires("deployments:create")``, or a rule of its own for the few routes
   that are not one permission: a platform administrator, the token's own user, a data plane's agent);
6. the action, with a ``Call`` (platform, caller, session, parsed body, the audit ``Work``) and the path and query
   parameters, typed as declared.

A failure at any step is audited as ``failed`` or ``denied`` by ``audited``, as before; what the route sends is built
by the action. ``Call.after_commit`` runs work that must wait for the commit (waking the build workers, sending a
test notification) and may replace the answer.

An ``async`` action (a route that streams its body) gets steps 4 and 5 only, on the event loop, before anything is
read; a refusal is still audited (in a worker thread). Its own transaction is its business.

A route that reads (GET, ``router.read``) is declared the same way, with no audit action and no body: ``before`` (the
query's own checks, such as a time range), then, in the session the declaration names (``session``: a write
``transaction``, a read-only snapshot ``read``, ``run``: read, again in a transaction when it must write; or None:
the scope and rule read no row and the action opens what it needs), the scope, the rule and the action. What these
routes opened by hand before, they open now: one session, or none. A read's rule is often ``reads(permission)``: a
member of the scope gets in, and the action shows each item only where the caller holds the permission
(``Call.permission``); ``anyone(...)`` lets every caller in (what it shows is filtered). An ``async`` read (a
followed stream) is checked on the event loop when its scope and rule read no row; else it checks in each session it
opens, ``with c.reading() as s`` (a followed build log looks its build up again for every page, as before), and an
answer given without any check is a programming error (500), never a leak.

The FastAPI signature is built from the action's: ``request``, the action's parameters after the ``Call``, ``body``
(typed as declared) and ``who``; names, annotations and defaults are kept, so the OpenAPI document is what the
hand-written route produced. The declaration stays on the endpoint (``declared_of``): tests walk the app's routes
and check that every route has one (or is public, with a reason), that a caller without its permission gets a 403,
and that the table of every route's rule and scope (``route_table``) is the one recorded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar, get_type_hints

from fastapi import Body, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cellplane.controlplane import resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.deps import Caller, Work, audited, parse, platform, require, require_superuser
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.rbac import Principal, Target
from cellplane.errors import CellplaneError
from cellplane.model import KINDS

B = TypeVar("B")
ATTRIBUTE = "cellplane_declared"
# The session a read's declaration opens around its scope, rule and action (``Declared.session``).
SessionKind = Literal["transaction", "read", "run"]


# -- what a declaration holds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Documented:
    """A JSON body documented as ``model``; ``read`` turns the raw object into what the action gets (None: raw)."""

    model: Any
    read: Callable[[Any], Any] | None
    description: str | None = None
    examples: list[Any] | None = None

    def annotation(self) -> Any:
        extra: dict[str, Any] = {}
        if self.description is not None:
            extra["description"] = self.description
        if self.examples is not None:
            extra["examples"] = self.examples
        return Annotated[schemas.documented(self.model), Body(**extra)]


def documented(model: type[BaseModel], what: str, description: str | None = None) -> Documented:
    """A body parsed by ``deps.parse``: a bad one is a 422 ``invalid <what>``, audited, with its field paths."""
    return Documented(model, lambda value: parse(model, value, what), description)


def raw(model: Any, description: str | None = None, examples: list[Any] | None = None,
        read: Callable[[Any], Any] | None = None) -> Documented:
    """A body documented as ``model`` and handed to the action as sent (or through ``read``): the action parses it
    where it always has."""
    return Documented(model, read, description, examples)


@dataclass(frozen=True)
class Scope:
    """Where a call acts: ``resolve(call, permission)`` gives the RBAC target (and may look a row up first, keeping
    it on ``call.row``); ``name`` is what the route table and the docs say."""

    name: str
    resolve: Callable[[Call[Any], str], Target]


ORGANIZATION = Scope("organization", lambda c, _: Target(c["org"]))
PROJECT = Scope("project", lambda c, _: Target(c["org"], c["project"]))


def environment(where: str, key: str = "environment") -> Scope:
    """An environment of the path's project, named by the path (``path``), the query (``query``, empty when absent:
    the project) or the parsed body (``body``)."""
    if where == "body":
        return Scope(f"environment (body.{key})", lambda c, _: Target(c["org"], c["project"], getattr(c.body, key)))
    return Scope(f"environment ({where}.{key})", lambda c, _: Target(c["org"], c["project"], c[key] or ""))


PLATFORM = Scope("platform", lambda c, _: Target(""))  # no organization's: users, tokens, the master key


def looked_up(name: str, resolve: Callable[[Call[Any], str], Target]) -> Scope:
    """A scope read off a row the route finds first (an approval, an alert rule, a build, a role binding)."""
    return Scope(name, resolve)


def found(scope: Scope) -> Scope:
    """``scope`` (an organization's or a project's), once its organization (and project) are found: a 404 naming the
    missing one, at ``path.organization`` or ``path.project``, comes before the permission."""

    def resolve(c: Call[Any], permission: str) -> Target:
        target = scope.resolve(c, permission)
        owner = resources.Scope(KINDS["Component" if target.project else "Project"], target.organization,
                                target.project)
        resources.require_owner(c.session, owner, field_path="path")
        return target

    return Scope(f"{scope.name} (found first)", resolve)


@dataclass(frozen=True)
class Rule:
    """Who may make the call. ``permission`` is what a refusal names (and what a read filters its items by);
    ``check`` raises ``ForbiddenError`` when the caller may not. ``summary`` is what the route table says when the
    permission alone does not say it; ``refuses`` is False for a rule that lets every caller in."""

    permission: str
    check: Callable[[Call[Any], Target], None]
    summary: str = ""
    refuses: bool = True

    def describe(self) -> str:
        """What the route table says of the rule."""
        return self.summary or self.permission


def requires(permission: str) -> Rule:
    """The common rule: ``permission`` on the scope's target (``deps.require``)."""
    return Rule(permission, lambda c, target: require(c.who, permission, target))


def reads(permission: str) -> Rule:
    """A read its scope's members make: a member of the organization (on a project's target: whoever sees the
    project) gets in, anyone else needs ``permission`` on the target. The action shows each item only where the
    caller holds ``permission`` (``Call.permission``): an environment-scoped binding sees its environment's."""

    def check(c: Call[Any], target: Target) -> None:
        if target.project:
            inside = c.who.sees_project(target.organization, target.project)
        else:
            inside = c.who.member_of(target.organization)
        if not inside:
            require(c.who, permission, target)

    return Rule(permission, check, f"{permission} unless a member")


def anyone(shows: str, permission: str = "") -> Rule:
    """Every caller with a token: the answer shows it ``shows`` (filtered by ``permission``, when one is named)."""
    return Rule(permission or "any caller", lambda c, _: None, f"any caller: {shows}", refuses=False)


def administrator(what: str) -> Rule:
    """A platform administrator only (``deps.require_superuser``): a refusal says one may not ``what``."""
    return Rule("platform administrator", lambda c, _: require_superuser(c.who, what))


@dataclass(frozen=True)
class Subject:
    """What the audit event is about: a kind, and the path parameter (or a function of the call) naming it."""

    kind: str = ""
    name: str | Callable[[Call[Any]], str] = ""
    project: str | Callable[[Call[Any]], str] = "project"
    organization: str | Callable[[Call[Any]], str] = "org"


COMPONENT_SUBJECT = Subject("Component", "component")  # most of the audit's events: the path's component


@dataclass(frozen=True)
class Declared:
    """One route's declaration."""

    permission: Rule
    scope: Scope
    action: str | None = None  # the audit action; None: not audited (no audited unit of work)
    subject: Subject = Subject()
    body: Documented | type[BaseModel] | None = None
    before: Callable[[Call[Any]], None] | None = None
    message: Callable[[Call[Any]], str] | None = None  # the audit message the work starts with
    dry_run: Callable[[Call[Any]], bool] | None = None
    session: SessionKind | None = None  # not audited: the session opened around scope, rule and action (None: none)

    def endpoint(self, action: Callable[..., Any]) -> Callable[..., Any]:
        """The FastAPI endpoint that runs ``action`` as the declaration says (see the module's docstring)."""
        asynchronous = inspect.iscoroutinefunction(action)
        endpoint = self._checked_first(action) if asynchronous else self._unit_of_work(action)
        endpoint.__name__, endpoint.__qualname__ = action.__name__, action.__qualname__
        endpoint.__doc__, endpoint.__module__ = action.__doc__, action.__module__
        endpoint.__signature__ = self._signature(action)  # type: ignore[attr-defined]
        setattr(endpoint, ATTRIBUTE, self)
        return endpoint

    def check(self, call: Call[Any]) -> None:
        """The scope, then the rule on the target it resolves to (``ForbiddenError``, or a 404 of the scope's)."""
        self.permission.check(call, self.scope.resolve(call, self.permission.permission))
        call.checked = True

    def _unit_of_work(self, action: Callable[..., Any]) -> Callable[..., Any]:
        def endpoint(request: Request, who: Principal, body: Any = None, **params: Any) -> Any:
            call: Call[Any] = Call(platform(request), who, request, params, body, declared=self)  # as sent or read

            def act() -> Any:
                self.check(call)
                return action(call, **params)

            if self.action is None:  # nothing to audit: what comes before the permission comes before the session
                self._prepare(call, body)
                result = self._in_session(call, act)
            else:
                with self._audited(call):
                    self._prepare(call, body)
                    result = act()
            for then in call.afterwards:
                result = then(result)
            return result

        return endpoint

    def _prepare(self, call: Call[Any], body: Any) -> None:
        """Steps 2 and 3: the body, then the checks that come before the permission."""
        if isinstance(self.body, Documented) and self.body.read is not None:
            call.body = self.body.read(body)
        if self.before is not None:
            self.before(call)

    def _in_session(self, call: Call[Any], act: Callable[[], Any]) -> Any:
        """``act`` in the session the declaration names (none: as it is)."""
        store = call.platform.store

        def within(s: Session) -> Any:
            call.session = s
            return act()

        if self.session is None:
            return act()
        if self.session == "run":
            return store.run(within)
        with store.read() if self.session == "read" else store.transaction() as s:
            return within(s)

    def _checked_first(self, action: Callable[..., Any]) -> Callable[..., Any]:
        async def endpoint(request: Request, who: Principal, **params: Any) -> Any:
            call: Call[Any] = Call(platform(request), who, request, params, declared=self)
            if self.before is not None:
                self.before(call)
            if self.session is None:  # the scope and the rule read no row: checked here, on the event loop
                try:
                    self.check(call)
                except CellplaneError as e:
                    if self.action is not None:
                        await run_in_threadpool(_audit_refusal, call, self._work(call), e)
                    raise
            if self.action is not None:
                call.work = self._work(call)
            result = await action(call, **params)
            if not call.checked:  # a session was declared: the action must read through ``Call.reading``
                raise RuntimeError(f"{action.__name__} answered without checking its permission (Call.reading)")
            return result

        return endpoint

    @contextmanager
    def _audited(self, call: Call[Any]) -> Iterator[None]:
        assert self.action is not None
        call.work = self._work(call)
        dry_run = self.dry_run(call) if self.dry_run is not None else False
        with audited(call.platform, call.who, call.work, dry_run) as s:
            call.session = s
            yield

    def _work(self, call: Call[Any]) -> Work:
        assert self.action is not None
        subject = self.subject

        def value(source: str | Callable[[Call[Any]], str]) -> str:
            return source(call) if callable(source) else str(call.params.get(source) or "") if source else ""

        return Work(self.action, subject.kind, value(subject.organization), value(subject.project),
                    value(subject.name), self.message(call) if self.message is not None else "")

    def _signature(self, action: Callable[..., Any]) -> inspect.Signature:
        hints = get_type_hints(action, include_extras=True)
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [inspect.Parameter("request", keyword, annotation=Request)]
        for p in list(inspect.signature(action).parameters.values())[1:]:
            parameters.append(p.replace(kind=keyword, annotation=hints.get(p.name, p.annotation)))
        if self.body is not None and not inspect.iscoroutinefunction(action):
            body = self.body.annotation() if isinstance(self.body, Documented) else self.body
            parameters.append(inspect.Parameter("body", keyword, annotation=body))
        parameters.append(inspect.Parameter("who", keyword, annotation=Principal, default=Caller))
        return inspect.Signature(parameters, return_annotation=hints.get("return", inspect.Signature.empty))


def _audit_refusal(call: Call[Any], work: Work, error: CellplaneError) -> None:
    try:
        with audited(call.platform, call.who, work):
            raise error
    except CellplaneError:
        pass


@dataclass
class Call(Generic[B]):
    """One call of a declared route: the platform, the caller, its path and query parameters, and, as the steps
    run, the session of its unit of work, its parsed body, the audit ``Work`` and a row its scope looked up."""

    platform: Platform
    who: Principal
    request: Request
    params: dict[str, Any]
    body: B = field(default=None)  # type: ignore[assignment]
    session: Session = field(default=None)  # type: ignore[assignment]
    work: Work = field(default_factory=lambda: Work(""))
    row: Any = None  # what the scope looked up
    prepared: Any = None  # what ``before`` made of the body (a validated spec) or of the query (a time range)
    afterwards: list[Callable[[Any], Any]] = field(default_factory=list)
    declared: Declared | None = None
    checked: bool = False  # the scope and the rule have let the caller in

    def __getitem__(self, name: str) -> Any:
        """A path or query parameter."""
        return self.params[name]

    @property
    def permission(self) -> str:
        """The declared rule's permission: what a read's items are filtered by."""
        assert self.declared is not None
        return self.declared.permission.permission

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session of the kind the route declares, in which its scope and rule are checked (again): what an
        ``async`` read opens, in a worker thread, each time it reads (each page of a followed stream)."""
        assert self.declared is not None and self.declared.session in ("transaction", "read")
        store = self.platform.store
        with store.read() if self.declared.session == "read" else store.transaction() as s:
            self.session = s
            self.declared.check(self)
            yield s

    def after_commit(self, then: Callable[[Any], Any]) -> None:
        """Run ``then`` on the action's answer once its unit of work has committed; its result is the answer."""
        self.afterwards.append(then)


def declared_of(endpoint: Callable[..., Any]) -> Declared | None:
    """The declaration of a route's endpoint (None: a route written by hand)."""
    return getattr(endpoint, ATTRIBUTE, None)


def route_table(routes: Iterable[Any]) -> list[str]:
    """One line per route and method (HEAD is its GET's), ``METHOD path | rule | scope``, sorted: who may call what,
    as declared; a route without a declaration (the health check, the OpenAPI document, ``/metrics``, the git push
    webhook) says ``public``. ``tests/test_route_declarations.py`` holds it to the table recorded in
    ``tests/fixtures/route-permissions.txt``."""
    lines = []
    for route in routes:
        declared = declared_of(route.endpoint) if hasattr(route, "endpoint") else None
        rule, scope = ("public", "-") if declared is None else (declared.permission.describe(), declared.scope.name)
        methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
        lines += [f"{method} {route.path} | {rule} | {scope}" for method in sorted(methods)]
    return sorted(lines)
