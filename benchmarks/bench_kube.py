"""The Kubernetes runtime against the test cluster (tests/kubecluster.py): the cost of a reconcile at scale.

    .venv/bin/python benchmarks/bench_kube.py [--deployments 500]

Starts the test cluster (``make kubetools`` builds it), one ``KubernetesRuntime`` with an in-memory host, and a
desired state of N services (one replica, one Public endpoint, a plain variable: a Deployment, a Service, a
NetworkPolicy and two HTTPRoutes each, plus the cell's namespace and policies). Measures: the first apply (every
object sent); with ``--wait-ready`` the time until every deployment reports ready (kwok's fake node runs the
pods); a no-op reconcile (the agent's every-5-s pass: render and compare; target <= 1 s, 0 requests, no
resourceVersion moved but the Deployments', whose status the controllers write while pods start); a read-back
of everything (the drift pass); one observation pass (status); tracemalloc's peak over a no-op reconcile; the
process's resident memory then (the runtime, its client and the desired state: about what the agent holds); and,
first, the time from applying one deployment to its report saying ready (the observation interval, 2 s, included;
the control plane's long-poll is not), median of 10.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import kubecluster  # noqa: E402
from cellplane.contract import DesiredState  # noqa: E402
from cellplane.dataplane.settings import AgentSettings  # noqa: E402
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings  # noqa: E402
from desiredkit import deployment_wire, state_wire  # noqa: E402
from kuberuntimekit import Host, managed  # noqa: E402

IMAGE = "registry.cellplane.test/acme/bench@sha256:" + "cd" * 32


def desired(n: int, project: str | None = None) -> DesiredState:
    deployments = [deployment_wire(
        id=f"dep_{project or ''}{i:08d}", project=project or f"p{i % 10}", component=f"svc{i}", release="r1",
        artifact={"digest": "sha256:" + "0" * 64, "image": IMAGE}, env=[{"name": "MODE", "value": "bench"}],
        endpoints=[{"name": "http", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Public"]}])
        for i in range(n)]
    return DesiredState.from_wire(state_wire(deployments, organization="bench", dataPlane="bench", revision="b1"))


def versions(cluster: kubecluster.KubeCluster) -> dict[tuple[str, str, str], str]:
    """The resourceVersions of the managed objects but the Deployments (their status moves while pods start) and
    what is being deleted (the cells of the single deployments measured first)."""
    return {k: o["metadata"]["resourceVersion"] for k, o in managed(cluster, "bench").items()
            if k[0] != "Deployment" and not o["metadata"].get("deletionTimestamp") and "solo" not in k[1] + k[2]}


async def measure(cluster: kubecluster.KubeCluster, n: int, root: Path, wait_ready: bool) -> dict[str, Any]:
    host = Host(root / "agent")
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=root / "agent", name="bench",
                             organization="bench", runtime="kubernetes")
    runtime = KubernetesRuntime(settings, KubernetesSettings(kubeconfig=cluster.kubeconfig, drift_interval=3600,
                                                             observe_interval=2.0, follow_logs=False))
    await runtime.start(host, None)
    one = []  # one deployment, in a cell of its own, applied until it reports ready (the fake node idle): 10 times
    for i in range(10):
        solo = desired(1, f"solo{i}")
        t = time.perf_counter()
        await runtime.apply(solo)
        while (await runtime.status()).deployments[0].state != "ready":
            await asyncio.sleep(0.05)
        one.append(time.perf_counter() - t)
    state = desired(n)
    started = time.perf_counter()
    await runtime.apply(state)
    applied = time.perf_counter() - started
    objects = runtime.applier.requests
    ready = None
    while wait_ready:
        reports = (await runtime.status()).deployments
        if all(r.state == "ready" for r in reports):
            ready = time.perf_counter() - started
            break
        if time.perf_counter() - started > 1800:
            raise SystemExit(f"not ready after 30 min: {sum(r.state == 'ready' for r in reports)}/{n}")
        await asyncio.sleep(1)
    before = await asyncio.to_thread(versions, cluster)
    noop = []
    for _ in range(5):
        t = time.perf_counter()
        await runtime.apply(state)
        noop.append(time.perf_counter() - t)
    t = time.perf_counter()
    await runtime.observe()
    observe = time.perf_counter() - t
    tracemalloc.start()
    await runtime.apply(state)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    runtime.drift_now()
    t = time.perf_counter()
    await runtime.apply(state)
    drift = time.perf_counter() - t
    after = await asyncio.to_thread(versions, cluster)
    rss = psutil.Process().memory_info().rss
    await runtime.stop()
    await runtime.close()
    return {"deployments": n, "objects_applied": objects, "first_apply_s": round(applied, 2),
            "all_ready_s": round(ready, 2) if ready is not None else None,
            "noop_reconcile_s": round(sorted(noop)[2], 3), "observation_pass_s": round(observe, 3),
            "noop_requests": runtime.applier.requests - objects, "resource_versions_moved":
            sum(1 for k, v in before.items() if after.get(k) != v), "read_back_s": round(drift, 2),
            "noop_peak_mib": round(peak / 2**20, 1), "process_rss_mib": round(rss / 2**20, 1),
            "one_deployment_to_ready_s": round(statistics.median(one), 2)}


def measured(n: int, wait_ready: bool = False) -> dict[str, Any]:
    """Start the test cluster, measure, stop it; the figures as ``measure`` returns them."""
    tools = kubecluster.kube_tools_dir()
    if tools is None:
        raise SystemExit("bench_kube: the test cluster is not built; run `make kubetools`")
    with tempfile.TemporaryDirectory(prefix="cellplane-bench-kube-") as tmp:
        cluster = kubecluster.start_cluster(tools, Path(tmp) / "cluster")
        try:
            cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": "cellplane-system"}})
            return asyncio.run(measure(cluster, n, Path(tmp), wait_ready))
        finally:
            cluster.stop()


def run(args: argparse.Namespace):  # -> common.Suite (imported here: this file also runs alone)
    """The "kubernetes" suite of `make bench`: against the test cluster, one deployment applied until it reports
    ready (median of 10), a no-op reconcile of 500 deployments (target <= 1 s and no write), the agent's memory."""
    from common import Figure, Suite

    n = 100 if args.quick else 500
    r = measured(n)
    suite = Suite("kubernetes")
    suite.figures += [
        Figure("one deployment applied until ready: median of 10", r["one_deployment_to_ready_s"], "s",
               note="kwok's fake node; the agent's 2 s observation interval included"),
        Figure(f"no-op reconcile, {n} deployments", r["noop_reconcile_s"], "s",
               f"first apply: {r['first_apply_s']} s ({r['objects_applied']} objects)", "<=", 1.0,
               f"{r['noop_requests']} requests, {r['resource_versions_moved']} resourceVersions moved"),
        Figure(f"no-op reconcile, {n} deployments: writes", r["noop_requests"], "requests", op="<=", target=0),
        Figure(f"agent memory, {n} deployments", r["process_rss_mib"], "MiB",
               f"peak allocated in a no-op reconcile: {r['noop_peak_mib']} MiB",
               note="the whole benchmark process: runtime, client, desired state"),
    ]
    suite.details.update(r)
    return suite


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--wait-ready", action="store_true", help="also time every deployment ready (kwok's fake "
                        "node starts some 20 pods a minute on a busy 2-core machine)")
    args = parser.parse_args()
    print(json.dumps(measured(args.deployments, args.wait_ready), indent=2))

if __name__ == "__main__":
    main()
