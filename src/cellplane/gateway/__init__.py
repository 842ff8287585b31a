"""The data plane's HTTP gateway: external, internal and cell listeners in front of the replicas.

Design: docs/dataplane.md ("URL scheme", "Connections"). Written on asyncio protocols with httptools, so it
runs at full speed on the agent's uvloop event loop.
"""

from cellplane.gateway.demand import Demand
from cellplane.gateway.metrics import Metrics
from cellplane.gateway.routes import Backend, Grant, ListenerSpec, RouteTable, Upstream
from cellplane.gateway.server import Gateway, GatewaySettings

__all__ = ["Backend", "Demand", "Gateway", "GatewaySettings", "Grant", "ListenerSpec", "Metrics", "RouteTable",
           "Upstream"]
