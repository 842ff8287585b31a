"""The Kubernetes data plane against the test cluster (tests/kubecluster.py, built by ``make kubetools``):
`cellplane deploy` as a user waits for it, and the cost of a reconcile at scale.

    .venv/bin/python benchmarks/bench_kube.py [--deployments 500] [--deploys 10] [--wait-ready]

Deploys (first, on the idle cluster): one control plane with a registry (tests/registrykit.py) and two agents as
real processes long-polling it for their desired state (tests/kubeagentkit.py): `cellplane dataplane run
--kubernetes` serving staging on the test cluster (kwok's fake node makes the pods Running and Ready) and the local
`cellplane dataplane run` serving development (the workloads as local processes behind its gateway). The fixture app
echo is built N+1 times before anything is timed, each build with its own VERSION file (a new artifact and image:
every deploy is a new release, the image by digest); then build after build is deployed with the real CLI as a
subprocess, ``cellplane deploy echo --env E --build ID``, to development and then to staging, each timed from the
command's start to its "Deployed" line (the CLI polls the deployment every 0.5 s until the data plane reports the
release ready). The first build's are first deploys (nothing ran there), the others redeploys (a rolling update: on
Kubernetes a new ReplicaSet, locally a new process, ready, switched, the old drained). The command's own lines say
where the time goes: its "deploying ..." line (the CLI started and the release recorded). A pause of 0.5-1.5 s
before each command spreads them over the phase of the agents' long-polls.

Reconcile at scale: one ``KubernetesRuntime`` with an in-memory host, and a desired state of N services (one
replica, one Public endpoint, a plain variable: a Deployment, a Service, a NetworkPolicy and two HTTPRoutes each,
plus the cell's namespace and policies). Measures: the first apply (every object sent); with ``--wait-ready`` the
time until every deployment reports ready (kwok's fake node runs the pods); a no-op reconcile (the agent's every-5-s
pass: render and compare; target <= 1 s, 0 requests, no resourceVersion moved but the Deployments', whose status the
controllers write while pods start); a read-back of everything (the drift pass); one observation pass (status);
tracemalloc's peak over a no-op reconcile; the process's resident memory then (the runtime, its client and the
desired state: about what the agent holds); and, first, the time from applying one deployment to its report saying
ready (the rollout's 0.25 s observation passes included; the control plane's long-poll is not), median of 10.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import kubecluster  # noqa: E402
import registrykit  # noqa: E402
from buildkit import APPS, component, upload, wait  # noqa: E402
from cellplane.contract import DesiredState  # noqa: E402
from cellplane.dataplane.settings import AgentSettings  # noqa: E402
from cellplane.kubernetes import names  # noqa: E402
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings  # noqa: E402
from dataplanekit import AgentProcess, service, start_agent  # noqa: E402
from desiredkit import deployment_wire, state_wire  # noqa: E402
from kubeagentkit import pipeline_documents, start_kube_agent, system_namespace  # noqa: E402
from kuberuntimekit import Host, managed  # noqa: E402
from liveserver import CELLPLANE, LiveServer, start_server  # noqa: E402

IMAGE = "registry.cellplane.test/acme/bench@sha256:" + "cd" * 32
PROJECT, COMPONENT = "kbench", "echo"
ORG = "/organizations/default"
PLANES = {"development": "local", "staging": "kubernetes"}  # kubeagentkit's pipeline: home and kube


class BenchError(Exception):
    """The deploys cannot be measured: the reason."""


# -- cellplane deploy --------------------------------------------------------------------------------------------


def cli_deploy(server: LiveServer, agent: AgentProcess, build: str, env: str, timeout: int = 120) -> dict[str, Any]:
    """``cellplane deploy echo --env ENV --build BUILD`` as a subprocess: seconds from its start to its "Deployed"
    line (``seconds``), to its "deploying ..." line (``recorded``: the CLI started and the release recorded), to
    the agent's writing its new desired state (``received``: desired.json's mtime: its long-poll answered), and to
    the control plane's first answer with the release ready (``reported``: the agent's status report, read every
    50 ms by a thread of ours); its release. BenchError with its output when it fails."""
    env_ = {k: v for k, v in os.environ.items() if not k.startswith("CELLPLANE_")}
    env_.update({"CELLPLANE_SERVER": server.url, "CELLPLANE_TOKEN": server.admin_token, "COLUMNS": "200",
                 "CELLPLANE_CONFIG": os.devnull + ".none", "PYTHONUNBUFFERED": "1"})
    reported: list[float] = []
    done = threading.Event()
    desired_json = agent.data_dir / "desired.json"
    wall, started = time.time(), time.perf_counter()

    def watch() -> None:
        with httpx.Client(base_url=server.api, headers={"Authorization": f"Bearer {server.admin_token}"}) as c:
            while not done.is_set():
                try:
                    r = c.get(f"{ORG}/projects/{PROJECT}/components/{COMPONENT}/deployments/{env}")
                    d = r.json() if r.status_code == 200 else {}
                except (httpx.HTTPError, ValueError):
                    d = {}
                if ((d.get("build") or {}).get("id") == build and d.get("observedRelease") == d.get("rollout")
                        and d.get("state") == "ready"):
                    reported.append(time.perf_counter() - started)
                    return
                done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        process = subprocess.Popen([str(CELLPLANE), "deploy", COMPONENT, "--env", env, "-p", PROJECT, "--build",
                                    build, "--timeout", str(timeout)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env_)
        assert process.stdout is not None
        lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stdout]
        process.wait(30)
    finally:
        done.set()
        watcher.join(10)
    ready = next((at for at, text in lines if text.startswith("Deployed ")), None)
    recorded = next((at for at, text in lines if text.startswith("deploying ")), None)
    if process.returncode != 0 or ready is None:
        output = "\n".join(text for _, text in lines)
        raise BenchError(f"cellplane deploy {COMPONENT} --env {env} exited with {process.returncode}:\n{output}")
    release = next(text.partition("(release ")[2].partition(",")[0] for _, text in lines
                   if text.startswith("Deployed "))
    received = desired_json.stat().st_mtime - wall if desired_json.exists() else None
    return {"seconds": round(ready, 3), "recorded": round(recorded, 3) if recorded is not None else None,
            "received": round(received, 3) if received is not None else None,
            "reported": round(reported[0], 3) if reported else None, "release": release}


def build_all(server: LiveServer, root: Path, count: int) -> list[dict[str, Any]]:
    """``count`` builds of echo, each with its own VERSION file (two at a time: the control plane's workers)."""
    c = server.client()
    component(c, PROJECT, COMPONENT, service(8080))
    started = []
    for i in range(count):
        source = root / f"echo-{i}"
        shutil.copytree(APPS / "echo", source)
        (source / "VERSION").write_text(f"{i}\n")
        started.append(upload(c, PROJECT, COMPONENT, source))
    builds = [wait(c, info, timeout=600) for info in started]
    failed = [b for b in builds if b["state"] != "succeeded"]
    if failed:
        raise BenchError(f"building echo: {failed[0]['state']}: {failed[0].get('error')}")
    return builds


def image_in_cluster(cluster: kubecluster.KubeCluster) -> str:
    namespace = names.namespace("default", PROJECT, "staging")
    running = cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{names.workload(COMPONENT, 'v1')}")
    return str(running["spec"]["template"]["spec"]["containers"][0]["image"])


def middle(values: Iterable[float | None]) -> float | None:
    """The median of the values given (None for none)."""
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def measure_deploys(cluster: kubecluster.KubeCluster, root: Path, redeploys: int) -> dict[str, Any]:
    """The first deploy and ``redeploys`` redeploys of echo with ``cellplane deploy``, to both data planes."""
    begun = time.perf_counter()
    with contextlib.ExitStack() as stack:
        (root / "registry").mkdir(parents=True)
        registry = registrykit._start(root / "registry")
        stack.callback(registrykit._stop, registry)
        registrykit.push_tiny_base(registry.url)
        cache = root / "cache"
        server = start_server(root / "cp", env={"CELLPLANE_CACHE_DIR": str(cache), "CELLPLANE_BUILD_WORKERS": "2"})
        stack.callback(server.stop)
        r = server.client().post("/apply", json={"documents": pipeline_documents(registry.url)})
        if r.status_code != 200:
            raise BenchError(f"applying the pipeline: {r.status_code} {r.text[:300]}")
        agents: dict[str, AgentProcess] = {}
        stack.callback(lambda: [a.stop() for a in agents.values()])
        agents["staging"] = start_kube_agent(server, cluster, root / "kube-dp" / "data")
        agents["development"] = start_agent(server, root / "home-dp" / "data", cache, "--name", "home", "--no-bind")
        t = time.perf_counter()
        builds = build_all(server, root, redeploys + 1)
        built = time.perf_counter() - t
        samples: dict[str, list[dict[str, Any]]] = {env: [] for env in PLANES}
        for build in builds:
            for env in PLANES:
                time.sleep(0.5 + random.random())  # noqa: S311  (not cryptography)
                samples[env].append(cli_deploy(server, agents[env], build["id"], env))
            if image_in_cluster(cluster) != build["image"]["reference"]:
                raise BenchError(f"staging runs {image_in_cluster(cluster)}, not {build['image']['reference']}")
    out: dict[str, Any] = {"redeploys": redeploys, "buildsSeconds": round(built, 1),
                           "seconds": round(time.perf_counter() - begun, 1)}
    for env, plane in PLANES.items():
        first, *rest = samples[env]
        out[plane] = {"environment": env, "firstDeployS": first["seconds"],
                      "redeployMedianS": round(statistics.median(s["seconds"] for s in rest), 2),
                      "redeployMaxS": max(s["seconds"] for s in rest),
                      "recordedMedianS": middle(s["recorded"] for s in rest),
                      "receivedMedianS": middle(s["received"] for s in rest),
                      "reportedMedianS": middle(s["reported"] for s in rest),
                      "samples": samples[env]}
    return out


# -- reconcile at scale ------------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def test_cluster() -> Iterator[tuple[kubecluster.KubeCluster, Path]]:
    """The test cluster started in a temporary directory (also given, for the rest of the run), stopped after."""
    tools = kubecluster.kube_tools_dir()
    if tools is None:
        raise SystemExit("bench_kube: the test cluster is not built; run `make kubetools`")
    with tempfile.TemporaryDirectory(prefix="cellplane-bench-kube-") as tmp:
        cluster = kubecluster.start_cluster(tools, Path(tmp) / "cluster")
        try:
            system_namespace(cluster)
            yield cluster, Path(tmp)
        finally:
            cluster.stop()


def measured(n: int, deploys: int, wait_ready: bool = False) -> dict[str, Any]:
    """Start the test cluster, measure the deploys (unless ``deploys`` is 0; their error, if any, as
    ``deploys.error``: the rest still runs) and the reconcile at scale, stop it; the figures as ``measure`` returns
    them and ``deploys`` as ``measure_deploys`` does."""
    with test_cluster() as (cluster, tmp):
        out: dict[str, Any] = {}
        if deploys:
            try:
                out["deploys"] = measure_deploys(cluster, tmp / "deploys", deploys)
            except (BenchError, RuntimeError, OSError) as e:
                out["deploys"] = {"error": f"{type(e).__name__}: {e}"}
        return asyncio.run(measure(cluster, n, tmp, wait_ready)) | out


def deploy_figures(d: dict[str, Any]) -> list[Any]:  # -> list[common.Figure]
    """`cellplane deploy` to each data plane: the median redeploy and the first deploy, side by side."""
    from common import Figure

    if "error" in d:
        return [Figure("cellplane deploy -> ready (not run)", None, "s", d["error"].splitlines()[0][:300])]
    kube, local = d["kubernetes"], d["local"]
    n = d["redeploys"]
    figures = []
    for label, this, other, what in (("Kubernetes", kube, local, "local"), ("local", local, kube, "Kubernetes")):
        figures += [
            Figure(f"cellplane deploy -> ready, {label} data plane: redeploy, median of {n}",
                   this["redeployMedianS"], "s", f"{what} data plane: {other['redeployMedianS']} s",
                   note=f"max {this['redeployMaxS']} s; from the command's start: release recorded "
                        f"{this['recordedMedianS']} s, desired state at the agent {this['receivedMedianS']} s, "
                        f"reported ready {this['reportedMedianS']} s (the CLI polls every 0.5 s)"),
            Figure(f"cellplane deploy -> ready, {label} data plane: first deploy", this["firstDeployS"], "s",
                   f"{what} data plane: {other['firstDeployS']} s"),
        ]
    figures[0].note += "; kwok's fake node, the agent's 0.25 s observation passes while a rollout is under way"
    return figures


def run(args: argparse.Namespace):  # -> common.Suite (imported here: this file also runs alone)
    """The "kubernetes" suite of `make bench`: against the test cluster, `cellplane deploy` to a Kubernetes and to a
    local data plane (first deploy, median of ``args.deploys`` redeploys), one deployment applied until it reports
    ready (median of 10), a no-op reconcile of 500 deployments (target <= 1 s and no write), the agent's memory."""
    from common import Figure, Suite

    n = 100 if args.quick else 500
    r = measured(n, int(getattr(args, "deploys", 10)))
    suite = Suite("kubernetes")
    suite.figures += deploy_figures(r["deploys"])
    suite.figures += [
        Figure("one deployment applied until ready: median of 10", r["one_deployment_to_ready_s"], "s",
               note="kwok's fake node; the agent's 0.25 s rollout observation passes included"),
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
    parser.add_argument("--deploys", type=int, default=10, help="redeploys timed with `cellplane deploy` (0: none)")
    parser.add_argument("--wait-ready", action="store_true", help="also time every deployment ready (kwok's fake "
                        "node starts some 20 pods a minute on a busy 2-core machine)")
    args = parser.parse_args()
    print(json.dumps(measured(args.deployments, args.deploys, args.wait_ready), indent=2))


if __name__ == "__main__":
    main()
