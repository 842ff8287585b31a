"""Gateway throughput and latency: direct to an upstream, through the Cellplane gateway, and through nginx.

    make bench          # or: .venv/bin/python benchmarks/bench_gateway.py [--duration 10] [--connections 64]

One run measures, side by side, with wrk (keep-alive connections, ``--latency``) against the same small upstream
(benchmarks/apps/upstream: an asyncio Protocol server on uvloop answering every GET with a fixed 200):

  direct        the upstream replica's own port, as the agent reports it;
  gateway       the external listener of a real agent (default settings: access.log file, metrics, telemetry
                outboxes on) next to a real control plane, the upstream deployed as a component with a Public
                endpoint: GET {external}/bench/upstream/v1/;
  gateway+key   the internal listener with ``Choreo-API-Key`` of a real connection: the upstream's endpoint is also
                Organization-visible and a "caller" component of another project depends on it; its API key is
                read from the caller replica's environment (/proc/PID/environ; the benchmark runs as root);
  nginx         nginx as a reverse proxy to the same replica (keep-alive upstream pool of 64, HTTP/1.1, access_log
                to a file with a 64 KiB buffer like the gateway's), worker_processes auto, as a child process.

  gateway, control plane down
                the same gateway run again after the control plane is killed (SIGKILL), as the last run: the agent
                then keeps its telemetry on disk and retries. The measured run starts about one warm-up plus one
                full run after the kill (an outage of about 16 s at the default duration, its spool growing all
                along), and is compared with a gateway run just before the kill: within 10 % (DOWN_TARGET).

Each measured run follows a short warm-up run. Under 64 saturating connections the p50 mostly measures queueing
(connections / throughput), so the latency the gateway adds is measured apart: ``direct`` and ``gateway`` once more
with the same 64 connections paced (each waits a random 0 to 2 x PACE_MS between its requests, a wrk script's
``delay``, so that the connections do not fall into step: about 64 / (PACE_MS + latency) requests per second, a
fraction of what either can take), nginx too for reference, and with one connection.

The details hold each run's parsed wrk numbers and the CPU seconds used during it by the proxy (the agent and its
gateway workers, one uvloop process per core; nginx has one worker per core), the upstream, the control plane
(the agent's telemetry lands there) and by other programs on the machine: when those are busy, the figures say so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from common import Figure, Suite  # noqa: E402
from tools import need  # noqa: E402

UPSTREAM_APP = ROOT / "benchmarks" / "apps" / "upstream"
PROJECT, CALLERS = "bench", "bench-callers"  # the caller lives in another project: its connection goes internal
UPSTREAM, CALLER, DEPENDENCY = "upstream", "caller", "up"
KEY_VARIABLE = "CHOREO_UP_CHOREOAPIKEY"
THROUGHPUT_TARGET = 0.7  # gateway / nginx requests per second, at least
ADDED_LATENCY_TARGET = 0.3  # ms the gateway adds to the direct p50, at most
DOWN_TARGET = 0.1  # the gateway with the control plane down: throughput and p99 within this fraction of normal
PACE_MS = 10  # the paced runs: each connection waits this long between its requests, on average
NOISY_CORES = 0.2  # other programs busy this many cores during a run: say the figures are disturbed

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


# -- wrk ---------------------------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    requests_per_second: float
    p50: float  # ms
    p75: float
    p90: float
    p99: float
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the run, by process group

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {"requestsPerSecond": round(self.requests_per_second, 1), "p50Ms": self.p50, "p75Ms": self.p75,
                "p90Ms": self.p90, "p99Ms": self.p99, "requests": self.requests, "seconds": self.seconds,
                "non2xx": self.non_2xx, "socketErrors": self.socket_errors, "errors": self.errors,
                "cpuSeconds": {k: round(v, 2) for k, v in self.cpu.items()},
                "proxyCpuPerRequestUs": round(self.cpu["proxy"] / self.requests * 1e6, 1)
                if self.cpu.get("proxy") and self.requests else None}


def _ms(value: str, unit: str) -> float:
    return round(float(value) * _UNITS_MS[unit], 4)


def parse_wrk(output: str) -> WrkResult:
    """The numbers of ``wrk --latency`` output; ValueError when a line is missing (wrk failed)."""
    def need_match(pattern: str) -> re.Match[str]:
        m = re.search(pattern, output, re.MULTILINE)
        if m is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{output[-2000:]}")
        return m

    quantiles = {q: _ms(*need_match(rf"^\s*{q}%\s+([\d.]+)(us|ms|s|m|h)\s*$").groups()) for q in (50, 75, 90, 99)}
    total = need_match(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)) \
        if sockets else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    return WrkResult(requests_per_second=float(need_match(r"^Requests/sec:\s+([\d.]+)").group(1)),
                     p50=quantiles[50], p75=quantiles[75], p90=quantiles[90], p99=quantiles[99],
                     requests=int(total.group(1)), seconds=_ms(total.group(2), total.group(3)) / 1000,
                     non_2xx=int(non_2xx.group(1)) if non_2xx else 0, socket_errors=socket_errors)


Group = tuple[list[int], bool]  # pids, and whether their descendants count too


def _cpu_seconds(pids: list[int], tree: bool) -> float:
    """User + system CPU seconds of ``pids`` (and with ``tree`` their descendants: a replica's pid may be its start
    command's; not the agent's, whose descendants are the replicas)."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            for p in (process, *(process.children(recursive=True) if tree else ())):
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
    return total


