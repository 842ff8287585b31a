"""Control-plane scale: applying many components, API latency under concurrent clients, and the data plane's
reconcile pass with many deployments; on a real control plane (SQLite) and a real agent.

    .venv/bin/python benchmarks/bench_controlplane.py [--components 1000] [--projects 50] [--clients 50]
        [--seconds 20] [--think 0.5] [--deployments 500] [--environments 5] [--passes 20] [--json]

One control plane (``start_server``, SQLite, a fresh data directory) serves every part, in this order:

1. apply: ``--components`` services across ``--projects`` projects, one ``POST /apply`` per project (its
   Project document and its components, each with an endpoint, a URL dependency, configuration and resources),
   one after the other as a CLI would send them.
2. setup for 4: one tiny task artifact (tests/fixtures/apps/task) built once per task component — a deployment
   can only name a build of its own component, so ``--deployments`` deployments are ``--deployments /
   --environments`` task components (half ``manual-task``, half ``scheduled-task`` on a yearly cron: no process
   runs, yet every one goes through desired state, the agent's reconcile and, for the scheduled ones, its
   scheduler), each deployed to ``--environments`` environments bound to the data plane ``local``. Each
   upload carries one file naming its component: builds of byte-identical uploads share one upload blob, and
   the first to finish deletes it from under the others.
3. API latency: ``--clients`` clients (one task and one connection each, httpx) for ``--seconds`` seconds,
   70 % reads (a component, a project's components, a component's deployments, a project's deployments) and
   30 % writes (re-apply a component with a changed annotation, set a configuration value); every request's
   latency, after a one-second warm-up. First paced like people and scripts using the API: each client sends a
   request, waits for the answer, then pauses a random think time (uniform 0 to ``--think`` seconds, 0.5 by
   default: a mean of 0.25 s, so 50 clients offer about 200 req/s when answers are fast); the p50 and p99
   targets are taken from this run. Then the same clients without pauses (closed loop): the throughput the
   control plane tops out at, with its p50 and p99 as a reference only. One client alone first gives each
   operation's unloaded time. No data plane is attached yet.
4. reconcile: the real agent (``cellplane.dataplane.agent.Agent``) in this process against the control plane;
   once every deployment reports its release, ``Agent.reconcile`` is timed ``--passes`` times on an unchanged
   desired state (the agent's own passes are recorded too), and the control plane's CPU is measured for 10 s
   with the agent attached and nothing else happening.
5. API latency again, paced then without pauses, with an agent attached: the agent of 4 restarted as a process
   of its own (``cellplane dataplane run``, from the state it left), as it runs in production. It long-polls the
   desired state and sends its status every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psutil
from common import ROOT, Figure, Suite, median, percentile

# common put tests/ on sys.path: the test kits start real control planes
from liveserver import LiveServer, doc, start_server

ORG = "/organizations/default"
TASK_APP = ROOT / "tests" / "fixtures" / "apps" / "task"
DATAPLANE = "local"
YEARLY = "0 3 1 1 *"  # a scheduled task that does not fire during the run
P99_TARGET_MS = 50.0  # issue 7: API p99 under 50 concurrent clients, SQLite
RECONCILE_TARGET_S = 0.5  # issue 7: the agent's reconcile with 500 deployments and no change
WARMUP_SECONDS = 1.0
THINK_SECONDS = 0.5  # a paced client pauses uniform(0, THINK_SECONDS) after each answer
BASELINE_REQUESTS = 300
IDLE_SECONDS = 10.0
MIX = (  # operation, weight (percent)
    ("get component", 30), ("list project components", 15), ("component deployments", 15),
    ("project deployments", 10), ("apply component", 20), ("set config", 10))
WRITES = {"apply component", "set config"}


class BenchError(Exception):
    """A part of the benchmark cannot go on: the reason."""


def service_spec(i: int) -> dict[str, Any]:
    return {"type": "service", "description": f"benchmark service {i}",
            "endpoints": [{"name": "api", "port": 8080, "basePath": "/api",
                           "visibility": ["Project", "Organization"]}],
            "dependencies": [{"name": "upstream", "url": "https://upstream.example.com",
                              "env": [{"from": "ServiceURL", "to": "UPSTREAM_URL"}]}],
            "configuration": {"env": [{"name": "LOG_LEVEL", "value": "info"},
                                      {"name": "FEATURE_X", "value": "on", "environments": {"staging": "off"}}]},
            "resources": {"cpu": "250m", "memory": "256Mi"}}


def task_spec(i: int) -> dict[str, Any]:
    if i % 2:
        return {"type": "scheduled-task", "schedule": {"cron": YEARLY}}
    return {"type": "manual-task"}


@dataclass
class Fleet:
    services: list[tuple[str, str, int]] = field(default_factory=list)  # (project, component, spec index)
    tasks: list[tuple[str, str]] = field(default_factory=list)  # deployed task components
    task_projects: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    deployments: int = 0


def _ok(r: httpx.Response, what: str, codes: tuple[int, ...] = (200,)) -> Any:
    if r.status_code not in codes:
        raise BenchError(f"{what}: HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


# -- 1. apply ---------------------------------------------------------------------------------------------------


def apply_services(c: httpx.Client, fleet: Fleet, components: int, projects: int) -> dict[str, Any]:
    """One POST /apply per project (its Project document first); returns the timings."""
    per_project = [components // projects + (1 if p < components % projects else 0) for p in range(projects)]
    batches, index = [], 0
    for p, count in enumerate(per_project):
        project = f"app-{p:03d}"
        docs = [doc("Project", project, organization="default")]
        for _ in range(count):
            name = f"svc-{index:04d}"
            docs.append(doc("Component", name, service_spec(index), organization="default", project=project))
            fleet.services.append((project, name, index))
            index += 1
        batches.append(docs)
    times = []
    started = time.perf_counter()
    for docs in batches:
        t = time.perf_counter()
        answer = _ok(c.post("/apply", json={"documents": docs}), f"apply {docs[0]['metadata']['name']}")
        times.append(time.perf_counter() - t)
        actions = collections.Counter(item["action"] for item in answer["results"])
        if set(actions) != {"created"}:
            raise BenchError(f"apply {docs[0]['metadata']['name']}: {dict(actions)}")
    total = time.perf_counter() - started
    return {"seconds": total, "batches": len(batches), "batchMs": _summary(times)}


# -- 2. tasks: builds and deployments ---------------------------------------------------------------------------


def prepare_tasks(c: httpx.Client, fleet: Fleet, deployments: int, environments: int,
                  tmp: Path) -> dict[str, Any]:
    """Task components, one build each (the same source but for one file), deployed to ``environments``
    environments."""
    from cellplane.build.archive import default_exclude, pack

    envs = [f"bench-{i + 1}" for i in range(environments)]
    count = math.ceil(deployments / environments)
    per_project = 10
    docs = [doc("DataPlane", DATAPLANE, {"type": "local"}, organization="default")]
    docs += [doc("Environment", e, {"dataPlane": DATAPLANE}, organization="default") for e in envs]
    tasks = []
    for i in range(count):
        project = f"jobs-{i // per_project:03d}"
        if project not in fleet.task_projects:
            fleet.task_projects.append(project)
            docs.append(doc("Project", project, organization="default"))
        name = f"task-{i:04d}"
        docs.append(doc("Component", name, task_spec(i), organization="default", project=project))
        tasks.append((project, name))
    _ok(c.post("/apply", json={"documents": docs}), "apply the task components")
    # Each upload differs by one file: builds of byte-identical uploads share one content-addressed upload blob,
    # and the first build to finish removes it from under the others ("blob ... is corrupt in the store").
    source, archive = tmp / "task-src", tmp / "task.tar.gz"
    shutil.copytree(TASK_APP, source)
    started = time.perf_counter()
    builds = []
    for project, name in tasks:
        (source / "BENCH_COMPONENT").write_text(f"{project}/{name}\n")
        pack(source, archive, exclude=default_exclude)
        r = c.post(f"{ORG}/projects/{project}/components/{name}/builds", content=archive.read_bytes(),
                   headers={"Content-Type": "application/gzip"})
        builds.append(_ok(r, f"build {project}/{name}", (201,))["id"])
    pending, durations = list(builds), []  # queued in this order: poll the oldest ones only
    deadline = time.monotonic() + 60 + 10 * len(builds)
    while pending:
        for build_id in list(pending):
            info = _ok(c.get(f"{ORG}/builds/{build_id}"), f"build {build_id}")
            if info["state"] not in ("succeeded", "failed", "cancelled", "timed-out"):
                break
            if info["state"] != "succeeded":
                raise BenchError(f"build {build_id} of the task app {info['state']}: {info.get('error')}")
            durations.append(info["durationSeconds"])
            pending.remove(build_id)
        if pending:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(pending)} of {len(builds)} builds of the task app not done in time")
            time.sleep(0.3)
    built = time.perf_counter() - started
    started = time.perf_counter()
    pairs = [(project, name, env) for env in envs for project, name in tasks][:deployments]
    for project, name, env in pairs:
        r = c.post(f"{ORG}/projects/{project}/components/{name}/deployments", json={"environment": env})
        _ok(r, f"deploy {project}/{name} to {env}", (200, 201))
    deployed = time.perf_counter() - started
    fleet.tasks, fleet.environments, fleet.deployments = tasks, envs, len(pairs)
    return {"taskComponents": len(tasks), "environments": envs, "deployments": len(pairs),
            "buildsSeconds": round(built, 2), "buildSeconds": _summary(durations, 1.0),
            "deploySeconds": round(deployed, 2), "deployCallMs": round(deployed / len(pairs) * 1000, 1)}


# -- 3 and 5. API latency ---------------------------------------------------------------------------------------


class Mix:
    """The requests of the mix, built for one client (its own random sequence)."""

    def __init__(self, fleet: Fleet, seed: int) -> None:
        self.fleet = fleet
        self.rng = random.Random(seed)  # noqa: S311  (a reproducible mix, not a secret)
        self.names = [name for name, _ in MIX]
        self.weights = [weight for _, weight in MIX]
        self.counter = 0

    def next(self) -> tuple[str, str, str, dict[str, Any]]:
        """(operation, method, path, request keywords)."""
        op = self.rng.choices(self.names, self.weights)[0]
        project, name, index = self.rng.choice(self.fleet.services)
        self.counter += 1
        if op == "get component":
            return op, "GET", f"{ORG}/projects/{project}/components/{name}", {}
        if op == "list project components":
            return op, "GET", f"{ORG}/projects/{project}/components", {}
        if op == "component deployments":
            if self.fleet.tasks:
                project, name = self.rng.choice(self.fleet.tasks)
            return op, "GET", f"{ORG}/projects/{project}/components/{name}/deployments", {}
        if op == "project deployments":
            if self.fleet.task_projects:
                project = self.rng.choice(self.fleet.task_projects)
            return op, "GET", f"{ORG}/deployments", {"params": {"project": project}}
        if op == "apply component":
            touched = f"{os.getpid()}-{time.monotonic_ns()}-{self.counter}"
            body = doc("Component", name, service_spec(index), organization="default", project=project,
                       annotations={"bench.cellplane.dev/touched": touched})
            return op, "POST", "/apply", {"json": {"documents": [body]}}
        return op, "PUT", f"{ORG}/projects/{project}/components/{name}/config/BENCH_VALUE", \
            {"json": {"value": str(self.counter)}}


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core: the control plane, this process

    def all(self) -> list[float]:
        return [v for values in self.latencies.values() for v in values]


async def load(server: LiveServer, fleet: Fleet, clients: int, seconds: float, warmup: float = WARMUP_SECONDS,
               requests: int | None = None, think: float = 0.0, agent_pid: int | None = None) -> Samples:
    """``clients`` clients for ``seconds`` (or ``requests`` in all); latencies after the warm-up. Each client sends
    a request, waits for its answer, then pauses uniform(0, ``think``) seconds (none: a closed loop)."""
    samples = Samples()
    gc.collect()
    gc.freeze()  # what this process holds already stays out of its collector's full passes, which pause every client
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    cpu = _Cpu(server, agent_pid)
    begin = time.monotonic()
    measure_from = begin + warmup
    end = measure_from + seconds
    sent = 0

    async def client(i: int) -> None:
        # A connection of its own, as separate programs have: its pauses never leave it idle for the server's
        # keep-alive timeout (5 s), whose expiry would race a pooled connection's next request.
        nonlocal sent
        mix = Mix(fleet, seed=1000 + i)
        pause = random.Random(2000 + i)  # noqa: S311  (think times, not a secret)
        async with httpx.AsyncClient(base_url=server.api, headers=headers, timeout=60,
                                     limits=httpx.Limits(max_connections=1)) as http:
            while True:
                now = time.monotonic()
                if (requests is None and now >= end) or (requests is not None and sent >= requests):
                    return
                sent += 1
                op, method, path, kw = mix.next()
                t = time.perf_counter()
                try:
                    r = await http.request(method, path, **kw)
                    status = str(r.status_code)
                    if r.status_code >= 300 and len(samples.failures) < 20:
                        samples.failures.append(f"{op} {method} {path}: {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    status = type(e).__name__
                    if len(samples.failures) < 20:
                        samples.failures.append(f"{op} {method} {path}: {status}: {e}")
                elapsed = time.perf_counter() - t
                if requests is not None or now >= measure_from:
                    samples.latencies[op].append(elapsed)
                    samples.statuses[status] += 1
                if think > 0:
                    await asyncio.sleep(pause.uniform(0, think))

    await asyncio.gather(*(client(i) for i in range(clients)))
    samples.seconds = time.monotonic() - (begin if requests is not None else measure_from)
    samples.cpu = cpu.percent()
    return samples


class _Cpu:
    """CPU used by the control plane's process, by this one (the clients) and by an attached agent's, in % of one
    core, since creation."""

    def __init__(self, server: LiveServer, agent_pid: int | None = None) -> None:
        self.processes = {"controlPlane": psutil.Process(server.process.pid), "benchmarkProcess": psutil.Process()}
        if agent_pid is not None:
            self.processes["agent"] = psutil.Process(agent_pid)
        self.started = time.monotonic()
        self.base = {name: self._used(p) for name, p in self.processes.items()}

    @staticmethod
    def _used(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def percent(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        return {name: round((self._used(p) - self.base[name]) / wall * 100, 1) for name, p in self.processes.items()}


def _load_report(samples: Samples, think: float = 0.0) -> dict[str, Any]:
    values = samples.all()
    non2xx = sum(n for status, n in samples.statuses.items() if not status.startswith("2"))
    rate = len(values) / samples.seconds if samples.seconds else None
    used = samples.cpu.get("controlPlane")
    return {"requests": len(values), "seconds": round(samples.seconds, 2), "thinkSeconds": think,
            "requestsPerSecond": round(rate, 1) if rate else None,
            # the control plane's CPU per answered request (warm-up included in the CPU: a slight overestimate)
            "cpuMsPerRequest": round(used * 10 / rate, 2) if rate and used is not None else None,
            "p50Ms": _ms(percentile(values, 0.5)) if values else None,
            "p90Ms": _ms(percentile(values, 0.9)) if values else None,
            "p99Ms": _ms(percentile(values, 0.99)) if values else None,
            "maxMs": _ms(max(values)) if values else None,
            "non2xx": non2xx, "statuses": dict(samples.statuses), "failures": samples.failures[:10],
            "cpuPercent": samples.cpu,
            "reads": sum(len(v) for op, v in samples.latencies.items() if op not in WRITES),
            "writes": sum(len(v) for op, v in samples.latencies.items() if op in WRITES),
            "byOperation": {op: {"n": len(v), "p50Ms": _ms(percentile(v, 0.5)), "p99Ms": _ms(percentile(v, 0.99))}
                            for op, v in sorted(samples.latencies.items())}}


def _api_figures(suite: Suite, paced: dict[str, Any], unpaced: dict[str, Any] | None, clients: int,
                 setting: str) -> None:
    """The paced run's p50 and p99 (the targets); the run without pauses as the throughput reference."""
    label = f"API, {clients} clients{setting}"
    think = paced["thinkSeconds"]
    suite.figures.append(Figure(
        f"{label}: p50", paced["p50Ms"], "ms",
        reference=f"{paced['requestsPerSecond']:g} req/s from clients pausing 0-{think * 1000:g} ms after each "
                  f"answer; 70 % reads / 30 % writes; {paced['cpuMsPerRequest']} ms CPU per request"
                  + "".join(f"; {who} {paced['cpuPercent'][key]:g} % of a core"
                            for key, who in (("benchmarkProcess", "clients"), ("agent", "agent"))
                            if key in paced["cpuPercent"])))
    suite.figures.append(Figure(f"{label}: p99", paced["p99Ms"], "ms", op="<=", target=P99_TARGET_MS,
                                reference=f"{paced['requests']} requests in {paced['seconds']:g} s",
                                note=f"{paced['non2xx']} non-2xx"))
    runs = [paced] + ([unpaced] if unpaced is not None else [])
    statuses: collections.Counter[str] = collections.Counter()
    for run in runs:
        statuses.update(run["statuses"])
    suite.figures.append(Figure(f"{label}: non-2xx answers", sum(r["non2xx"] for r in runs), "", op="==", target=0,
                                reference=", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
                                + (" (both runs)" if unpaced is not None else "")))
    if unpaced is not None:
        suite.figures.append(Figure(
            f"API, {clients} clients without pauses{setting}: max throughput", unpaced["requestsPerSecond"], "req/s",
            reference=f"p50 {unpaced['p50Ms']:g} ms, p99 {unpaced['p99Ms']:g} ms (closed loop, reference only); "
                      f"{unpaced['cpuMsPerRequest']} ms CPU per request"))


