"""Deploy latency and zero-downtime rollouts of the demo's greeter, on a real control plane and agent.

    .venv/bin/python benchmarks/bench_deploy.py [--deploys 10] [--redeploys 5] [--json]

One environment serves both suites: a control plane and an agent on loopback, the demo's ``quotes`` and
``greeter`` (examples/demo, standard-library Python) built once and deployed to development; greeter's
``GET /greeting`` calls quotes through its Project connection, so its 200 means both answered.

deploy: ``--deploys`` times, undeploy greeter (its route answers 404/503 and its process is gone), then time
the deploy call until the first 200 through the gateway's external listener (a fresh connection every 5 ms).
Where the time goes comes from the agent's own records: ``desired.json``'s mtime (the agent received the new
desired state) and its system log lines (replicas started; release ready and serving).

zero-downtime: wrk keeps sending requests to greeter through the gateway while ``--redeploys`` configuration
changes each make a new release that rolls out (start new, ready, switch, drain old); a redeploy is over when
the control plane reports the new release ready. Every non-2xx answer and socket error counts as failed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, Suite, median
from platformkit import (
    DEMO,
    ORG,
    BenchError,
    Platform,
    demo_documents,
    deploy,
    deployment,
    deployment_path,
    start_platform,
    system_lines,
    wait_ready,
)
from platformkit import first_after as _first_after
from platformkit import ms as _ms
from platformkit import probe as _probe
from platformkit import running as _running
from platformkit import until as _until

PROJECT = "demo"
COMPONENTS = ("quotes", "greeter")  # quotes first: greeter's connection needs it deployed
PATH = "/greeting?name=bench"
POLL = 0.005  # seconds between two tries for the first 200
TARGET_SECONDS = 1.0  # issue 7: a deploy answers within a second


@dataclass
class DeployEnv(Platform):
    """A control plane, an agent, and greeter (with quotes) built and deployed to development."""

    url: str = ""  # greeter's GET /greeting through the external listener


def start_env() -> DeployEnv:
    """Start a control plane and an agent, build quotes and greeter, deploy both; raises BenchError."""
    env = DeployEnv(tempfile.TemporaryDirectory(prefix="cellplane-bench-deploy-"))
    start_platform("", demo_documents(COMPONENTS), {(PROJECT, n): DEMO / n for n in COMPONENTS}, into=env)
    try:
        c = env.client
        assert c is not None
        for name in COMPONENTS:
            _deploy(c, name)
            d = _wait_ready(c, name)
        env.url = d["endpoints"][0]["urls"]["external"] + PATH
        status = _probe(env.url, timeout=5)
        if status != 200:
            raise BenchError(f"greeter answers {status} at {env.url} once deployed")
        return env
    except BaseException as e:
        why = env.why()
        env.close()
        if isinstance(e, BenchError | AssertionError | RuntimeError | httpx.HTTPError | OSError):
            raise BenchError(f"{type(e).__name__}: {e}\n{why}".strip()) from e
        raise


@contextlib.contextmanager
def deploy_env(env: DeployEnv | None = None) -> Iterator[DeployEnv]:
    """``env`` as it is (its owner stops it), or a new one stopped afterwards."""
    if env is not None:
        yield env
        return
    env = start_env()
    try:
        yield env
    finally:
        env.close()


# -- helpers ---------------------------------------------------------------------------------------------------


def _deploy(c: httpx.Client, name: str) -> dict[str, Any]:
    return deploy(c, PROJECT, name)


def _deployment(c: httpx.Client, name: str) -> dict[str, Any] | None:
    return deployment(c, PROJECT, name)


def _wait_ready(c: httpx.Client, name: str, release: str | None = None, timeout: float = 120) -> dict[str, Any]:
    return wait_ready(c, PROJECT, name, release, timeout)


def _undeploy(env: DeployEnv) -> None:
    """Undeploy greeter; return once its route is gone and its processes have stopped."""
    c = env.client
    assert c is not None
    d = _deployment(c, "greeter")
    if d is None:
        return
    pids = [r["pid"] for r in d.get("replicas") or [] if r.get("pid")]
    r = c.delete(deployment_path(PROJECT, "greeter") + "/development")
    if r.status_code not in (200, 202, 204):
        raise BenchError(f"undeploying greeter: {r.status_code} {r.text[:300]}")
    _until("greeter's route to go (404/503)", lambda: _probe(env.url) in (404, 503))
    _until("greeter's old process to stop", lambda: not any(_running(p) for p in pids))
    # the supervisor cleans up after the process; the machine settles. The random part spreads the deploy calls
    # over the phase of the agent's long-poll (the control plane looks for a new revision once a second)
    time.sleep(0.5 + random.random())  # noqa: S311  (not cryptography)


def _system_lines(c: httpx.Client, since: float, wanted: int, timeout: float = 5) -> list[tuple[float, str]]:
    """greeter's system log lines (agent time, text) since ``since``."""
    return system_lines(c, PROJECT, "greeter", since, wanted, timeout)


