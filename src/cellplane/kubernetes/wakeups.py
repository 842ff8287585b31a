"""Waking a deployment at zero on Kubernetes: the agent's ``/scale`` to 1, then a fast watch of its pods.

``Wakeups.wake(organization, d, at_zero)`` starts one wake-up per deployment (a second call while one is under way
is a no-op, as the gateway's activator asks once per episode anyway): when the deployment is at zero (the agent's
own decision, or its Deployment observed at 0) its count goes to 1 through ``scale``; then its pods are listed
every ``POLL`` seconds (one list request by its instance label, not the observation pass of every namespace) until
a pod of its release is ready and not being deleted: ``routed`` gets the pods (the runtime swaps them into its
observation and the gateway's route table: the held requests go on), and the deployment's system log says how
long it took. A pod that will not run by itself (``health.pod_problem``: an image that does not pull, a crash
loop, a container that exited, unschedulable) ends the wake-up at once through ``failed`` with the reason, which
the gateway answers its held requests with; so does a wake-up that outlasts ``LIMIT`` (the gateway's own hold
timeout is shorter). Cost: one list request per ``POLL`` per deployment being woken, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lightkube import AsyncClient

from cellplane.contract import DesiredDeployment
from cellplane.kubernetes import health, names
from cellplane.kubernetes.client import message
from cellplane.kubernetes.prune import list_kind

log = logging.getLogger("cellplane.dataplane")
POLL = 0.05  # seconds between two lists of a waking deployment's pods
LIMIT = 120.0  # seconds a wake-up may take before it is said to have failed
WOKEN = "woken by a request"

Scale = Callable[[str, int, str], Awaitable[None]]  # (deployment id, replicas, reason)
Routed = Callable[[DesiredDeployment, list[dict[str, Any]]], Awaitable[None]]  # its pods, one of them ready
Failed = Callable[[DesiredDeployment, str], None]  # why no replica became ready
Line = Callable[[DesiredDeployment, str], None]  # a line in the deployment's system log


class Wakeups:
    """The wake-ups under way (see the module's docstring)."""

    def __init__(self, client: AsyncClient, labels: Callable[[], dict[str, str]], scale: Scale, routed: Routed,
                 failed: Failed, line: Line) -> None:
        self.client = client
        self.labels = labels  # the data plane's labels (the runtime's selector)
        self.scale, self.routed, self.failed, self.line = scale, routed, failed, line
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.woken = 0  # wake-ups that ended with a ready replica (for tests and benchmarks)

    def under_way(self, deployment: str) -> bool:
        task = self.tasks.get(deployment)
        return task is not None and not task.done()

    def wake(self, organization: str, d: DesiredDeployment, at_zero: bool) -> None:
        """Start waking ``d`` unless a wake-up of it is under way (``at_zero``: its count goes to 1 first)."""
        if self.under_way(d.id):
            return
        self.tasks[d.id] = asyncio.create_task(self._wake(organization, d, at_zero), name=f"kube-wake-{d.id}")

    async def _wake(self, organization: str, d: DesiredDeployment, at_zero: bool) -> None:
        started = time.monotonic()
        if at_zero:
            try:
                await self.scale(d.id, 1, WOKEN)
            except Exception as e:  # (refused or unreachable: the held requests are told at once)
                self.failed(d, f"cannot scale {names.workload(d.component, d.version)} to 1: {message(e)}")
                return
        namespace = names.namespace(organization, d.project, d.environment)
        selector = {**self.labels(), names.INSTANCE: names.workload(d.component, d.version)}
        release = names.label_value(d.release)
        while time.monotonic() - started < LIMIT:
            try:
                pods = await list_kind(self.client, "v1", "Pod", selector, namespace)
            except Exception as e:  # (the API server away for a moment: tried again)
                log.debug("listing the pods of %s failed: %s", d.id, message(e))
                pods = []
            current = sorted((p for p in pods if not p["metadata"].get("deletionTimestamp")
                              and (p["metadata"].get("labels") or {}).get(names.RELEASE) == release),
                             key=lambda p: p["metadata"]["name"])
            if any(health.pod_ready(p) for p in current):
                await self.routed(d, pods)
                self.woken += 1
                self.line(d, f"{WOKEN}: replica ready in {time.monotonic() - started:.2f} s")
                return
            for index, pod in enumerate(current):
                problem = health.pod_problem(pod)
                if problem is not None:
                    self.failed(d, f"replica {index}: {problem.message}")
                    return
            await asyncio.sleep(POLL)
        self.failed(d, f"no replica was ready within {LIMIT:g} s")

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = {}