def _gateway_workers(agent_pid: int) -> list[int]:
    """The agent's gateway worker processes (its children running ``cellplane.gateway.worker``)."""
    import psutil

    pids = []
    for child in psutil.Process(agent_pid).children():
        with contextlib.suppress(psutil.Error):
            if "cellplane.gateway.worker" in child.cmdline():
                pids.append(child.pid)
    return pids


def _cpu_snapshot(groups: dict[str, Group]) -> dict[str, float]:
    """CPU seconds so far of each group, of this benchmark's whole process tree (wrk runs that ended included),
    and of the machine (user and system time of all cores): their difference is what other programs used."""
    import psutil

    machine = psutil.cpu_times()
    mine = os.times()
    snapshot = {name: _cpu_seconds(pids, tree) for name, (pids, tree) in groups.items()}
    snapshot["benchmark"] = _cpu_seconds([os.getpid()], True) + mine.children_user + mine.children_system
    # interrupt time is left out: loopback traffic is processed in softirqs, charged to no process
    snapshot["machine"] = machine.user + machine.nice + machine.system
    return snapshot


class Wrk:
    def __init__(self, path: str, duration: float, connections: int, threads: int) -> None:
        self.path, self.duration, self.connections, self.threads = path, duration, connections, threads

    def _run(self, url: str, seconds: float, connections: int, threads: int, headers: dict[str, str],
             script: Path | None = None) -> str:
        argv = [self.path, "--latency", "-t", str(max(1, min(threads, connections))), "-c", str(connections),
                "-d", f"{max(1, round(seconds))}s", "--timeout", "5s"]
        if script is not None:
            argv += ["-s", str(script)]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        result = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60)
        if result.returncode != 0:
            raise RuntimeError(f"wrk exited with {result.returncode}: {result.stderr.strip()[-1000:]}")
        return result.stdout

    def measure(self, url: str, groups: dict[str, Group], headers: dict[str, str] | None = None,
                connections: int | None = None, threads: int | None = None, script: Path | None = None) -> WrkResult:
        """A short warm-up run, then the measured one (the CPU time of each of ``groups`` taken around it, and the
        CPU time other programs on the machine used meanwhile: ``other``)."""
        connections = connections or self.connections
        threads = threads or self.threads
        self._run(url, max(1.0, min(3.0, self.duration / 3)), connections, threads, headers or {}, script)
        before = _cpu_snapshot(groups)
        result = parse_wrk(self._run(url, self.duration, connections, threads, headers or {}, script))
        after = _cpu_snapshot(groups)
        result.cpu = {name: after[name] - before[name] for name in groups}
        mine = after["benchmark"] - before["benchmark"]
        result.cpu["other"] = max(0.0, after["machine"] - before["machine"] - mine)
        return result


