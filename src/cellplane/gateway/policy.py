"""Who may call which endpoint through which listener (docs/dataplane.md, "URL scheme").

Without network namespaces every local process can open every loopback port, so the cells are enforced here,
at L7: the listener a request arrives on says where the caller stands (outside, inside the organization, or
inside one project's cell), and on the internal listener the connection credentials say who it is. A cell
listener admits only callers that show the cell's credential (``Listener._in_cell``, before any policy): that
credential is the connection credential of every connection inside the project, so an ``Organization``
endpoint is never served without a connection credential on any listener.
A refusal carries a sentence for the 403 body and the access log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cellplane.gateway.auth import TokenIssuer, grant_for_key, grant_for_secret
from cellplane.gateway.router import Route, RouteIndex
from cellplane.gateway.routes import Grant, ListenerSpec

# (refusal reason or None when admitted, the grant that admitted the caller if any)
Admission = tuple[str | None, Grant | None]
ADMITTED: Admission = (None, None)


class Policy(ABC):
    """The admission rule of one listener kind."""

    def __init__(self, spec: ListenerSpec) -> None:
        self.spec = spec

    @abstractmethod
    def admit(self, route: Route, api_key: bytes | None, bearer: bytes | None, index: RouteIndex) -> Admission:
        """Whether a request for ``route`` with these credentials may pass, and on which grant."""


class ExternalPolicy(Policy):
    """Anyone, to ``Public`` endpoints."""

    def admit(self, route: Route, api_key: bytes | None, bearer: bytes | None, index: RouteIndex) -> Admission:
        if route.public:
            return ADMITTED
        if route.organization:
            return (f"endpoint {route.name} is not public; it is visible to the organization, through the internal "
                    "listener with connection credentials"), None
        return f"endpoint {route.name} is not public; it is visible to project {route.project} only", None


class InternalPolicy(Policy):
    """Callers presenting the credentials of a connection to exactly this endpoint."""

    def __init__(self, spec: ListenerSpec, issuer: TokenIssuer) -> None:
        super().__init__(spec)
        self.issuer = issuer

    def admit(self, route: Route, api_key: bytes | None, bearer: bytes | None, index: RouteIndex) -> Admission:
        if not route.organization:
            return f"endpoint {route.name} is visible to project {route.project} only", None
        b = route.backend
        target = (b.project, b.component, b.endpoint)
        env = self.spec.environment
        if api_key is not None:
            grant, known = grant_for_secret(index, api_key, env, target)
            if grant is not None:
                return None, grant
            if known:
                return f"the API key belongs to a connection to another endpoint than {route.name}", None
            return f"the API key is not a connection credential in {env}", None
        if bearer is not None:
            consumer_key = self.issuer.consumer_key(bearer)
            if consumer_key is None:
                return "the bearer token is invalid or expired; get a new one from /_cellplane/token", None
            grant = grant_for_key(index, consumer_key, env, target)
            if grant is not None:
                return None, grant
            return f"the bearer token's connection does not lead to {route.name}", None
        return (f"no connection credentials for {route.name}; send Choreo-API-Key "
                "or a bearer token from /_cellplane/token"), None


class CellPolicy(Policy):
    """Components of one project (callers that showed the cell's credential), to every endpoint of that project."""

    def admit(self, route: Route, api_key: bytes | None, bearer: bytes | None, index: RouteIndex) -> Admission:
        if route.project == self.spec.project:
            return ADMITTED
        return (f"endpoint {route.name} belongs to project {route.project}; the cell listener of project "
                f"{self.spec.project} routes only that project's endpoints"), None


def policy_for(spec: ListenerSpec, issuer: TokenIssuer) -> Policy:
    if spec.kind == "external":
        return ExternalPolicy(spec)
    if spec.kind == "internal":
        return InternalPolicy(spec, issuer)
    return CellPolicy(spec)
