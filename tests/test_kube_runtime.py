"""The Kubernetes runtime against the real test cluster (tests/kubecluster.py: kube-apiserver, etcd, controller
manager, scheduler, kwok's fake node): desired states applied, objects and labels read back through the API,
status mapped from what the controllers and kwok do, runs followed, drift corrected, inventory pruned, and an agent
restarted without its control plane changing nothing.

One cluster for the session, one runtime for the module (its asyncio loop in a thread of its own, as the agent's
loop runs it), the tests in order on one cell. The runtime's host is the agent's ``RuntimeHost`` interface kept in
memory (log lines and task runs gathered); the last test runs the real agent loop on a data directory, its control
plane down. A container that crash loops is the test cluster's own kwok stage (tools/kube/stages/, selected by an
image repository ending in ``/crash-loops``); an image that never pulls and a Job's pod that exits non-zero are in
test_kube_failures.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cellplane.contract import TaskRunSent
from cellplane.dataplane.agent import Agent, AgentSettings
from cellplane.dataplane.localstate import LocalState
from cellplane.kubernetes import names
from cellplane.kubernetes.runtime import KubernetesRuntime, KubernetesSettings
from cellplane.sealing import load_or_create_private, public_key_text, seal
from desiredkit import deployment_wire, state_wire
from kubecluster import KubeCluster, KubeError
from kuberuntimekit import IMAGE, PLANE, Host, Kube, Loop, managed, state, versions
from liveserver import free_port

T = TypeVar("T")
NS = names.namespace("acme", "shop", "development")
SYSTEM = "cellplane-system"
API = names.workload("api", "v1")  # api--v1: its Deployment, ConfigMap, Secret, NetworkPolicy
SERVICE = names.service("api", "v1", "api")


@pytest.fixture(scope="module")
def kube(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    try:  # what the data plane's manifest installs: its system namespace
        kube_cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": SYSTEM}})
    except KubeError as e:
        if e.status != 409:
            raise
    host = Host(tmp_path_factory.mktemp("kube-agent"))
    settings = AgentSettings(controlplane="http://127.0.0.1:9", token="t", data_dir=host.state.root, name=PLANE,
                             organization="acme", runtime="kubernetes")
    runtime = KubernetesRuntime(settings, KubernetesSettings(
        kubeconfig=kube_cluster.kubeconfig, drift_interval=3600, observe_interval=0.3,
        external_url="https://apps.example.test", internal_url="http://gateway.cellplane-system:8080"))
    loop = Loop()
    loop.run(runtime.start(host, None))
    try:
        yield Kube(kube_cluster, runtime, host, loop)
    finally:
        loop.run(runtime.stop())
        loop.run(runtime.close())
        loop.close()


def service(host_key: X25519PrivateKey, *, release: str = "r1", greeting: str = "hello", **fields: Any,
            ) -> dict[str, Any]:
    password = seal(public_key_text(host_key), "s3cret-password", "development/shop/api/DB_PASSWORD")
    return deployment_wire(
        id="dep_000000000api", release=release, artifact={"digest": "sha256:" + "0" * 64, "image": IMAGE},
        endpoints=[{"name": "api", "port": 8080, "type": "REST", "basePath": "/", "visibility": ["Public"]}],
        env=[{"name": "GREETING", "value": greeting}, {"name": "DB_PASSWORD", "sealed": password}],
        files=[{"name": "app.conf", "mountPath": "/etc/app/app.conf", "content": "workers = 2\n"}], **fields)


def test_a_deployed_service_becomes_its_cells_namespace_deployment_service_policies_routes_and_secret(
        kube: Kube) -> None:
    kube.apply(state(service(kube.host.key)))
    objects = managed(kube.cluster)
    assert {k for k in objects if k[1] in (NS, "")} == {
        ("Namespace", "", NS), ("NetworkPolicy", NS, "default-deny"), ("NetworkPolicy", NS, "allow-dns"),
        ("NetworkPolicy", NS, API), ("ConfigMap", NS, API), ("Secret", NS, API),
        ("Service", NS, SERVICE), ("Deployment", NS, API)}
    routes = {k[2] for k in objects if k[0] == "HTTPRoute"}
    assert len(routes) == 2 and {k[2] for k in objects if k[0] == "Gateway"} == {"development--external",
                                                                                 "development--internal"}
    for (kind, _, name), obj in objects.items():
        labels = obj["metadata"]["labels"]
        assert labels[names.MANAGED_BY] == "cellplane" and labels[names.DATA_PLANE] == PLANE, (kind, name)
        managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
        assert ("cellplane", "Apply") in managers, (kind, name)
        if kind not in ("Namespace", "Gateway") and name not in ("default-deny", "allow-dns"):
            assert labels[names.DEPLOYMENT] == "dep_000000000api" and labels[names.RELEASE] == "r1", (kind, name)
    deployment = objects[("Deployment", NS, API)]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    secret = objects[("Secret", NS, API)]
    assert {base64.b64decode(v).decode() for v in secret["data"].values()} == {"s3cret-password"}
    report = kube.wait_report("dep_000000000api", lambda r: r.state == "ready", "the service ready")
    assert [(r.state, r.restarts) for r in report.replicas] == [("ready", 0)]
    pods = kube.cluster.get(f"/api/v1/namespaces/{NS}/pods")["items"]
    assert [p["spec"]["nodeName"] for p in pods] == ["kwok-node"]
    gateways = kube.loop.run(kube.runtime.status()).gateways
    assert gateways["development"].external == "https://apps.example.test"


def test_a_second_reconcile_and_a_read_back_of_everything_write_nothing(kube: Kube) -> None:
    before, sent = versions(kube.cluster), kube.runtime.applier.requests
    kube.apply(state(service(kube.host.key), revision="rev-again"))
    kube.runtime.drift_now()
    passes = kube.runtime.drift_passes
    kube.apply(state(service(kube.host.key), revision="rev-again"))
    assert kube.runtime.drift_passes == passes + 1
    assert kube.runtime.applier.requests == sent  # not one request
    assert versions(kube.cluster) == before  # and not one write


def test_a_configuration_change_rolls_a_new_replicaset_and_the_new_release_becomes_ready(kube: Kube) -> None:
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi")))
    kube.wait_report("dep_000000000api", lambda r: r.state == "ready" and r.release == "r2", "release r2 ready")
    sets = kube.cluster.get(f"/apis/apps/v1/namespaces/{NS}/replicasets")["items"]
    assert len(sets) == 2
    current = [s for s in sets if s["spec"]["replicas"] == 1]
    assert [s["spec"]["template"]["metadata"]["labels"][names.RELEASE] for s in current] == ["r2"]
    env = current[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GREETING", "value": "hi"} in env


def test_objects_deleted_or_edited_by_hand_are_applied_again_on_the_next_read_back(kube: Kube) -> None:
    kube.cluster.delete(f"/api/v1/namespaces/{NS}/services/" + SERVICE)
    kube.cluster.request("PATCH", f"/api/v1/namespaces/{NS}/configmaps/{API}", {"data": {"file.app.conf": "x"}},
                         content_type="application/merge-patch+json")
    sent = kube.runtime.applier.requests
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi")))
    assert kube.runtime.applier.requests == sent  # between read-backs, nothing is read and nothing sent
    kube.runtime.drift_now()
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi")))
    assert kube.runtime.applier.requests == sent + 2
    assert kube.cluster.get(f"/api/v1/namespaces/{NS}/services/" + SERVICE)["spec"]["ports"][0]["port"] == 8080
    assert kube.cluster.get(f"/api/v1/namespaces/{NS}/configmaps/{API}")["data"] == {"file.app.conf": "workers = 2\n"}


def test_a_pod_no_node_can_take_reports_unschedulable(kube: Kube) -> None:
    big = deployment_wire(id="dep_000000000big", component="big", artifact={"digest": "sha256:" + "1" * 64,
                                                                           "image": IMAGE},
                          resources={"cpu": "64", "memory": "1Gi"})
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi"), big))
    report = kube.wait_report("dep_000000000big", lambda r: r.state == "failed", "the big deployment failed")
    assert "Unschedulable" in report.message and "Insufficient cpu" in report.message, report.message
    assert report.replicas[0].state == "failed"


def test_a_container_that_keeps_exiting_is_a_crash_loop_with_its_restarts_growing(kube: Kube) -> None:
    # the test cluster's crash-loops stage (tools/kube/stages/): exit 1, CrashLoopBackOff, one restart more every 2 s
    crashy = deployment_wire(id="dep_00000000crsh", component="crashy", artifact={
        "digest": "sha256:" + "5" * 64, "image": "registry.cellplane.test/acme/crash-loops@sha256:" + "5" * 64})
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi"), crashy))
    first = kube.wait_report("dep_00000000crsh", lambda r: r.state == "crash-loop", "the service in a crash loop")
    assert first.message.startswith("replica 0: CrashLoopBackOff: exited with 1, restarted "), first.message
    later = kube.wait_report("dep_00000000crsh", lambda r: r.replicas[0].restarts > first.replicas[0].restarts,
                             "one restart more", timeout=30)
    assert later.state == "crash-loop" and later.replicas[0].state == "crash-loop"
    assert kube.report("dep_000000000api").state == "ready"  # type: ignore[union-attr]  # the rest as it was


def test_a_manual_run_becomes_one_job_followed_to_its_exit_code_and_never_runs_twice(kube: Kube) -> None:
    task = deployment_wire(id="dep_0000000000mt", component="migrate", type="manual-task",
                           artifact={"digest": "sha256:" + "2" * 64, "image": IMAGE})
    run = {"id": "run_00000000000000a1", "deployment": "dep_0000000000mt", "environment": "development",
           "project": "shop", "component": "migrate", "requestedAt": "2026-12-07T10:00:00+00:00"}
    desired = state(service(kube.host.key, release="r2", greeting="hi"), task, runs=[run])
    kube.apply(desired)

    def told(states: set[str]) -> list[TaskRunSent]:
        return [r for r in kube.host.runs if r.id == run["id"] and r.state in states]

    kube.cluster.wait_for("the run succeeded", lambda: told({"succeeded", "failed"}), 60)
    assert [(r.state, r.exitCode, r.trigger) for r in told({"running", "succeeded", "failed"})] == [
        ("running", None, "manual"), ("succeeded", 0, "manual")]
    jobs = kube.cluster.get(f"/apis/batch/v1/namespaces/{NS}/jobs?labelSelector={names.RUN}%3D{run['id']}")["items"]
    assert len(jobs) == 1
    kube.cluster.delete(f"/apis/batch/v1/namespaces/{NS}/jobs/{jobs[0]['metadata']['name']}")
    kube.runtime.drift_now()
    kube.apply(desired)  # the control plane may still list it: it is not run again
    time.sleep(1)
    assert kube.cluster.get(f"/apis/batch/v1/namespaces/{NS}/jobs?labelSelector={names.RUN}%3D{run['id']}")[
        "items"] == []
    assert run["id"] in kube.host.state.started_runs()
    assert kube.report("dep_0000000000mt").state == "idle"  # type: ignore[union-attr]


def test_a_scheduled_task_is_a_cronjob_and_the_jobs_it_spawns_are_reported_as_runs(kube: Kube) -> None:
    nightly = deployment_wire(id="dep_00000000cron", component="nightly", type="scheduled-task",
                              artifact={"digest": "sha256:" + "3" * 64, "image": IMAGE},
                              schedule={"cron": "0 3 * * *", "timezone": "Europe/Paris", "concurrencyPolicy": "Forbid"})
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi"), nightly))
    kube.wait_report("dep_00000000cron", lambda r: r.state == "scheduled", "the task scheduled")
    cron = kube.cluster.get(f"/apis/batch/v1/namespaces/{NS}/cronjobs/nightly--v1")
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"], cron["spec"]["concurrencyPolicy"]) == (
        "0 3 * * *", "Europe/Paris", "Forbid")
    # what the CronJob controller does at 03:00 (and `kubectl create job --from=cronjob/nightly--v1`): a Job it owns
    template = cron["spec"]["jobTemplate"]
    kube.cluster.post(f"/apis/batch/v1/namespaces/{NS}/jobs", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly--v1-manual", "labels": template["metadata"]["labels"], "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly--v1", "uid": cron["metadata"]["uid"],
            "controller": True}]},
        "spec": template["spec"]})
    done = kube.cluster.wait_for("the scheduled run reported", lambda: [
        r for r in kube.host.runs if r.trigger == "schedule" and r.state == "succeeded"], 60)
    assert (done[0].deployment, done[0].component, done[0].exitCode) == ("dep_00000000cron", "nightly", 0)


def test_a_namespace_that_exists_without_the_data_planes_labels_is_never_taken_over(kube: Kube) -> None:
    theirs = names.namespace("acme", "theirs", "development")
    kube.cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": theirs}})
    other = deployment_wire(id="dep_00000000their", project="theirs", component="web",
                            artifact={"digest": "sha256:" + "4" * 64, "image": IMAGE})
    task = deployment_wire(id="dep_00000000theit", project="theirs", component="once", type="manual-task",
                           artifact={"digest": "sha256:" + "4" * 64, "image": IMAGE})
    run = {"id": "run_00000000000000b2", "deployment": "dep_00000000theit", "environment": "development",
           "project": "theirs", "component": "once", "requestedAt": "2026-12-07T10:00:00+00:00"}
    kube.apply(state(service(kube.host.key, release="r2", greeting="hi"), other, task, runs=[run]))
    told = [(r.state, r.message) for r in kube.host.runs if r.id == run["id"]]
    assert told == [("running", ""), ("failed", "its Job could not be created: its namespace is not this data "
                                               "plane's")]  # started (never run twice), so ended
    report = kube.report("dep_00000000their")
    assert report is not None and report.state == "failed"
    assert report.message == (f"the namespace {theirs} exists and is not this data plane's (it has no "
                              f"{names.DATA_PLANE} label): remove or rename it")
    assert names.DATA_PLANE not in kube.cluster.get(f"/api/v1/namespaces/{theirs}")["metadata"].get("labels", {})
    assert kube.cluster.get(f"/apis/networking.k8s.io/v1/namespaces/{theirs}/networkpolicies")["items"] == []
    assert kube.report("dep_000000000api").state == "ready"  # type: ignore[union-attr]  # the rest applied


def test_undeploying_prunes_every_object_of_the_cell_and_leaves_objects_without_the_label_alone(
        kube: Kube) -> None:
    kube.cluster.post(f"/api/v1/namespaces/{SYSTEM}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-ours"}, "data": {"a": "b"}})
    kube.cluster.post(f"/api/v1/namespaces/{SYSTEM}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "another-plane", "labels": {
            names.MANAGED_BY: "cellplane", names.ORGANIZATION: "acme", names.DATA_PLANE: "other"}}})
    kube.apply(state())

    def pruned() -> bool:
        left = [k for k in managed(kube.cluster) if k[0] not in ("Gateway",)]
        namespace = next((o for k, o in managed(kube.cluster).items() if k == ("Namespace", "", NS)), None)
        return not [k for k in left if k[1] != NS and k != ("Namespace", "", NS)] and (
            namespace is None or bool(namespace["metadata"].get("deletionTimestamp")))

    kube.cluster.wait_for("the cell pruned", pruned, 30)
    assert {k[0] for k in managed(kube.cluster) if k[1] == SYSTEM} == {"Gateway"}  # the environment stays
    assert kube.cluster.get(f"/api/v1/namespaces/{SYSTEM}/configmaps/not-ours")["data"] == {"a": "b"}
    assert kube.cluster.get(f"/api/v1/namespaces/{SYSTEM}/configmaps/another-plane")


def test_an_agent_restarted_with_its_control_plane_down_changes_nothing_in_the_cluster(
        kube_cluster: KubeCluster, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    data.mkdir(mode=0o700)
    key = load_or_create_private(data / "agent.key")
    wire = state_wire([service(key) | {"project": "ops", "id": "dep_00000000ops1"}], organization="acme",
                      dataPlane="kube-agent", revision="cached")
    wire["deployments"][0]["env"][1]["sealed"] = seal(public_key_text(key), "pw", "development/ops/api/DB_PASSWORD")
    LocalState(data).save_desired(wire)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: the control plane is away
    kube_settings = KubernetesSettings(kubeconfig=kube_cluster.kubeconfig, drift_interval=3600, observe_interval=0.3)

    def agent() -> tuple[Agent, KubernetesRuntime]:
        settings = AgentSettings(controlplane=down, token="t", data_dir=data, name="kube-agent",
                                 organization="acme", runtime="kubernetes", heartbeat=1)
        runtime = KubernetesRuntime(settings, kube_settings)
        return Agent(settings, runtime), runtime

    async def first() -> None:
        a, runtime = agent()
        await a.start()
        deadline = time.monotonic() + 90
        while (await runtime.status()).deployments[0].state != "ready":
            assert time.monotonic() < deadline, (await runtime.status()).deployments
            await asyncio.sleep(0.3)
        await a.stop()

    async def second() -> tuple[int, int, str]:
        a, runtime = agent()
        await a.start()  # applies the cached desired state: a full read-back, as every start does
        await asyncio.sleep(1)
        report = (await runtime.status()).deployments[0]
        await a.stop()
        return runtime.applier.requests, runtime.drift_passes, report.state

    asyncio.run(first())
    before = versions(kube_cluster, "kube-agent")
    assert ("Deployment", names.namespace("acme", "ops", "development"), API) in before
    try:
        requests, passes, ready = asyncio.run(second())
        assert (requests, passes, ready) == (0, 1, "ready")
        assert versions(kube_cluster, "kube-agent") == before
    finally:  # what the stopped agent leaves serving; the session's other modules expect no routes
        kube_cluster.delete(f"/apis/gateway.networking.k8s.io/v1/namespaces/{SYSTEM}/httproutes"
                            f"?labelSelector={names.DATA_PLANE}%3Dkube-agent")
