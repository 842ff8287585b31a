"""Scale to zero and autoscaling on the local data plane: cold starts next to warm requests, and the reaction to a
step in load, on a real control plane and a real agent process (benchmarks/platformkit.py).

    .venv/bin/python benchmarks/bench_scaling.py [--wakeups 20] [--json]

Three components of the demo project, built once and deployed to development:

- ``quotes``, the demo's Python service (examples/demo; standard library). Its ``GET /quote`` touches nothing but
  itself, whereas greeter's request calls quotes, so a cold greeter would time two components (or a cold one and a
  warm one). Its endpoint is made Public for the benchmark so the external listener routes it.
- ``node-hello`` (benchmarks/apps/node-hello), a Node.js service on node's own ``http`` module.
- ``sleepy`` (benchmarks/apps/sleepy), a Python service whose requests take 50 ms, for the scale-up.

cold start: first 20 requests to each warm replica (a fresh connection each), then quotes and node-hello get
``scaling: {minReplicas: 0, maxReplicas: 1, idleSeconds: 1, scaleDownDelaySeconds: 0}`` (what ``cellplane scale
--min 0 --max 1 --idle 1s --delay 0s`` sets, through the same route). ``--wakeups`` times: wait until the agent
reports both scaled to zero (its ``status.json``, written before it reports to the control plane) and no process
of theirs runs, then time one request to each through the gateway's external listener: connect, send, first byte
of the answer (a fresh connection, ``Connection: close``). Where the time goes: the answer's
``x-cellplane-cold-start`` header (the seconds the gateway held it) and the agent's system line "woken by a
request: replica ready in X s" (from the wake-up's replica start to its readiness probe's first success).

scale-up: sleepy gets ``{minReplicas: 1, maxReplicas: 3, targetConcurrency: 2, scaleDownDelaySeconds: 0}``; then
a step from no load to 8 connections each sending requests back to back (an asyncio client; 8 in flight at 50 ms
each): the time from the step to the first answer from a 2nd and a 3rd replica (the answers carry the replica's
process id), and to the agent's "scaled to" lines. Then the load drops to one connection (a request every 50 ms)
until the deployment is back at one replica (the burst's count holds while the last second or the panic window want
more than one replica, then the stable window's average decides, with no scale-down delay). The step starts once
sleepy's autoscaler is a stable window (60 s) old: a new one does not scale down before. Every answer but a 200
and every socket error counts as failed, during the step and while it shrinks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, Suite, median, percentile
from platformkit import (
    DEMO,
    ORG,
    BenchError,
    Platform,
    demo_documents,
    deploy,
    ms,
    start_platform,
    system_lines,
    until,
    wait_ready,
)

APPS = Path(__file__).resolve().parent / "apps"
PROJECT = "demo"
PYTHON, NODE, SLOW = "quotes", "node-hello", "sleepy"
PATHS = {PYTHON: "/quote", NODE: "/", SLOW: "/"}
COLD = {"minReplicas": 0, "maxReplicas": 1, "idleSeconds": 1, "scaleDownDelaySeconds": 0}
SCALE_UP = {"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 2, "scaleDownDelaySeconds": 0}
STEP_CONNECTIONS = 8
TARGET_P50, TARGET_P99 = 0.5, 1.0  # issue 22: the Python service's cold start, seconds to the first byte
REQUEST_TIMEOUT = 35.0  # longer than the gateway's hold timeout (30 s): a wake that outlasts it answers 504
WOKEN = re.compile(r"woken by a request: replica ready in ([\d.]+) s")


def _service(name: str) -> dict[str, Any]:
    return {"apiVersion": "cellplane.dev/v1alpha1", "kind": "Component",
            "metadata": {"name": name, "project": PROJECT, "organization": "default"},
            "spec": {"type": "service", "endpoints": [{"name": "api", "port": 8080, "type": "REST", "basePath": "/",
                                                       "visibility": ["Public"]}]}}


def _documents() -> list[dict[str, Any]]:
    docs = demo_documents((PYTHON,))
    for d in docs:
        if d["metadata"]["name"] == PYTHON:
            d["spec"]["endpoints"][0]["visibility"] = ["Public"]  # reachable on the external listener
    return [*docs, _service(NODE), _service(SLOW)]


@dataclass
class ScalingEnv(Platform):
    urls: dict[str, str] | None = None  # component -> its request's URL through the external listener
    ids: dict[str, str] | None = None  # component -> its deployment's id (what the agent reports by)
    ready_at: dict[str, float] | None = None  # component -> time.monotonic() when its deployment was seen ready


def start_env() -> ScalingEnv:
    """The platform with the three components built and deployed to development (each answering 200)."""
    env = ScalingEnv(tempfile.TemporaryDirectory(prefix="cellplane-bench-scaling-"))
    sources = {(PROJECT, PYTHON): DEMO / PYTHON, (PROJECT, NODE): APPS / NODE, (PROJECT, SLOW): APPS / SLOW}
    start_platform("", _documents(), sources, into=env)
    try:
        c = env.client
        assert c is not None
        env.urls, env.ids, env.ready_at = {}, {}, {}
        for name in (PYTHON, NODE, SLOW):
            deploy(c, PROJECT, name)
        for name in (PYTHON, NODE, SLOW):
            d = wait_ready(c, PROJECT, name)
            env.ready_at[name] = time.monotonic()
            env.ids[name] = d["id"]
            env.urls[name] = d["endpoints"][0]["urls"]["external"].rstrip("/") + PATHS[name]
            answer = request(env.urls[name], timeout=5)
            if answer.status != 200:
                raise BenchError(f"{name} answers {answer.status} at {env.urls[name]} once deployed")
        return env
    except BaseException as e:
        why = env.why()
        env.close()
        if isinstance(e, BenchError | AssertionError | RuntimeError | httpx.HTTPError | OSError):
            raise BenchError(f"{type(e).__name__}: {e}\n{why}".strip()) from e
        raise


@contextlib.contextmanager
def scaling_env() -> Iterator[ScalingEnv]:
    env = start_env()
    try:
        yield env
    finally:
        env.close()


def set_scaling(c: httpx.Client, name: str, settings: dict[str, Any], environment: str = "development") -> None:
    """What ``cellplane scale NAME --env ENVIRONMENT ...`` does: a merge patch of spec.scaling.environments.<env>."""
    r = c.patch(f"{ORG}/projects/{PROJECT}/components/{name}/scaling/{environment}", json=settings)
    if r.status_code != 200:
        raise BenchError(f"setting {name}'s scaling: {r.status_code} {r.text[:300]}")


# -- one request, timed ----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: no answer (a socket error or a timeout)
    first_byte: float  # seconds from before the connect to the answer's first byte
    cold_start: float | None  # x-cellplane-cold-start: seconds the gateway held the request
    error: str = ""


def request(url: str, timeout: float = REQUEST_TIMEOUT) -> Answer:
    """One GET over a fresh connection (``Connection: close``), timed from before the connect to the first byte of
    the answer; the rest is read to the end."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    data = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    started = time.perf_counter()
    first = started
    chunks: list[bytes] = []
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(data)
            chunk = s.recv(65536)
            first = time.perf_counter()
            while chunk:
                chunks.append(chunk)
                chunk = s.recv(65536)
    except OSError as e:
        return Answer(None, time.perf_counter() - started, None, f"{type(e).__name__}: {e}")
    head = b"".join(chunks).split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return Answer(None, first - started, None, f"not an HTTP answer: {head[:100]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    cold = headers.get("x-cellplane-cold-start")
    return Answer(status, first - started, float(cold) if cold else None)


# -- where things run ------------------------------------------------------------------------------------------


def agent_report(env: ScalingEnv, name: str) -> dict[str, Any]:
    """The deployment's report in the agent's own last observed state (status.json, written before it is sent)."""
    assert env.ids is not None
    for d in env.agent.status().get("deployments") or []:
        if d.get("id") == env.ids[name]:
            return dict(d)
    return {}


def agent_state(env: ScalingEnv, name: str) -> str | None:
    return agent_report(env, name).get("state")


def processes(env: ScalingEnv, name: str) -> list[int]:
    """The agent's descendant processes started for ``name`` (their environment names the component)."""
    pids = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for p in psutil.Process(env.agent.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                e = p.environ()
                if e.get("CELLPLANE_COMPONENT") == name and e.get("CELLPLANE_PROJECT") == PROJECT:
                    pids.append(p.pid)
    return pids


def at_zero(env: ScalingEnv, name: str) -> bool:
    return agent_state(env, name) == "scaled-to-zero" and not processes(env, name)


# -- cold starts -----------------------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 0.5), 4), "p99": round(percentile(values, 0.99), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def _woken_lines(c: httpx.Client, name: str, since: float, wakeups: int,
                 timeout: float = 10) -> list[tuple[float, str]]:
    """The component's system lines since ``since`` once all ``wakeups`` "woken by a request" lines are in (the
    agent ships them every half second), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        lines = system_lines(c, PROJECT, name, since, wanted=0)
        if sum(1 for _, text in lines if WOKEN.search(text)) >= wakeups or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


@dataclass
class Command:
    """How the platform runs a component's app: its command (the interpreter's real path), directory, environment."""

    argv: list[str]
    cwd: str
    environ: dict[str, str]


def app_command(env: ScalingEnv, name: str) -> Command:
    """The component's running app process as a command: the last process started for it (the shell the
    supervisor runs the command in comes first)."""
    pids = processes(env, name)
    if not pids:
        raise BenchError(f"no process of {name} runs")
    p = psutil.Process(max(pids))
    return Command([p.exe(), *p.cmdline()[1:]], p.cwd(), p.environ())


def bare_start(command: Command, times: int = 10) -> list[float]:
    """Seconds from spawning the app's command directly (in the replica's directory, with its environment, but
    from this process: no agent, no sandbox) to its port accepting a connection (tried every 2 ms): what the app's
    own start costs, the floor of its cold start. The replica's files must still be there (its release is)."""
    seconds = []
    for _ in range(times):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        started = time.perf_counter()
        process = subprocess.Popen(command.argv, cwd=command.cwd, env={**command.environ, "PORT": str(port)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while process.poll() is None and time.perf_counter() - started < 10:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    seconds.append(time.perf_counter() - started)
                    break
                time.sleep(0.002)
        finally:
            process.kill()
            process.wait()
    return seconds


def measure_cold_starts(env: ScalingEnv, wakeups: int, suite: Suite) -> None:
    c = env.client
    assert c is not None and env.urls is not None
    services = (PYTHON, NODE)
    commands = {name: app_command(env, name) for name in services}
    warm: dict[str, list[Answer]] = {name: [request(env.urls[name]) for _ in range(20)] for name in services}
    for name in services:
        set_scaling(c, name, COLD)
    began = time.time()
    cold: dict[str, list[Answer]] = {name: [] for name in services}
    waits: list[float] = []
    for _ in range(wakeups):
        started = time.monotonic()
        until("quotes and node-hello scaled to zero, their processes gone",
              lambda: all(at_zero(env, n) for n in services), timeout=60, period=0.05)
        waits.append(time.monotonic() - started)
        for name in services:
            cold[name].append(request(env.urls[name]))
    lines = {name: _woken_lines(c, name, began - 1, wakeups) for name in services}
    bare = {name: bare_start(command) for name, command in commands.items()}
    details: dict[str, Any] = {}
    for name, label in ((PYTHON, "Python (demo quotes)"), (NODE, "Node.js (node-hello)")):
        answers, warm_answers = cold[name], warm[name]
        failed = [a for a in answers + warm_answers if a.status != 200]
        seconds = [a.first_byte for a in answers]
        warm_seconds = [a.first_byte for a in warm_answers]
        held = [a.cold_start for a in answers if a.cold_start is not None]
        ready = [float(m.group(1)) for _, text in lines[name] if (m := WOKEN.search(text))]
        cold_s, warm_s = _summary(seconds), _summary(warm_seconds)
        # where the time goes, per wake-up: the gateway held the request (its header) for the replica's start to
        # ready (the agent's line) plus the wake call and the route update; the rest is connect, proxy and answer
        outside = [a.first_byte - a.cold_start for a in answers if a.cold_start is not None]
        wake_route = [h - r for h, r in zip(held, ready, strict=False)] if len(held) == len(ready) else []
        python = name == PYTHON
        reference = (f"warm: p50 {warm_s['p50'] * 1000:.1f} ms, p99 {warm_s['p99'] * 1000:.1f} ms "
                     f"({len(warm_seconds)} requests)")
        suite.figures += [
            Figure(f"{label} cold start, first byte p50", cold_s["p50"], "s", reference=reference,
                   op="<=" if python else None, target=TARGET_P50 if python else None,
                   note=f"{len(seconds)} wake-ups; gateway held p50 "
                        f"{median(held) if held else float('nan'):.3f} s, replica ready p50 "
                        f"{median(ready) if ready else float('nan'):.2f} s; the app started alone listens in "
                        f"{median(bare[name]) if bare[name] else float('nan'):.3f} s"),
            Figure(f"{label} cold start, first byte p99", cold_s["p99"], "s", reference=f"max {cold_s['max']:.3f} s",
                   op="<=" if python else None, target=TARGET_P99 if python else None),
            Figure(f"{label} failed requests", len(failed), "", op="==", target=0,
                   reference=f"{len(answers)} cold + {len(warm_answers)} warm",
                   note="; ".join(sorted({a.error or str(a.status) for a in failed}))[:200]),
        ]
        details[name] = {
            "coldFirstByteSeconds": cold_s, "warmFirstByteSeconds": warm_s,
            "coldFirstByteMs": [ms(s) for s in seconds], "warmFirstByteMs": [ms(s) for s in warm_seconds],
            "gatewayHeldMs": [ms(s) for s in held], "replicaReadySeconds": ready,
            "withoutColdStartHeader": len(answers) - len(held),
            "bareStartToListeningMs": [ms(x) for x in bare[name]], "appCommand": commands[name].argv,
            "medianBreakdownMs": {
                "bareStartToListening": ms(median(bare[name])) if bare[name] else None,  # no platform
                "replicaStartToReady": ms(median(ready)) if ready else None,  # the agent's "replica ready in"
                "heldMinusReady": ms(median(wake_route)) if wake_route else None,  # wake call, route update
                "firstByteMinusHeld": ms(median(outside)) if outside else None,  # connect, proxy, the app's answer
                "firstByte": ms(median(seconds)),
            },
            "warmWithColdStartHeader": sum(1 for a in warm_answers if a.cold_start is not None),
            "statuses": [a.status for a in answers], "errors": [a.error for a in answers if a.error],
            "scaledToZeroLines": sum(1 for _, text in lines[name] if text.startswith("scaled to zero")),
            "systemLines": [(round(t - began, 3), text) for t, text in lines[name]],
        }
    suite.details["coldStarts"] = {
        **details, "settings": COLD, "waitForZeroSecondsMedian": round(median(waits), 2) if waits else None,
        "method": "per wake-up: wait until the agent's status.json says scaled-to-zero for both and no process of "
                  "theirs runs; then one GET each through the external listener over a fresh connection "
                  "(Connection: close), timed from before the connect to the first byte; warm: 20 of the same "
                  "requests before scaling was set (a replica running)",
    }


# -- scale-up --------------------------------------------------------------------------------------------------


@dataclass
class Served:
    at: float  # monotonic
    status: int | None
    pid: int | None


async def _client(host: str, port: int, target: str, stop: asyncio.Event, out: list[Served],
                  pause: float = 0.0) -> None:
    """Requests back to back on one keep-alive connection (reconnecting after an error) until ``stop``."""
    data = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while not stop.is_set():
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)).decode("latin-1")
            lines = head.split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            pid = json.loads(body).get("pid") if status == 200 else None
            out.append(Served(time.monotonic(), status, pid))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            out.append(Served(time.monotonic(), None, None))
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
        if pause:
            await asyncio.sleep(pause)
    if writer is not None:
        writer.close()


