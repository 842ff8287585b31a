"""What the gateway routes: the route table the agent hands to ``Gateway.update`` and the listeners it opens.

These are plain frozen values so that the agent can build a complete table and swap it in one assignment;
the gateway compiles them into lookup structures (``cellplane.gateway.router``) and never mutates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

ListenerKind = Literal["external", "internal", "cell"]


@dataclass(frozen=True)
class Upstream:
    """One ready replica's HTTP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Backend:
    """One HTTP endpoint of one deployed component in one environment."""

    environment: str
    project: str
    component: str
    endpoint: str
    version: str  # "v1"
    base_path: str  # "/" or "/api" ... (no trailing slash except "/")
    visibility: frozenset[str]  # subset of {"Project", "Organization", "Public"}
    upstreams: tuple[Upstream, ...]  # ready replicas; may be empty (-> 503, or held and woken: ``wake``)
    deployment: str = ""  # the deployment's id: what ``Gateway.demand`` counts under and ``wake`` is called with
    wake: bool = False  # without upstreams, hold requests and wake the deployment instead of answering 503


@dataclass(frozen=True)
class Grant:
    """A connection's credentials, as the internal listener checks them."""

    consumer_key: str
    secret_digest: str  # sha256 hex of the consumer secret (= the API key)
    environment: str
    project: str  # the consumer
    component: str
    target: tuple[str, str, str]  # (project, component, endpoint)

    @cached_property
    def consumer_label(self) -> str:
        """"project/component" of the consumer: its metrics label and its name in access logs and spans."""
        return f"{self.project}/{self.component}"


@dataclass(frozen=True)
class ListenerSpec:
    """A listener to open: ``kind`` decides the policy, ``environment`` (and ``project`` for cells) its routes.

    A cell listener has a ``credential`` (``cellplane.gateway.auth.cell_credential``): it serves only requests that
    show it. It is never shown in the spec's repr."""

    kind: ListenerKind
    environment: str
    project: str | None = None  # set for kind == "cell"
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    credential: str | None = field(default=None, repr=False)  # set for kind == "cell"

    def __post_init__(self) -> None:
        if self.kind == "cell" and not (self.project and self.credential):
            raise ValueError("a cell listener needs its project and its credential")

    @property
    def key(self) -> str:
        """The listener's identity, stable across ports: "external/development", "cell/development/shop"."""
        if self.kind == "cell":
            return f"cell/{self.environment}/{self.project}"
        return f"{self.kind}/{self.environment}"


@dataclass(frozen=True)
class RouteTable:
    """Everything the gateway routes and admits; replaced as a whole on every change."""

    backends: tuple[Backend, ...] = ()
    grants: tuple[Grant, ...] = ()