# -- deploy latency --------------------------------------------------------------------------------------------


def run_deploy(args: argparse.Namespace, env: DeployEnv | None = None) -> Suite:
    """Deploy call -> first 200 through the gateway, ``args.deploys`` times, greeter's artifact already built."""
    suite = Suite("deploy")
    try:
        with deploy_env(env) as e:
            _measure_deploys(e, int(getattr(args, "deploys", 10)), suite)
    except BenchError as err:
        suite.error = str(err)
    except Exception as err:  # a reason in the table, not a traceback
        suite.error = f"{type(err).__name__}: {err}"
    return suite


def _measure_deploys(env: DeployEnv, count: int, suite: Suite) -> None:
    c = env.client
    desired_json = Path(env.agent.data_dir) / "desired.json"
    samples: list[dict[str, Any]] = []
    for _ in range(count):
        _undeploy(env)
        wall, started = time.time(), time.perf_counter()
        answer = _deploy(c, "greeter")
        api = time.perf_counter() - started
        tries, status = 0, None
        deadline = started + 60
        while True:
            tries += 1
            status = _probe(env.url, timeout=0.5)
            if status == 200:
                break
            if time.perf_counter() > deadline:
                raise BenchError(f"greeter did not answer 200 within 60 s of its deploy (last: {status})\n"
                                 f"{env.why()}")
            time.sleep(POLL)
        latency = time.perf_counter() - started
        received = desired_json.stat().st_mtime - wall if desired_json.exists() else None
        samples.append({"seconds": round(latency, 4), "wall": wall, "api": api, "desiredReceived": received,
                        "tries": tries, "release": answer.get("release") or (answer.get("deployment") or {})
                        .get("release")})
        _wait_ready(c, "greeter")  # the control plane has heard of it too before the next round
    # where the time goes: the agent's system lines, matched to each sample by time
    lines = _system_lines(c, samples[0]["wall"] - 1, wanted=2 * len(samples))
    ends = [s["wall"] for s in samples[1:]] + [float("inf")]
    for s, end in zip(samples, ends, strict=True):
        begun = _first_after(lines, s["wall"], end, r"started \d+ replica")
        ready = _first_after(lines, s["wall"], end, r"is ready and serving")
        s["replicasStarted"] = None if begun is None else begun - s["wall"]
        s["readyServing"] = None if ready is None else ready - s["wall"]
    seconds = [s["seconds"] for s in samples]
    suite.figures += [
        Figure("deploy -> first 200, median", round(median(seconds), 3), "s", op="<=", target=TARGET_SECONDS,
               reference=f"{count} deploys of greeter (built before), polled every {POLL * 1000:g} ms",
               note=f"min {min(seconds):.3f} s"),
        Figure("deploy -> first 200, max", round(max(seconds), 3), "s", op="<=", target=TARGET_SECONDS),
    ]

    def med(key: str) -> float | None:
        values = [s[key] for s in samples if s[key] is not None]
        return _ms(median(values)) if values else None

    suite.details.update({
        "samples": [{"seconds": s["seconds"], "apiMs": _ms(s["api"]), "desiredReceivedMs": _ms(s["desiredReceived"]),
                     "replicasStartedMs": _ms(s["replicasStarted"]), "readyServingMs": _ms(s["readyServing"]),
                     "pollTries": s["tries"]} for s in samples],
        "medianBreakdownMs": {
            "deployCall": med("api"),  # POST .../deployments answered (the release is recorded)
            "agentReceivedDesired": med("desiredReceived"),  # desired.json written: the long-poll woke up
            "replicasStarted": med("replicasStarted"),  # artifact ready, launch prepared, process spawned
            "readyAndServing": med("readyServing"),  # readiness probe passed, routes switched
            "first200": _ms(median(seconds)),
        },
        "url": env.url,
        "method": "undeploy (route 404/503, process gone, a 0.5-1.5 s pause); then POST deploy and GET over a fresh "
                  f"connection every {POLL * 1000:g} ms until 200; breakdown from desired.json's mtime and the "
                  "agent's system log lines, relative to the deploy call",
    })


