"""The Kubernetes runtime's pure parts: live objects (as the API server returns them) mapped onto the deployment
states the local data plane reports, Jobs onto task runs, what drift and pruning pick. The same code runs against
the real test cluster in test_kube_runtime.py and test_kube_failures.py (an image that never pulls, a Job's pod
exiting 3, a crash loop: the cluster's own kwok stages); here each state is written out, including those the fake
nodes cannot produce (configuration errors, a deadline exceeded)."""

from __future__ import annotations

import copy
from typing import Any

from cellplane.kubernetes import health, names
from cellplane.kubernetes.apply import project
from cellplane.kubernetes.jobs import run_id_of, schedule_run_id
from cellplane.kubernetes.prune import prunable
from desiredkit import desired_deployment

D = desired_deployment(id="dep_000000000001", release="r2", replicas=2)
RELEASE = {names.RELEASE: "r2"}


def _deployment(replicas: int = 2, *, ready: int = 2, updated: int = 2, total: int = 2, release: str = "r2",
                conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "api-v1", "namespace": "acme--shop--development", "generation": 3},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {names.RELEASE: release}}}},
            "status": {"observedGeneration": 3, "replicas": total, "updatedReplicas": updated,
                       "readyReplicas": ready, "availableReplicas": ready, "conditions": conditions or []}}


def _pod(name: str, *, ready: bool = True, release: str = "r2", waiting: str | None = None,
         unschedulable: bool = False, restarts: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running" if ready or waiting else "Pending", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    if waiting is not None:
        status["containerStatuses"] = [{"name": "app", "restartCount": restarts, "state": {"waiting": {
            "reason": waiting, "message": f"{waiting} message"}}, "lastState": {"terminated": {"exitCode": 2}}}]
    else:
        status["containerStatuses"] = [{"name": "app", "restartCount": restarts, "state": {"running": {}}}]
    if unschedulable:
        status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                       "reason": "Unschedulable",
                                                       "message": "0/1 nodes are available: 1 Insufficient cpu."}]}
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": {names.RELEASE: release}}, "status": status}


def test_a_deployment_with_every_replica_updated_and_available_is_ready_with_its_replicas() -> None:
    report = health.service_report(D, _deployment(), [_pod("api-b"), _pod("api-a")])
    assert (report.state, report.message, report.release) == ("ready", "", "r2")
    assert [(r.index, r.state, r.pid, r.port) for r in report.replicas] == [(0, "ready", None, None),
                                                                            (1, "ready", None, None)]


def test_a_rollout_under_way_is_progressing_and_says_the_previous_release_keeps_serving() -> None:
    live = _deployment(updated=1, total=3, ready=2)
    pods = [_pod("old-a", release="r1"), _pod("old-b", release="r1"), _pod("new-a", ready=False)]
    report = health.service_report(D, live, pods)
    assert report.state == "progressing"
    assert "1/2 replicas updated" in report.message and "previous release keeps serving" in report.message
    assert [r.state for r in report.replicas] == ["starting"]  # only the current release's pods
    assert health.service_report(D, _deployment(release="r1"), pods).message.startswith("applying release r2")


def test_crash_loop_image_pull_config_errors_and_unschedulable_pods_fail_with_their_reason() -> None:
    cases = {"CrashLoopBackOff": "crash-loop", "ImagePullBackOff": "failed", "ErrImagePull": "failed",
             "CreateContainerConfigError": "failed"}
    for reason, state in cases.items():
        report = health.service_report(D, _deployment(ready=0), [_pod("api-a", ready=False, waiting=reason,
                                                                      restarts=4)],
                                       last_lines={"api-a": "Traceback | KeyError: 'DB_URL'"})
        assert report.state == state, reason
        assert report.message.startswith(f"replica 0: {reason}"), report.message
        assert report.message.endswith("(last lines: Traceback | KeyError: 'DB_URL')")
        assert report.replicas[0].restarts == 4
    crash = health.service_report(D, _deployment(ready=0), [_pod("a", ready=False, waiting="CrashLoopBackOff")])
    assert "exited with 2" in crash.message
    report = health.service_report(D, _deployment(ready=0), [_pod("api-a", ready=False, unschedulable=True)])
    assert report.state == "failed" and "Unschedulable: 0/1 nodes are available" in report.message


def test_one_pod_in_trouble_beside_a_ready_one_is_degraded_and_a_deadline_exceeded_is_failed() -> None:
    report = health.service_report(D, _deployment(ready=1),
                                   [_pod("api-a"), _pod("api-b", ready=False, waiting="CrashLoopBackOff")])
    assert report.state == "degraded" and report.message.startswith("1/2 replicas ready; replica 1: CrashLoopBackOff")
    late = _deployment(ready=0, conditions=[{"type": "Progressing", "status": "False",
                                             "reason": "ProgressDeadlineExceeded",
                                             "message": 'ReplicaSet "api-v1-7d" has timed out progressing.'}])
    assert health.service_report(D, late, [_pod("api-a", ready=False)]).state == "failed"