def _replicas(env: ScalingEnv) -> tuple[int, int] | None:
    """(current, desired) of sleepy in the agent's own status (its scaling report); None before it reports one."""
    scaling = agent_report(env, SLOW).get("scaling")
    return (int(scaling["current"]), int(scaling["desired"])) if scaling else None


async def _step(env: ScalingEnv, shrink_timeout: float) -> dict[str, Any]:
    assert env.urls is not None
    parts = urlsplit(env.urls[SLOW])
    host, port, target = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    step: list[Served] = []
    after: list[Served] = []
    stop_step, stop_after = asyncio.Event(), asyncio.Event()
    wall, t0 = time.time(), time.monotonic()
    clients = [asyncio.create_task(_client(host, port, target, stop_step, step)) for _ in range(STEP_CONNECTIONS)]
    seen: dict[int, float] = {}  # pid -> first answer, seconds after the step
    deadline = t0 + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for s in step:
            if s.pid is not None and s.pid not in seen:
                seen[s.pid] = s.at - t0
        if len(seen) >= SCALE_UP["maxReplicas"] and time.monotonic() - t0 > max(seen.values()) + 3:
            break  # three replicas served, and the load went on a little after
    stop_step.set()
    trickle = asyncio.create_task(_client(host, port, target, stop_after, after, pause=0.05))
    await asyncio.gather(*clients)
    step_seconds = time.monotonic() - t0
    shrink_started = time.monotonic()
    shrunk: float | None = None
    while time.monotonic() - shrink_started < shrink_timeout:
        await asyncio.sleep(0.2)
        replicas = _replicas(env)
        if replicas is not None and replicas[0] == 1:
            shrunk = time.monotonic() - shrink_started
            break
    await asyncio.sleep(1.0)  # the removed replicas drain and stop under the trickle
    stop_after.set()
    await trickle
    return {"wall": wall, "step": step, "after": after, "firstAnswerByPid": seen, "stepSeconds": step_seconds,
            "shrunkSeconds": shrunk}