# -- zero-downtime ---------------------------------------------------------------------------------------------


WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


def parse_wrk(text: str) -> dict[str, Any]:
    total = WRK_TOTAL.search(text)
    if total is None:
        raise BenchError(f"wrk printed no totals:\n{text[-1000:]}")
    non2xx = WRK_NON2XX.search(text)
    socket = WRK_SOCKET.search(text)
    errors = dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=True)) if socket \
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {f"p{p}": round(float(v) * scale[u], 3) for p, v, u in WRK_PERCENTILE.findall(text)}
    return {"requests": int(total.group(1)), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socketErrors": errors, "latencyMs": latency}


def run_rollout(args: argparse.Namespace, env: DeployEnv | None = None) -> Suite:
    """Failed requests under continuous load while greeter is redeployed ``args.redeploys`` times."""
    suite = Suite("zero-downtime")
    try:
        from tools import need

        wrk = need("wrk")
    except (SystemExit, OSError, KeyError) as err:
        suite.error = f"wrk is missing: {err}"
        return suite
    try:
        with deploy_env(env) as e:
            _measure_rollouts(e, wrk, int(getattr(args, "redeploys", 5)), suite)
    except BenchError as err:
        suite.error = str(err)
    except Exception as err:  # a reason in the table, not a traceback
        suite.error = f"{type(err).__name__}: {err}"
    return suite


def _measure_rollouts(env: DeployEnv, wrk: str, count: int, suite: Suite) -> None:
    c = env.client
    if _deployment(c, "greeter") is None:
        _deploy(c, "greeter")
    d = _wait_ready(c, "greeter")
    releases, pids, durations = [d["release"]], [[r["pid"] for r in d["replicas"]]], []
    rollouts: list[dict[str, Any]] = []  # per redeploy: when (wall clock), which rollout, which one it replaces
    previous = d["rollout"]
    out = Path(env.tmp.name) / "wrk.txt"
    with out.open("w") as sink:
        load = subprocess.Popen([wrk, "-t", "2", "-c", "8", "-d", "3600s", "--timeout", "5s", "--latency", env.url],
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)  # steady load before the first rollout
        stamp = int(time.time())
        for n in range(1, count + 1):
            wall, started = time.time(), time.perf_counter()
            r = c.put(f"{ORG}/projects/{PROJECT}/components/greeter/config/BENCH_ROLLOUT",
                      json={"value": f"{stamp}-{n}"}, params={"env": "development"})
            if r.status_code not in (200, 201):
                raise BenchError(f"setting greeter's configuration: {r.status_code} {r.text[:300]}")
            d = _deployment(c, "greeter") or {}
            release = d.get("release")
            if release in releases:
                raise BenchError(f"a configuration change made no new release (still {release})")
            rollout = d.get("rollout")
            d = _wait_ready(c, "greeter", release=rollout)  # the release and its connections' digest
            durations.append(time.perf_counter() - started)
            rollouts.append({"wall": wall, "rollout": rollout, "previous": previous})
            previous = rollout
            releases.append(release)
            pids.append([r["pid"] for r in d["replicas"]])
            time.sleep(0.5)  # the old release drains and stops under load too
        time.sleep(1.0)
    finally:
        if load.poll() is None:
            load.send_signal(signal.SIGINT)  # wrk prints its totals on SIGINT
            try:
                load.wait(15)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
    text = out.read_text(errors="replace")
    result = parse_wrk(text)
    failed = result["non2xx"] + sum(result["socketErrors"].values())
    lines = _system_lines(c, rollouts[0]["wall"] - 1, wanted=2 * len(rollouts)) if rollouts else []
    for x in rollouts:  # the agent's own times: the new release serving, the old one stopped (drained first)
        serving = _first_after(lines, x["wall"], float("inf"), rf"release {re.escape(x['rollout'])} is ready")
        stopped = _first_after(lines, x["wall"], float("inf"), rf"release {re.escape(x['previous'])} stopped")
        x["servingSeconds"] = None if serving is None else round(serving - x["wall"], 3)
        x["oldStoppedSeconds"] = None if stopped is None else round(stopped - x["wall"], 3)
    restarted = all(set(a).isdisjoint(b) for a, b in itertools.pairwise(pids))
    suite.figures += [
        Figure("failed requests during rollouts", failed, "", op="==", target=0,
               reference=f"{result['requests']:,} requests during {count} rollouts (wrk -t2 -c8)",
               note=f"non-2xx {result['non2xx']}, socket errors {result['socketErrors']}"),
        Figure("rollout duration, median", round(median(durations), 3), "s",
               reference="config change -> new release ready", note=f"max {max(durations):.3f} s"),
    ]
    suite.details.update({
        "requests": result["requests"], "non2xx": result["non2xx"], "socketErrors": result["socketErrors"],
        "latencyMs": result["latencyMs"], "rolloutSeconds": [round(x, 3) for x in durations],
        "rollouts": [{k: v for k, v in x.items() if k != "wall"} for x in rollouts],
        "releases": releases, "newProcessEachRollout": restarted, "wrk": text.strip().splitlines(),
        "method": "wrk -t2 -c8 --timeout 5s against greeter through the gateway for the whole run; each redeploy "
                  "PUTs a configuration value (a new release), then waits until the control plane reports that "
                  "release ready (rolloutSeconds); the agent's system lines give when the new release served and "
                  "the old one had stopped (rollouts); 0.5 s pause between redeploys",
    })


# -- alone -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--redeploys", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the suites as JSON")
    args = parser.parse_args()
    suites: list[Suite] = []
    try:
        env = start_env()
    except BenchError as err:
        suites = [Suite("deploy", error=str(err)), Suite("zero-downtime", error=str(err))]
    else:
        try:
            suites = [run_deploy(args, env), run_rollout(args, env)]
        finally:
            env.close()
    if args.json:
        print(json.dumps([s.as_dict() for s in suites], indent=2))
        return
    for s in suites:
        print(f"{s.name}:")
        if s.error:
            print(f"  not run: {s.error}")
        for f in s.figures:
            met = "" if f.met is None else f"  (target {f.op} {f.target:g}: {'met' if f.met else 'MISSED'})"
            print(f"  {f.name}: {f.value:g} {f.unit}{met}  {f.reference} {f.note}".rstrip())
        if "medianBreakdownMs" in s.details:
            print(f"  median breakdown (ms after the deploy call): {s.details['medianBreakdownMs']}")
        if "rolloutSeconds" in s.details:
            print(f"  rollouts (s): {s.details['rolloutSeconds']}; latency {s.details['latencyMs']}")


if __name__ == "__main__":
    main()