def test_blocked_unapplied_and_refused_deployments_and_tasks_report_as_on_the_local_data_plane() -> None:
    assert health.service_report(D, _deployment(release="r1"), [_pod("a", release="r1")],
                                 blocked="a secret cannot be opened").message == (
        "a secret cannot be opened; release r1 keeps serving")
    assert health.service_report(D, None, []).state == "pending"
    assert health.service_report(D, None, [], error="cannot apply Deployment api-v1: 422").state == "failed"
    cron = desired_deployment(type="scheduled-task", schedule={"cron": "*/5 * * * *"})
    assert health.task_report(cron, {}).state == "scheduled"
    assert health.task_report(cron, None).state == "pending"
    assert health.task_report(desired_deployment(type="manual-task"), None).state == "idle"


def _job(*, complete: bool = False, failed: bool = False) -> dict[str, Any]:
    conditions = ([{"type": "Complete", "status": "True"}] if complete else []) + (
        [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
          "message": "Job has reached the specified backoff limit"}] if failed else [])
    return {"metadata": {"name": "run-x", "labels": {names.RUN: "run_0123456789abcdef"}},
            "status": {"conditions": conditions}}


def _job_pod(code: int | None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": code}} if code is not None else {"running": {}}
    return {"metadata": {"name": "run-x-abc", "creationTimestamp": "2026-12-07T10:00:00Z"},
            "status": {"containerStatuses": [{"name": "app", "state": state}]}}


def test_a_jobs_conditions_and_its_pods_exit_code_make_the_runs_state() -> None:
    assert health.run_outcome(_job(), [_job_pod(None)]) == health.RunOutcome("running", None, "")
    assert health.run_outcome(_job(complete=True), [_job_pod(0)]) == health.RunOutcome("succeeded", 0,
                                                                                       "exited with 0")
    failed = health.run_outcome(_job(failed=True), [_job_pod(3)])
    assert (failed.state, failed.exit_code) == ("failed", 3)
    assert failed.message == "exited with 3: Job has reached the specified backoff limit"
    assert health.run_outcome(_job(complete=True), []).exit_code == 0  # its pod already collected


def test_a_manual_runs_job_carries_its_run_id_and_a_cronjobs_job_gets_a_stable_one() -> None:
    assert run_id_of(_job()) == ("run_0123456789abcdef", "manual")
    spawned = {"metadata": {"name": "nightly-v1-29012345", "uid": "5c1f-uid",
                            "ownerReferences": [{"kind": "CronJob", "name": "nightly-v1"}]}}
    run_id, trigger = run_id_of(spawned) or ("", "")
    assert trigger == "schedule" and run_id == schedule_run_id("5c1f-uid") and len(run_id) == 20
    assert run_id_of({"metadata": {"name": "someone-elses"}}) is None


def test_a_live_object_projected_on_what_was_applied_ignores_what_the_server_added() -> None:
    applied = {"metadata": {"name": "api-v1", "labels": {"a": "1"}},
               "spec": {"ports": [{"port": 8080}], "selector": {"app": "api"}}}
    live = copy.deepcopy(applied)
    live["metadata"].update(uid="u", resourceVersion="7", labels={"a": "1", "kubernetes.io/metadata.name": "x"})
    live["spec"].update(clusterIP="10.96.0.9", type="ClusterIP")
    live["spec"]["ports"][0].update(protocol="TCP", targetPort=8080)
    assert project(live, applied) == applied
    live["spec"]["selector"]["app"] = "edited"
    assert project(live, applied) != applied
    del live["spec"]["ports"]
    assert project(live, applied)["spec"]["ports"] is None


def _live(kind: str, name: str, namespace: str = "ns", **meta: Any) -> tuple[tuple[str, str, str, str],
                                                                             dict[str, Any]]:
    key = ("v1" if kind in ("Namespace", "Service") else "batch/v1", kind, "" if kind == "Namespace" else namespace,
           name)
    return key, {"metadata": {"name": name, **meta}}


def test_pruning_spares_owned_objects_blocked_deployments_and_runs_of_deployed_tasks_and_goes_last_for_namespaces(
) -> None:
    dep = {names.DEPLOYMENT: "dep_1"}
    live = dict([
        _live("Namespace", "ns"),
        _live("Service", "gone"),
        _live("Job", "cron-123", ownerReferences=[{"kind": "CronJob"}]),
        _live("Service", "blocked", labels={names.DEPLOYMENT: "dep_2"}),
        _live("Job", "run-a", labels={**dep, names.RUN: "run_a"}),
        _live("Job", "run-b", labels={names.DEPLOYMENT: "dep_9", names.RUN: "run_b"}),
        _live("Service", "kept"),
    ])
    keep = {("v1", "Service", "ns", "kept")}
    assert [k[3] for k in prunable(live, keep, ["dep_2"], ["dep_1"])] == ["gone", "run-b", "ns"]
