"""The data plane's listeners: an external and an internal one per environment, one per cell.

A listener keeps its port across agent restarts (``ports.json``), so the URLs the control plane shows
and the ones injected into workloads stay valid. With ``first_port`` set, new listeners take the next
free port from there (predictable URLs for ``make run``); with 0, any free port.

Each cell listener has a credential derived from the agent's ``cell.key``; only the URLs given to that cell's
workloads carry it (``cell_base``). What is reported to the control plane (``base``, ``report``) never does.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from cellplane.contract import GatewayReport
from cellplane.dataplane.localstate import LocalState
from cellplane.gateway.auth import cell_credential
from cellplane.gateway.routes import ListenerSpec
from cellplane.gateway.server import Gateway

log = logging.getLogger("cellplane.dataplane")


class Network:
    def __init__(self, gateway: Gateway, state: LocalState, host: str = "127.0.0.1", first_port: int = 0) -> None:
        self.gateway = gateway
        self.state = state
        self.host = host
        self.first_port = first_port
        self.ports = state.ports()
        self._cell_key = state.cell_key()
        self._open: dict[str, ListenerSpec] = {}

    def _specs(self, environments: set[str], cells: set[tuple[str, str]]) -> list[ListenerSpec]:
        specs = []
        for env in sorted(environments):
            specs.append(ListenerSpec("external", env, host=self.host))
            specs.append(ListenerSpec("internal", env))
        specs += [ListenerSpec("cell", env, project, credential=cell_credential(self._cell_key, env, project))
                  for env, project in sorted(cells)]
        return specs

    async def ensure(self, environments: set[str], cells: set[tuple[str, str]]) -> None:
        """Open the listeners these environments and cells need, close the others."""
        wanted = {s.key: s for s in self._specs(environments, cells)}
        for key in [k for k in self._open if k not in wanted]:
            await self.gateway.close_listener(key)
            del self._open[key]
        changed = False
        for key, spec in wanted.items():
            if key in self._open:
                continue
            port = await self._listen(spec)
            self._open[key] = spec
            if self.ports.get(key) != port:
                self.ports[key] = port
                changed = True
        if changed:
            self.state.save_ports(self.ports)

    async def _listen(self, spec: ListenerSpec) -> int:
        saved = self.ports.get(spec.key)
        candidates: list[int] = [saved] if saved else []
        if self.first_port:
            used = set(self.ports.values())
            candidates += [p for p in range(self.first_port, self.first_port + 200) if p not in used]
        candidates.append(0)
        for port in candidates:
            try:
                return await self.gateway.ensure_listener(dataclasses.replace(spec, port=port))
            except OSError as e:
                if port == saved:
                    log.warning("listener %s cannot take its port %s again (%s); its URLs change", spec.key, port, e)
        raise OSError(f"no port for listener {spec.key}")

    def base(self, kind: str, environment: str, project: str | None = None) -> str | None:
        key = f"cell/{environment}/{project}" if kind == "cell" else f"{kind}/{environment}"
        port = self.gateway.listeners().get(key)
        if port is None:
            return None
        host = "127.0.0.1" if kind != "external" or self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{port}"

    def cell_base(self, environment: str, project: str) -> str | None:
        """The base URL of a cell's listener with the cell's credential: for that cell's workloads only."""
        base = self.base("cell", environment, project)
        spec = self._open.get(f"cell/{environment}/{project}")
        if base is None or spec is None:
            return None
        return f"{base}/_cell/{spec.credential}"

    def report(self) -> dict[str, GatewayReport]:
        """The gateways as the control plane shows them: environment -> external, internal, cells (the status
        report's model; pydantic's ValidationError for a listener without a URL)."""
        out: dict[str, dict[str, Any]] = {}
        for spec in self._open.values():
            entry = out.setdefault(spec.environment, {"external": None, "internal": None, "cells": {}})
            url = self.base(spec.kind, spec.environment, spec.project)
            if spec.kind == "cell":
                entry["cells"][spec.project] = url
            else:
                entry[spec.kind] = url
        return {env: GatewayReport(external=e["external"], internal=e["internal"], cells=e["cells"])
                for env, e in out.items()}



