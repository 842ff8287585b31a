"""A deployment's state read back from the cluster: its Deployment's status and conditions, its pods, its Jobs.

Pure functions from live objects (dicts as the API server returns them) to the contract's reports, in the states
the local data plane already uses (``contract.wire.ReportedState``):

- ``ready``: the Deployment observed its generation, every replica is updated and available, no old pod is left;
- ``progressing``: a rollout under way (the new release's pods starting, or not applied yet: ``pending``);
- ``crash-loop``: a pod of the current release waits in ``CrashLoopBackOff``;
- ``failed``: a pod cannot start (``ImagePullBackOff``/``ErrImagePull``/``InvalidImageName``,
  ``CreateContainerConfigError``/``CreateContainerError``), cannot be scheduled (``PodScheduled`` False,
  ``Unschedulable``), failed, or the Deployment's ``Progressing`` condition says ``ProgressDeadlineExceeded``;
- ``degraded``: some replicas ready, not all (or one of them in trouble while others serve);
- ``scaled-to-zero``: a deployment whose ``scaling`` allows zero (``minReplicas`` 0) at 0 replicas;
- ``blocked``, ``scheduled``, ``idle``: as on the local data plane (a blocked deployment, a scheduled task, a
  manual one; ``idle`` also a Deployment at 0 replicas that is not allowed to be scaled to zero).

A pod's replica report (``ReplicaReport``) has its index among the current release's pods (by name), its state
(``ready``, ``starting``, ``crash-loop``, ``failed``), its container restarts and its reason; no pid and no port
(they are the kubelet's). Where the local runtime adds a process's last output line, the message here ends with
the container's last log lines when the runtime could read them (``last_lines``: pod name -> text). Cost: a pass
over the deployment's pods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cellplane.contract import DeploymentReport, DesiredDeployment, ReplicaReport
from cellplane.contract.wire import ReportedState, RunState
from cellplane.kubernetes import names

CRASH = ("CrashLoopBackOff",)
CANNOT_START = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
                "CreateContainerError", "ErrImageNeverPull", "RunContainerError")


@dataclass(frozen=True)
class PodProblem:
    state: ReportedState  # crash-loop or failed
    reason: str  # Kubernetes' reason (CrashLoopBackOff, Unschedulable, ...)
    message: str


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def pod_problem(pod: dict[str, Any]) -> PodProblem | None:
    """Why a pod does not run, when it is something that will not pass by itself."""
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in CRASH:
            last = ((cs.get("lastState") or {}).get("terminated") or {})
            how = f"exited with {last['exitCode']}" if "exitCode" in last else "keeps exiting"
            return PodProblem("crash-loop", reason, f"{reason}: {how}, restarted {cs.get('restartCount', 0)} times")
        if reason in CANNOT_START:
            return PodProblem("failed", reason, f"{reason}: {waiting.get('message') or 'the container cannot start'}")
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return PodProblem("failed", "Unschedulable", f"Unschedulable: {scheduled.get('message') or 'no node fits'}")
    if status.get("phase") == "Failed":
        reason = status.get("reason") or "Failed"
        return PodProblem("failed", reason, f"{reason}: {status.get('message') or 'the pod failed'}")
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    ready = _condition(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


def restarts(pod: dict[str, Any]) -> int:
    return sum(int(cs.get("restartCount") or 0) for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def _with_lines(text: str, lines: str | None) -> str:
    return f"{text} (last lines: {lines})" if lines else text


def replica_reports(pods: list[dict[str, Any]], last_lines: dict[str, str]) -> list[ReplicaReport]:
    out = []
    for index, pod in enumerate(sorted(pods, key=lambda p: p["metadata"]["name"])):
        problem = pod_problem(pod)
        name = pod["metadata"]["name"]
        if problem is not None:
            state, text = str(problem.state), _with_lines(problem.message, last_lines.get(name))
        elif pod_ready(pod):
            state, text = "ready", ""
        else:
            state, text = "starting", (pod.get("status") or {}).get("phase") or "Pending"
        out.append(ReplicaReport(index=index, state=state, restarts=min(restarts(pod), 2**31), message=text[:500]))
    return out


def _live_release(obj: dict[str, Any]) -> str | None:
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (template.get("labels") or {}).get(names.RELEASE)


def service_report(d: DesiredDeployment, live: dict[str, Any] | None, pods: list[dict[str, Any]], *,
                   blocked: str | None = None, error: str | None = None,
                   last_lines: dict[str, str] | None = None) -> DeploymentReport:
    """A service-like deployment's report from its Deployment (None: not in the cluster) and its pods."""
    last_lines = last_lines or {}
    release = names.label_value(d.release)
    pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    current = [p for p in pods if (p["metadata"].get("labels") or {}).get(names.RELEASE) == release]
    older_ready = [p for p in pods if p not in current and pod_ready(p)]
    keeps = ""
    if live is not None and _live_release(live) not in (None, release):
        keeps = f"; release {_live_release(live)} keeps serving"
    elif older_ready:
        keeps = "; the previous release keeps serving"

    def report(state: ReportedState, message: str) -> DeploymentReport:
        return DeploymentReport(id=d.id, release=d.release, state=state, message=message[:2000],
                                replicas=replica_reports(current, last_lines))

    if blocked is not None:
        return report("blocked", blocked + keeps)
    if error is not None:
        return report("failed", error + keeps)
    if live is None:
        return report("pending", "not in the cluster yet")
    if _live_release(live) != release:
        return report("progressing", f"applying release {d.release}{keeps}")
    spec, status = live.get("spec") or {}, live.get("status") or {}
    wanted = int(spec.get("replicas", d.replicas) or 0)
    ready = sum(1 for p in current if pod_ready(p))
    problems = [(i, p, pod_problem(p)) for i, p in enumerate(sorted(current, key=lambda p: p["metadata"]["name"]))]
    troubled = [(i, p, problem) for i, p, problem in problems if problem is not None]
    observed = int(status.get("observedGeneration") or 0) >= int(live["metadata"].get("generation") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if troubled:
        i, pod, problem = troubled[0]
        assert problem is not None
        text = f"replica {i}: " + _with_lines(problem.message, last_lines.get(pod["metadata"]["name"]))
        if ready:
            return report("degraded", f"{ready}/{wanted} replicas ready; {text}{keeps}")
        return report(problem.state, text + keeps)
    progressing = _condition(live, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return report("failed", f"not ready in time: {progressing.get('message') or ''}{keeps}")
    if wanted == 0:
        if d.scaling is not None and d.scaling.minReplicas == 0:  # the agent's, after the idle period
            return report("scaled-to-zero", "no replicas: the next request wakes one")
        return report("idle", "no replicas")
    if observed and updated >= wanted and available >= wanted and total == wanted and ready >= wanted:
        return report("ready", "")
    if updated >= wanted and total == wanted and ready:
        return report("degraded", f"{ready}/{wanted} replicas ready")
    return report("progressing", f"release {d.release}: {updated}/{wanted} replicas updated, {ready} ready{keeps}")


def task_report(d: DesiredDeployment, live: dict[str, Any] | None, *, blocked: str | None = None,
                error: str | None = None) -> DeploymentReport:
    """A scheduled or manual task's report: ``scheduled`` once its CronJob is in the cluster, ``idle`` for a
    manual task (its runs are task runs)."""
    if blocked is not None:
        return DeploymentReport(id=d.id, release=d.release, state="blocked", message=blocked)
    if error is not None:
        return DeploymentReport(id=d.id, release=d.release, state="failed", message=error)
    if d.type == "scheduled-task":
        if live is None:
            return DeploymentReport(id=d.id, release=d.release, state="pending", message="not in the cluster yet")
        return DeploymentReport(id=d.id, release=d.release, state="scheduled", message="")
    return DeploymentReport(id=d.id, release=d.release, state="idle", message="")


@dataclass(frozen=True)
class RunOutcome:
    state: RunState
    exit_code: int | None
    message: str


def exit_code(pods: list[dict[str, Any]]) -> int | None:
    """The exit code of the (last) terminated container of a Job's pods."""
    codes = []
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated is not None and "exitCode" in terminated:
                codes.append(int(terminated["exitCode"]))
    return codes[-1] if codes else None


def run_outcome(job: dict[str, Any], pods: list[dict[str, Any]]) -> RunOutcome:
    """Where a run's Job is: running, or succeeded/failed with its exit code (a Job's ``Complete`` or ``Failed``
    condition; the exit code from its pod's container, 0 for a complete Job whose pod is gone)."""
    complete, failed = _condition(job, "Complete"), _condition(job, "Failed")
    code = exit_code(pods)
    if complete is not None and complete.get("status") == "True":
        code = 0 if code is None else code
        return RunOutcome("succeeded", code, f"exited with {code}")
    if failed is not None and failed.get("status") == "True":
        why = failed.get("message") or failed.get("reason") or "the Job failed"
        return RunOutcome("failed", code, (f"exited with {code}: " if code is not None else "") + why)
    problem = next((p for p in map(pod_problem, pods) if p is not None), None)
    return RunOutcome("running", None, problem.message if problem is not None else "")