def measure_scale_up(env: ScalingEnv, suite: Suite, shrink_timeout: float = 100) -> None:
    c = env.client
    assert c is not None
    # A new autoscaler does not scale down before it has seen a whole stable window (60 s). sleepy autoscales from
    # its deploy on (development's default, 0..1), so its autoscaler is older than that once 61 s have passed since
    # it was ready: wait for that (the cold starts usually took most of it), so the shrink measures the scaler's
    # rules and not its start.
    assert env.ready_at is not None
    time.sleep(max(0.0, env.ready_at[SLOW] + 61 - time.monotonic()))
    set_scaling(c, SLOW, SCALE_UP)
    until("sleepy at one replica with its scaling reported", lambda: _replicas(env) == (1, 1), timeout=30,
          period=0.1)
    result = asyncio.run(_step(env, shrink_timeout))
    lines = system_lines(c, PROJECT, SLOW, result["wall"] - 1, wanted=3)
    scaled = [(round(t - result["wall"], 3), text) for t, text in lines if text.startswith("scaled to")]
    firsts = sorted(result["firstAnswerByPid"].values())
    step_failed = [s for s in result["step"] if s.status != 200]
    after_failed = [s for s in result["after"] if s.status != 200]
    second = firsts[1] if len(firsts) > 1 else None
    third = firsts[2] if len(firsts) > 2 else None
    suite.figures += [
        Figure("scale-up: step -> 2nd replica serving", None if second is None else round(second, 2), "s",
               reference=f"{STEP_CONNECTIONS} connections, 50 ms requests, targetConcurrency 2",
               note="agent: " + "; ".join(f"{t:g} s {text}" for t, text in scaled[:2])),
        Figure("scale-up: step -> maxReplicas (3) serving", None if third is None else round(third, 2), "s",
               reference=f"{len(result['step']):,} requests during the step ({result['stepSeconds']:.1f} s)"),
        Figure("scale-up: failed requests during the step", len(step_failed), "", op="==", target=0),
        Figure("scale-down: back to 1 replica after the step", None if result["shrunkSeconds"] is None
               else round(result["shrunkSeconds"], 1), "s", reference="one connection, a request every 50 ms",
               note="scaleDownDelaySeconds 0; the panic window, 6 s, bridges a burst's end"
               if result["shrunkSeconds"] is not None else f"not within {shrink_timeout:g} s"),
        Figure("scale-down: failed requests while shrinking", len(after_failed), "", op="==", target=0,
               reference=f"{len(result['after']):,} requests"),
    ]
    suite.details["scaleUp"] = {
        "settings": SCALE_UP, "connections": STEP_CONNECTIONS, "firstAnswerSecondsByReplica": firsts,
        "agentLines": scaled, "stepRequests": len(result["step"]), "stepFailed": len(step_failed),
        "afterRequests": len(result["after"]), "afterFailed": len(after_failed),
        "shrunkSeconds": result["shrunkSeconds"],
        "method": f"{STEP_CONNECTIONS} keep-alive connections from no load, each sending GET / (50 ms in the app) back "
                  "to back; a replica serves when an answer carries its process id; then one connection with a "
                  "50 ms pause until the agent's scaling report says 1 replica",
    }


