"""Failures the test cluster's fake node shows by itself (kwok stages of our own, tools/kube/stages/, selected by an
image repository marker: ``/never-pulls``, ``/exits-N``): the Kubernetes runtime reports them from what the cluster
says, nothing written by the test. A module of its own (one runtime, data plane ``kube-failures``, project
``faults``) beside test_kube_runtime.py's cell; the crash loop is there (``/crash-loops``). The last test goes the
whole way: a manual task component named ``exits-3`` (so its image's repository ends in ``/exits-3``) built and
pushed by a real control plane, run with ``cellplane run`` through the agent process of tests/kubeagentkit.py's
``kube_agent``. Cost: about ten seconds on the session's cluster, plus one build.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from buildkit import BuildServer
from cellplane.contract import DesiredState, TaskRunSent
from cellplane.dataplane.agent import AgentSettings
from cellplane.kubernetes import names
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from dataplanekit import ORG, AgentProcess, build_app, deploy, wait_state
from desiredkit import deployment_wire, state_wire
from kubecluster import KubeCluster
from kuberuntimekit import Host, Kube, Loop
from liveserver import run_cli

PLANE = "kube-failures"
NS = names.namespace("acme", "faults", "development")
REGISTRY = "registry.cellplane.test/acme/"
GOOD = REGISTRY + "web@sha256:" + "c1" * 32
NEVER_PULLS = REGISTRY + "never-pulls@sha256:" + "c2" * 32
EXITS_3 = REGISTRY + "exits-3@sha256:" + "c3" * 32


@pytest.fixture(scope="module")
def kube(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    host = Host(tmp_path_factory.mktemp("kube-failures-agent"))
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=host.state.root, name=PLANE,
                             organization="acme", runtime="kubernetes")
    runtime = KubernetesRuntime(settings, KubernetesSettings(
        kubeconfig=kube_cluster.kubeconfig, drift_interval=3600, observe_interval=0.3))
    loop = Loop()
    loop.run(runtime.start(host, None))
    try:
        yield Kube(kube_cluster, runtime, host, loop)
        loop.run(runtime.apply(state()))  # undeployed: the other modules find no route of this plane
    finally:
        loop.run(runtime.stop())
        loop.run(runtime.close())
        loop.close()


def web(image: str, release: str, id: str = "dep_00000000web1", component: str = "web") -> dict[str, Any]:
    return deployment_wire(id=id, project="faults", component=component, release=release,
                           artifact={"digest": "sha256:" + image[-64:], "image": image})


def state(*deployments: dict[str, Any], runs: list[dict[str, Any]] | None = None) -> DesiredState:
    return DesiredState.from_wire(state_wire(list(deployments), organization="acme", dataPlane=PLANE,
                                             revision="rev", runs=runs or []))


def test_a_service_whose_image_never_pulls_is_failed_with_image_pull_back_off(kube: Kube) -> None:
    kube.apply(state(web(NEVER_PULLS, "r1", id="dep_00000000nvp1", component="nopull")))
    report = kube.wait_report("dep_00000000nvp1", lambda r: r.state == "failed" and "ImagePullBackOff" in r.message,
                              "the service failed with ImagePullBackOff")
    assert report.message.startswith("replica 0: ImagePullBackOff: Back-off pulling image"), report.message
    assert NEVER_PULLS in report.message
    assert [r.state for r in report.replicas] == ["failed"]
    pod = kube.cluster.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={names.DEPLOYMENT}%3Ddep_00000000nvp1")[
        "items"][0]
    assert pod["status"]["phase"] == "Pending"  # as a kubelet leaves it: never started


def test_a_new_release_whose_image_never_pulls_fails_while_the_previous_one_keeps_serving(kube: Kube) -> None:
    kube.apply(state(web(GOOD, "r1")))
    kube.wait_report("dep_00000000web1", lambda r: r.state == "ready", "release r1 ready")
    kube.apply(state(web(NEVER_PULLS, "r2")))
    report = kube.wait_report("dep_00000000web1", lambda r: r.release == "r2" and r.state == "failed",
                              "release r2 failed")
    assert "Pull" in report.message and report.message.endswith("; the previous release keeps serving"), (
        report.message)
    pods = kube.cluster.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={names.DEPLOYMENT}%3Ddep_00000000web1")
    ready = [p["metadata"]["labels"][names.RELEASE] for p in pods["items"]
             if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    assert ready == ["r1"]


def test_a_manual_run_whose_pod_exits_3_is_told_failed_with_exit_code_3(kube: Kube) -> None:
    task = deployment_wire(id="dep_00000000ex3t", project="faults", component="migrate", type="manual-task",
                           artifact={"digest": "sha256:" + "c3" * 32, "image": EXITS_3})
    run = {"id": "run_00000000000000f3", "deployment": "dep_00000000ex3t", "environment": "development",
           "project": "faults", "component": "migrate", "requestedAt": "2026-12-07T10:00:00+00:00"}
    kube.apply(state(web(GOOD, "r1"), task, runs=[run]))

    def told() -> list[TaskRunSent]:
        return [r for r in kube.host.runs if r.id == run["id"]]

    kube.cluster.wait_for("the run ended", lambda: [r for r in told() if r.state in ("succeeded", "failed")], 60)
    assert [(r.state, r.exitCode, r.trigger) for r in told()] == [("running", None, "manual"), ("failed", 3, "manual")]
    assert told()[-1].message == "exited with 3: Job has reached the specified backoff limit"
    job = kube.cluster.get(f"/apis/batch/v1/namespaces/{NS}/jobs/{names.run(run['id'])}")
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"]["conditions"])
    assert kube.report("dep_00000000ex3t").state == "idle"  # type: ignore[union-attr]  # a run, not the task


def test_cellplane_run_of_a_task_whose_pod_exits_3_on_the_cluster_ends_with_exit_code_3(
        build_server: BuildServer, kube_agent: AgentProcess, kube_cluster: KubeCluster) -> None:
    c = build_server.client
    build = build_app(c, "kfail", "exits-3", {"type": "manual-task"}, app="task")
    assert build["image"]["reference"].partition("@")[0].endswith("/exits-3")
    deploy(c, "kfail", "exits-3", "staging", build=build["id"])
    wait_state(c, "kfail", "exits-3", states=("idle",), env="staging")
    out = run_cli(build_server.server, "run", "exits-3", "--env", "staging", "-p", "kfail")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "exit code 3" in out.stderr
    r = c.get(f"{ORG}/projects/kfail/components/exits-3/runs", params={"environment": "staging"})
    assert r.status_code == 200, r.text
    [run] = r.json()["items"]
    assert (run["trigger"], run["state"], run["exitCode"]) == ("manual", "failed", 3)
    namespace = names.namespace("default", "kfail", "staging")
    pods = kube_cluster.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Failed"]