# -- nginx -------------------------------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    log_format json escape=json '{{"time":"$time_iso8601","requestId":"$request_id","method":"$request_method",'
                                '"path":"$request_uri","status":$status,"bytes":$body_bytes_sent,'
                                '"durationMs":$request_time,"upstream":"$upstream_addr",'
                                '"upstreamMs":"$upstream_response_time","userAgent":"$http_user_agent"}}';
    access_log {dir}/access.log json buffer=64k flush=1s;
    upstream bench {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    url: str
    directory: Path

    def workers(self) -> list[int]:
        import psutil

        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process(self.process.pid).children()]
        return []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(binary: str, directory: Path, upstream_port: int, port: int) -> Nginx:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)  # nginx opens its compiled-in log before reading the config
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, upstream=upstream_port, port=port))
    log = (directory / "stderr.log").open("wb")
    process = subprocess.Popen([binary, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    nginx = Nginx(process, f"http://127.0.0.1:{port}/", directory)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            errors = (directory / "stderr.log").read_text(errors="replace")
            with contextlib.suppress(OSError):
                errors += (directory / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited with {process.returncode}: {errors.strip()[-1500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return nginx
        if time.monotonic() > deadline:
            nginx.stop()
            raise RuntimeError("nginx did not listen within 15 s")
        time.sleep(0.05)


# -- the platform ------------------------------------------------------------------------------------------------

def _built(client: Any, project: str, name: str, spec: dict[str, Any]) -> None:
    from buildkit import component, failed_why, upload, wait

    component(client, project, name, spec)
    info = wait(client, upload(client, project, name, UPSTREAM_APP), timeout=600)
    if info["state"] != "succeeded":
        raise RuntimeError(f"building {project}/{name} {failed_why(client, info)[-2000:]}")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def api_key(pid: int) -> str:
    """The caller's connection API key, from its replica's environment (or its parent's: the start command)."""
    import psutil

    for candidate in (pid, *(p.pid for p in psutil.Process(pid).parents()[:2])):
        with contextlib.suppress(OSError):
            key = _environ(candidate).get(KEY_VARIABLE)
            if key:
                return key
    raise RuntimeError(f"{KEY_VARIABLE} is not in the environment of the caller replica (pid {pid}); reading "
                       "/proc/PID/environ needs root or the agent's user")


def _check(url: str, headers: dict[str, str] | None = None) -> None:
    """One request must be answered 200 before wrk runs (a 403 would make every request an error)."""
    import httpx

    r = httpx.get(url, headers=headers, timeout=10)
    if r.status_code != 200:
        raise RuntimeError(f"GET {url} answered {r.status_code}: {r.text[:300]}")


def _setup(stack: contextlib.ExitStack, tmp: Path) -> dict[str, Any]:
    """Control plane, agent, the upstream and the caller deployed; what the measurements need."""
    from dataplanekit import deploy, start_agent, wait_state
    from liveserver import start_server

    cache = tmp / "cache"
    server = start_server(tmp / "cp", env={"CELLPLANE_CACHE_DIR": str(cache)})
    stack.callback(server.stop)
    client = server.client()
    _built(client, PROJECT, UPSTREAM, {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Public", "Organization"]}]})
    _built(client, CALLERS, CALLER, {"type": "service", "endpoints": [
        {"name": "api", "port": 8080, "visibility": ["Project"]}],
        "dependencies": [{"name": DEPENDENCY, "component": UPSTREAM, "project": PROJECT, "endpoint": "api"}]})
    agent = start_agent(server, tmp / "dp", cache)  # default settings: access.log, metrics, telemetry outboxes
    stack.callback(agent.stop)
    deploy(client, PROJECT, UPSTREAM)
    upstream = wait_state(client, PROJECT, UPSTREAM, timeout=300)
    deploy(client, CALLERS, CALLER)
    caller = wait_state(client, CALLERS, CALLER, timeout=300)
    gateway = agent.gateway()
    replica = upstream["replicas"][0]
    return {"agent": agent, "server": server, "controlPlanePid": server.process.pid, "replicaPort": replica["port"],
            "replicaPid": replica["pid"], "external": gateway["external"], "internal": gateway["internal"],
            "key": api_key(caller["replicas"][0]["pid"])}


# -- the suite ---------------------------------------------------------------------------------------------------

def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def measure(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> Suite:
    duration = float(getattr(args, "duration", 10) or 10)
    connections = int(getattr(args, "connections", 64) or 64)
    threads = int(getattr(args, "threads", 2) or 2)
    wrk = Wrk(need("wrk"), duration, connections, threads)
    nginx_binary = need("nginx")
    from liveserver import free_port

    setup = _setup(stack, tmp)
    agent_pid = setup["agent"].process.pid
    direct_url = f"http://127.0.0.1:{setup['replicaPort']}/"
    gateway_url = f"{setup['external']}/{PROJECT}/{UPSTREAM}/v1/"
    internal_url = f"{setup['internal']}/{PROJECT}/{UPSTREAM}/v1/"
    key = {"Choreo-API-Key": setup["key"]}
    nginx = start_nginx(nginx_binary, tmp / "nginx", setup["replicaPort"], free_port())
    stack.callback(nginx.stop)
    for url, headers in ((direct_url, None), (gateway_url, None), (internal_url, key), (nginx.url, None)):
        _check(url, headers)

    # CPU time by process group: "proxy" is what sits between wrk and the upstream (the agent and its gateway
    # workers; its other descendants are the replicas, counted apart), "upstream" the replica, "controlPlane" what
    # the agent's telemetry costs on the other side
    base = {"upstream": ([setup["replicaPid"]], True), "controlPlane": ([setup["controlPlanePid"]], True)}
    gateway_pids = [agent_pid, *_gateway_workers(agent_pid)]
    through_agent = {"proxy": (gateway_pids, False), **base}
    runs = {
        "direct": wrk.measure(direct_url, {**base, "agent": (gateway_pids, False)}),
        "gateway": wrk.measure(gateway_url, through_agent),
        "gatewayApiKey": wrk.measure(internal_url, through_agent, headers=key),
        "nginx": wrk.measure(nginx.url, {"proxy": ([nginx.process.pid], True), **base}),
    }
    paced_script = tmp / "paced.lua"
    paced_script.write_text(f"function delay()\n  return math.random(0, {2 * PACE_MS})\nend\n")
    single = {  # what a request pays when nothing queues: the same connections paced, and one connection
        "directPaced": wrk.measure(direct_url, base, script=paced_script),
        "gatewayPaced": wrk.measure(gateway_url, through_agent, script=paced_script),
        "nginxPaced": wrk.measure(nginx.url, {"proxy": ([nginx.process.pid], True), **base}, script=paced_script),
        "direct1": wrk.measure(direct_url, base, connections=1, threads=1),
        "gateway1": wrk.measure(gateway_url, through_agent, connections=1, threads=1),
    }
    # the control plane goes away (last: the agent serves on without it); one full run lets the outage and the
    # agent's spool grow before the measured one, which is compared with a run just before the kill (the closer in
    # time, the less the machine's speed differs between them)
    before_down = wrk.measure(gateway_url, through_agent)
    setup["server"].process.kill()
    setup["server"].process.wait()
    killed = time.monotonic()
    wrk.measure(gateway_url, through_agent)
    after_kill = time.monotonic() - killed + max(1.0, min(3.0, duration / 3))  # and the next warm-up
    down = wrk.measure(gateway_url, through_agent)
    spooled = sum(f.stat().st_size for f in (tmp / "dp" / "spool").glob("*.jsonl"))
    pa, pb, pc = single["directPaced"], single["gatewayPaced"], single["nginxPaced"]
    a, b, b2, c = runs["direct"], runs["gateway"], runs["gatewayApiKey"], runs["nginx"]
    rps = {name: f"{r.requests_per_second:,.0f} req/s" for name, r in runs.items()}
    labels = {"direct": "direct", "gateway": "gateway", "gatewayApiKey": "gateway + API key", "nginx": "nginx"}
    figures = [
        Figure(f"{labels[name]} throughput ({connections} connections)", round(r.requests_per_second, 1), "req/s",
               reference="; ".join(f"{labels[n]}: {v}" for n, v in rps.items() if n != name))
        for name, r in runs.items()
    ]
    for name, r in runs.items():
        figures.append(Figure(f"{labels[name]} p50 latency", r.p50, "ms", reference=f"direct: {a.p50} ms"))
        figures.append(Figure(f"{labels[name]} p99 latency", r.p99, "ms", reference=f"direct: {a.p99} ms"))
    up_rps = f"{before_down.requests_per_second:,.0f} req/s"
    figures += [
        Figure("gateway throughput, control plane down", round(down.requests_per_second, 1), "req/s",
               reference=f"up, just before: {up_rps}"),
        Figure("gateway p99 latency, control plane down", down.p99, "ms", reference=f"up, just before: "
               f"{before_down.p99} ms"),
        Figure("gateway throughput, control plane down / up",
               _ratio(down.requests_per_second, before_down.requests_per_second),
               "x", reference=f"down {down.requests_per_second:,.0f} req/s, up {up_rps}", op=">=",
               target=round(1 - DOWN_TARGET, 3),
               note=f"measured {after_kill:.0f}-{after_kill + duration:.0f} s after the control plane was killed; "
                    f"{spooled / 1e6:.1f} MB of telemetry spooled by then"),
        Figure("gateway p99 latency, control plane down / up", _ratio(down.p99, before_down.p99), "x",
               reference=f"down {down.p99} ms, up {before_down.p99} ms", op="<=", target=round(1 + DOWN_TARGET, 3)),
        Figure("gateway CPU per request, control plane down / up", _ratio(*(
            r.cpu["proxy"] / r.requests if r.requests else 0.0 for r in (down, before_down))), "x",
               reference=f"down {down.as_dict()['proxyCpuPerRequestUs']} us, up "
                         f"{before_down.as_dict()['proxyCpuPerRequestUs']} us", op="<=",
               target=round(1 + DOWN_TARGET, 3),
               note="what the agent spends per request, retries and spooling included: unlike the two above, "
                    "hardly moved by other programs on the machine"),
    ]
    everything = {**runs, **single, "gatewayBeforeDown": before_down, "gatewayControlPlaneDown": down}
    errors = {name: r.errors for name, r in everything.items()}
    others = {name: round(r.cpu["other"] / r.seconds, 2) for name, r in everything.items() if r.seconds}
    noisy = {name: cores for name, cores in others.items() if cores >= NOISY_CORES}
    noise = ("other programs on this machine used " + ", ".join(f"{c} cores during {n}" for n, c in noisy.items())
             + ": the figures are lower than on a quiet machine, and the ratios less exact") if noisy else ""
    figures += [
        Figure("gateway / nginx throughput", _ratio(b.requests_per_second, c.requests_per_second), "x",
               reference=f"gateway {rps['gateway']}, nginx {rps['nginx']}", op=">=", target=THROUGHPUT_TARGET,
               note=noise),
        Figure("gateway + API key / nginx throughput", _ratio(b2.requests_per_second, c.requests_per_second), "x",
               reference=f"gateway + API key {rps['gatewayApiKey']}, nginx {rps['nginx']}"),
        Figure("gateway / direct throughput", _ratio(b.requests_per_second, a.requests_per_second), "x",
               reference=f"gateway {rps['gateway']}, direct {rps['direct']}"),
        Figure(f"gateway added latency at p50 ({connections} connections, paced)", round(pb.p50 - pa.p50, 3), "ms",
               reference=f"gateway p50 {pb.p50} ms at {pb.requests_per_second:,.0f} req/s, direct p50 {pa.p50} ms "
                         f"at {pa.requests_per_second:,.0f} req/s; nginx adds {round(pc.p50 - pa.p50, 3)} ms "
                         f"(p50 {pc.p50} ms)",
               op="<=", target=ADDED_LATENCY_TARGET,
               note=f"each connection waits 0-{2 * PACE_MS} ms (random) between its requests: little queues"),
        Figure(f"gateway added latency at p50 ({connections} connections, saturated)", round(b.p50 - a.p50, 3), "ms",
               reference=f"gateway p50 {b.p50} ms, direct p50 {a.p50} ms",
               note="as many requests as each can take: the p50 mostly measures queueing (connections / throughput)"),
        Figure("gateway added latency at p50 (1 connection)",
               round(single["gateway1"].p50 - single["direct1"].p50, 3), "ms",
               reference=f"gateway p50 {single['gateway1'].p50} ms, direct p50 {single['direct1'].p50} ms",
               note="one request at a time: the gateway's own cost per request"),
        Figure("errors (non-2xx responses and socket errors, all runs)", sum(errors.values()), "count",
               reference=", ".join(f"{n}: {v}" for n, v in errors.items()), op="==", target=0),
    ]
    details = {
        "wrk": {"durationSeconds": duration, "connections": connections, "threads": threads},
        "runs": {name: r.as_dict() for name, r in everything.items()},
        "spooledBytesWhenDown": spooled,
        "urls": {"direct": direct_url, "gateway": gateway_url, "gatewayApiKey": internal_url, "nginx": nginx.url},
        "nginx": {"workers": len(nginx.workers()), "config": "keepalive 64, HTTP/1.1, access_log buffer=64k"},
        "cpus": os.cpu_count(),
        "otherProgramsCores": others,  # CPU cores busy with programs outside this benchmark, by run
    }
    return Suite(name="gateway", figures=figures, details=details)


def run(args: argparse.Namespace) -> Suite:
    with tempfile.TemporaryDirectory(prefix="cellplane-bench-gateway-") as tmp, contextlib.ExitStack() as stack:
        try:
            return measure(args, Path(tmp), stack)
        except SystemExit as e:  # tools.need: wrk or nginx missing and not installable
            return Suite(name="gateway", error=str(e.code))
        except Exception as e:  # the suite says why it could not run, no traceback
            return Suite(name="gateway", error=f"{type(e).__name__}: {str(e).strip()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print the suite as JSON")
    args = parser.parse_args()
    suite = run(args)
    if args.json:
        print(json.dumps(suite.as_dict(), indent=2))
    elif suite.error:
        print(f"gateway: could not run: {suite.error}")
    else:
        for f in suite.figures:
            met = {True: "  ok", False: "  MISSED", None: ""}[f.met]
            target = f"  (target {f.op} {f.target})" if f.op else ""
            print(f"{f.name:<56} {f.value!s:>9} {f.unit:<5}{target}{met}")
            if f.note:
                print(f"{'':<8}{f.note}")
        print(f"\n{'run':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  CPU seconds during the run")
        for name, r in suite.details["runs"].items():
            cpu = ", ".join(f"{k} {v}" for k, v in r["cpuSeconds"].items())
            print(f"{name:<14} {r['requestsPerSecond']:>9,.0f} {r['p50Ms']:>8} {r['p99Ms']:>8} {r['errors']:>6}  {cpu}")
    if suite.error:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