# -- the suite -------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Suite:
    suite = Suite("scaling")
    wakeups = 5 if getattr(args, "quick", False) else int(getattr(args, "wakeups", 20))
    try:
        with scaling_env() as env:
            for part in (lambda: measure_cold_starts(env, wakeups, suite), lambda: measure_scale_up(env, suite)):
                try:
                    part()
                except BenchError as err:  # one part failing still reports the other
                    suite.figures.append(Figure(f"(not measured) {str(err).splitlines()[0][:150]}", None, ""))
                    suite.details.setdefault("errors", []).append(f"{err}\n{env.why()}")
    except BenchError as err:
        suite.error = str(err).splitlines()[0][:300]
        suite.details["error"] = str(err)
    except Exception as err:  # a reason in the table, not a traceback
        suite.error = f"{type(err).__name__}: {err}"
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakeups", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the suite as JSON")
    args = parser.parse_args()
    suite = run(args)
    if args.json:
        print(json.dumps(suite.as_dict(), indent=2))
        return
    if suite.error:
        print(f"not run: {suite.error}")
    for f in suite.figures:
        met = "" if f.met is None else f"  (target {f.op} {f.target:g}: {'met' if f.met else 'MISSED'})"
        value = "—" if f.value is None else f"{f.value:g} {f.unit}"
        print(f"{f.name}: {value}{met}  {f.reference} {f.note}".rstrip())
    for e in suite.details.get("errors", []):
        print(e)


if __name__ == "__main__":
    main()