def api_runs(server: LiveServer, fleet: Fleet, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paced run, then the run without pauses (each ``--seconds`` long)."""
    paced = _load_report(_run_async(load(server, fleet, args.clients, args.seconds, think=args.think)), args.think)
    unpaced = _load_report(_run_async(load(server, fleet, args.clients, args.seconds)))
    return paced, unpaced


# -- 4. reconcile -----------------------------------------------------------------------------------------------


async def _deployments(http: httpx.AsyncClient, envs: list[str]) -> list[dict[str, Any]]:
    items = []
    for env in envs:
        r = await http.get(f"{ORG}/deployments", params={"environment": env})
        items += _ok(r, f"list deployments in {env}")["items"]
    return items


async def reconcile_phase(server: LiveServer, fleet: Fleet, args: argparse.Namespace, tmp: Path,
                          suite: Suite) -> None:
    """Start the agent in this process, wait for every deployment to report, time no-op reconcile passes, then
    run the API load again with the agent attached."""
    from cellplane.dataplane.agent import Agent, AgentSettings
    from cellplane.dataplane.runtimes.local import LocalRuntime

    settings = AgentSettings(controlplane=server.url, token=server.admin_token, data_dir=(tmp / "dp").resolve(),
                             cache_dir=tmp / "cache", metrics_port=None)
    runtime = LocalRuntime(settings)
    agent = Agent(settings, runtime)
    real = agent.reconcile
    passes: list[tuple[float, float, int]] = []  # (at, seconds, workloads)

    async def timed_reconcile() -> None:  # the agent's own passes (on a new desired state, every RESYNC s)
        t = time.perf_counter()
        await real()
        passes.append((time.monotonic(), time.perf_counter() - t, len(runtime.workloads)))

    agent.reconcile = timed_reconcile  # type: ignore[method-assign]
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    details: dict[str, Any] = {}
    suite.details["reconcile"] = details
    started = time.monotonic()
    await agent.start()
    try:
        async with httpx.AsyncClient(base_url=server.api, headers=headers, timeout=60) as http:
            deadline = time.monotonic() + 120 + fleet.deployments * 0.2
            while True:
                items = await _deployments(http, fleet.environments)
                done = [d for d in items
                        if d["observedRelease"] == d["rollout"] and d["state"] in ("idle", "scheduled")]
                if len(done) == fleet.deployments:
                    break
                if time.monotonic() > deadline:
                    states = collections.Counter(d["state"] for d in items)
                    raise BenchError(f"only {len(done)} of {fleet.deployments} deployments reported by the agent "
                                     f"after {time.monotonic() - started:.0f} s: {dict(states)}")
                await asyncio.sleep(0.5)
            details["allReportedSeconds"] = round(time.monotonic() - started, 2)
            details["states"] = dict(collections.Counter(d["state"] for d in items))
            details["firstPasses"] = [{"seconds": round(s, 4), "workloads": n} for _, s, n in passes[:5]]
            steady_from = time.monotonic()

            # the desired state the agent long-polls, as the control plane answers it (kept until what it was
            # computed from changes: this is mostly sealing and sending 274 KiB)
            fetch, size = [], 0
            for _ in range(5):
                t = time.perf_counter()
                r = await http.get(f"{ORG}/dataplanes/{DATAPLANE}/desired-state", params={"wait": 0})
                fetch.append(time.perf_counter() - t)
                _ok(r, "desired state")
                size = len(r.content)
            details["desiredStateFetchMs"] = _summary(fetch, 1000.0)
            details["desiredStateBytes"] = size

            # what an attached agent costs the control plane when nothing happens: its long-poll, and its status
            # heartbeat every 10 s
            cpu = _Cpu(server)
            await asyncio.sleep(IDLE_SECONDS)
            details["idleWithAgentCpuPercent"] = cpu.percent()

            revision = agent.desired.revision if agent.desired else None
            direct: list[float] = []
            for _ in range(args.passes):
                await asyncio.sleep(0.1)  # the agent's own tasks run in between, as they would
                t = time.perf_counter()
                await real()
                direct.append(time.perf_counter() - t)
            still = agent.desired.revision if agent.desired else None
            if still != revision or len(runtime.workloads) != fleet.deployments:
                raise BenchError(f"the desired state changed during the no-op passes ({len(runtime.workloads)} "
                                 f"workloads, {fleet.deployments} deployments)")
            own = [s for at, s, n in passes if at >= steady_from and n == fleet.deployments]
            details.update({"passes": len(direct), "passMs": _summary(direct, 1000.0),
                            "agentOwnPassesMs": [round(s * 1000, 2) for s in own],
                            "workloads": len(runtime.workloads),
                            "scheduledJobs": sum(1 for w in runtime.workloads.values()
                                                 if w.desired.get("type") == "scheduled-task")})
            n = fleet.deployments
            per = median(direct) / n * 1e6
            reference = (f"{n} deployments ({len(fleet.tasks)} task components x {len(fleet.environments)} "
                         f"environments); {per:.0f} µs per deployment")
            suite.figures.append(Figure(f"agent no-op reconcile, {n} deployments: median", round(median(direct), 4),
                                        "s", reference=reference, op="<=", target=RECONCILE_TARGET_S,
                                        note=f"{len(direct)} passes"))
            suite.figures.append(Figure(f"agent no-op reconcile, {n} deployments: max", round(max(direct), 4), "s",
                                        reference=f"desired state: {size // 1024} KiB, answered in "
                                                  f"{details['desiredStateFetchMs']['median']:g} ms (kept between "
                                                  "changes)",
                                        op="<=", target=RECONCILE_TARGET_S))

    finally:
        await asyncio.wait_for(agent.stop(), 60)
    if args.seconds > 0:
        # The API under load with the agent attached as it runs in production: a process of its own (restarted
        # from the state the agent above left), not tasks on the event loop of the clients, whose latencies its
        # reconcile passes and reports would stretch.
        from dataplanekit import start_agent

        restarted = datetime.now(UTC)
        process = await asyncio.to_thread(start_agent, server, settings.data_dir, tmp / "cache", "--name", DATAPLANE)
        try:
            async with httpx.AsyncClient(base_url=server.api, headers=headers, timeout=60) as http:
                deadline = time.monotonic() + 60
                while True:  # attached: registered, and a report since
                    plane = _ok(await http.get(f"{ORG}/dataplanes/{DATAPLANE}"), "the data plane")
                    agent_status = (plane.get("status") or {}).get("agent") or {}
                    if all(datetime.fromisoformat(agent_status.get(k) or "1970-01-01T00:00:00+00:00") > restarted
                           for k in ("registeredAt", "lastSeen")) and agent_status["lastSeen"] != \
                            agent_status["registeredAt"]:
                        break
                    if time.monotonic() > deadline:
                        raise BenchError(f"the restarted agent did not report within 60 s:\n{process.log()[-2000:]}")
                    await asyncio.sleep(0.5)
            pid = process.process.pid
            paced = _load_report(await load(server, fleet, args.clients, args.seconds, think=args.think,
                                            agent_pid=pid), args.think)
            unpaced = _load_report(await load(server, fleet, args.clients, args.seconds, agent_pid=pid))
        finally:
            await asyncio.to_thread(process.stop)
        suite.details["apiWithAgent"] = paced
        suite.details["apiWithAgentWithoutPauses"] = unpaced
        _api_figures(suite, paced, unpaced, args.clients, f", agent attached ({fleet.deployments} deployments)")


# -- the suite --------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    if not values:
        return {}
    return {"n": len(values), "median": round(statistics.median(values) * scale, 3),
            "min": round(min(values) * scale, 3), "max": round(max(values) * scale, 3)}


def _run_async(coro: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # the agent runs on uvloop (run_agent)


def _part(suite: Suite, name: str, figure_names: list[str], do: Callable[[], Any]) -> Any:
    """Run one part; when it fails, its figures are reported empty with the reason and the suite goes on."""
    try:
        return do()
    except Exception as e:  # one part failing never costs the others
        reason = f"{type(e).__name__}: {e}" if not isinstance(e, BenchError) else str(e)
        suite.details.setdefault("errors", {})[name] = reason
        for figure in figure_names:
            suite.figures.append(Figure(figure, None, "", note=f"not measured: {reason}"))
        return None


def run(args: argparse.Namespace) -> Suite:
    components, projects = getattr(args, "components", 1000), getattr(args, "projects", 50)
    clients, seconds = getattr(args, "clients", 50), getattr(args, "seconds", 20)
    deployments, environments = getattr(args, "deployments", 500), getattr(args, "environments", 5)
    args.passes = getattr(args, "passes", 20)
    args.clients, args.seconds = clients, seconds
    args.think = getattr(args, "think", THINK_SECONDS)
    suite = Suite("controlplane")
    fleet = Fleet()
    with tempfile.TemporaryDirectory(prefix="cellplane-bench-cp-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            server = start_server(tmp / "data", env={"CELLPLANE_CACHE_DIR": str(tmp / "cache")})
        except RuntimeError as e:
            return Suite("controlplane", error=f"the control plane did not start: {str(e)[:500]}")
        try:
            c = server.client()
            c.timeout = httpx.Timeout(120)

            def part_apply() -> None:
                result = apply_services(c, fleet, components, projects)
                suite.details["apply"] = result
                rate = components / result["seconds"]
                suite.figures.append(Figure(f"apply {components} components ({projects} projects)",
                                            round(result["seconds"], 2), "s",
                                            reference=f"{rate:,.0f} components/s",
                                            note=f"one POST /apply per project, median "
                                                 f"{result['batchMs']['median']:g} ms"))

            _part(suite, "apply", [f"apply {components} components ({projects} projects)"], part_apply)
            if not fleet.services:
                suite.error = suite.details["errors"]["apply"]
                return suite
            tasks = None
            if deployments > 0:  # --deployments 0: the API alone, no data plane
                tasks = _part(suite, "tasks", [], lambda: prepare_tasks(c, fleet, deployments, environments, tmp))
            if tasks is not None:
                suite.details["tasks"] = tasks

            def part_api() -> None:
                baseline = _run_async(load(server, fleet, 1, 0, warmup=0, requests=BASELINE_REQUESTS))
                suite.details["apiOneClient"] = _load_report(baseline)
                paced, unpaced = api_runs(server, fleet, args)
                suite.details["api"], suite.details["apiWithoutPauses"] = paced, unpaced
                _api_figures(suite, paced, unpaced, clients, "")

            _part(suite, "api", [f"API, {clients} clients: p99"], part_api)
            if fleet.deployments:
                _part(suite, "reconcile", [f"agent no-op reconcile, {deployments} deployments: median"],
                      lambda: _run_async(reconcile_phase(server, fleet, args, tmp, suite)))
            else:
                reason = suite.details.get("errors", {}).get("tasks", "no deployments")
                suite.figures.append(Figure(f"agent no-op reconcile, {deployments} deployments: median", None, "",
                                            note=f"not measured: {reason}"))
        finally:
            server.stop()
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--think", type=float, default=THINK_SECONDS,
                        help="a paced client pauses uniform(0, THINK) seconds after each answer")
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--environments", type=int, default=5, help="deployments per task component (one build each)")
    parser.add_argument("--passes", type=int, default=20, help="no-op reconcile passes timed")
    parser.add_argument("--json", action="store_true", help="print the suite as JSON")
    args = parser.parse_args()
    suite = run(args)
    if args.json:
        print(json.dumps(suite.as_dict(), indent=2))
        return
    print(f"{suite.name}:")
    if suite.error:
        print(f"  not run: {suite.error}")
    for f in suite.figures:
        value = "—" if f.value is None else f"{f.value:g} {f.unit}".rstrip()
        met = "" if f.met is None else f"  (target {f.op} {f.target:g}: {'met' if f.met else 'MISSED'})"
        print(f"  {f.name}: {value}{met}  {f.reference} {f.note}".rstrip())
    for key in ("apiOneClient", "api", "apiWithoutPauses", "apiWithAgent", "apiWithAgentWithoutPauses"):
        if key in suite.details:
            ops = suite.details[key]["byOperation"]
            print(f"  {key} by operation (p50/p99 ms): "
                  + "; ".join(f"{op} {v['p50Ms']:g}/{v['p99Ms']:g}" for op, v in ops.items())
                  + f"; {suite.details[key]['requestsPerSecond']} req/s; CPU % of a core: "
                    f"{suite.details[key]['cpuPercent']}, {suite.details[key]['cpuMsPerRequest']} ms per request")
    for key in ("tasks", "reconcile", "errors"):
        if key in suite.details:
            print(f"  {key}: {json.dumps(suite.details[key])}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
