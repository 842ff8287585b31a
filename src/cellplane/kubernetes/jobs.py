"""Task runs on Kubernetes: which Jobs are runs, which were started, and what was last told of each.

A manual run (``DesiredRun``) becomes the Job the renderer makes (``run-<id>``, labelled ``cellplane.dev/run``). It
is applied once: its id goes into ``started-runs.json`` in the agent's data directory (the local runtime's file)
before the Job is sent, so a restarted agent, or a control plane that still lists the run as queued, never runs it
twice (a Job the TTL removed is not made again). A scheduled task's runs are the Jobs its CronJob spawns (owned by
the CronJob); each is reported as a run of trigger ``schedule`` with an id derived from the Job's uid
(``run_`` and 16 hex digits of its SHA-256: the contract's shape), so the same Job always gives the same id.

``RunBook`` keeps, in ``kube-runs.json`` beside it, the runs being followed and the state last told for each, so a
restarted agent tells the end of a run it told the start of, and nothing twice. Finished runs are kept for
``KEEP_FINISHED`` seconds (as long as their Job may still be listed), then dropped. ``Runs`` is what the runtime
holds: which rendered Jobs to send, and each observation's Jobs turned into ``TaskRunSent`` reports (running, then
succeeded or failed with the exit code: ``health.run_outcome``) handed to the host. Cost: a small JSON file
rewritten when a run's told state changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cellplane.contract import DesiredState, TaskRunSent
from cellplane.contract.wire import RunState
from cellplane.dataplane.localstate import read_json, write_json
from cellplane.dataplane.runtimes.base import RuntimeHost
from cellplane.kubernetes import health, names
from cellplane.kubernetes.render import Key

log = logging.getLogger("cellplane.dataplane")

KEEP_FINISHED = 2 * 3600.0
FILE = "kube-runs.json"


@dataclass
class Followed:
    id: str
    deployment: str
    environment: str
    project: str
    component: str
    trigger: str  # manual or schedule
    startedAt: str
    told: str  # the RunState last told
    finished: float = 0.0  # time.time() when it was told it ended (0: not yet)


def schedule_run_id(job_uid: str) -> str:
    """The run id of a CronJob's Job."""
    return "run_" + hashlib.sha256(job_uid.encode()).hexdigest()[:16]


def run_id_of(job: dict[str, Any]) -> tuple[str, str] | None:
    """(run id, trigger) of a Job of this data plane: a manual run's, a CronJob's, or None for neither."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    if names.RUN in labels:
        return labels[names.RUN], "manual"
    if any(o.get("kind") == "CronJob" for o in meta.get("ownerReferences") or []) and meta.get("uid"):
        return schedule_run_id(meta["uid"]), "schedule"
    return None


class RunBook:
    """The runs followed (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.path = root / FILE
        raw = read_json(self.path, {})
        self.runs: dict[str, Followed] = {}
        if isinstance(raw, dict):
            for run_id, entry in raw.items():
                try:
                    self.runs[run_id] = Followed(**entry)
                except TypeError:
                    continue

    def save(self) -> None:
        now = time.time()
        self.runs = {k: v for k, v in self.runs.items() if not v.finished or now - v.finished < KEEP_FINISHED}
        write_json(self.path, {k: asdict(v) for k, v in self.runs.items()})


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Runs:
    """The data plane's task runs (see the module's docstring)."""

    def __init__(self, host: RuntimeHost) -> None:
        self.host = host
        self.started = host.state.started_runs()
        self.book = RunBook(host.state.root)

    def to_apply(self, desired: DesiredState, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rendered objects to apply: every one but the Jobs of runs already started. A run seen for the first
        time is recorded as started (on disk) before its Job is sent: it never runs twice."""
        out = []
        new_runs = set()
        for obj in objects:
            run = (obj["metadata"].get("labels") or {}).get(names.RUN) if obj["kind"] == "Job" else None
            if run is not None:
                if run in self.started:
                    continue
                new_runs.add(run)
            out.append(obj)
        if new_runs:
            self.started |= new_runs
            self.host.state.save_started_runs(self.started)
            deployments = {d.id for d in desired.deployments}
            for r in desired.runs:
                if r.id in new_runs and r.deployment in deployments:
                    self.book.runs[r.id] = Followed(r.id, r.deployment, r.environment, r.project, r.component,
                                                    "manual", now_iso(), "")
            self.book.save()
        return out

    def not_created(self, desired: DesiredState, failed: dict[Key, str]) -> None:
        """A run whose Job could not be created ends failed (it is never tried twice)."""
        for r in desired.runs:
            key = ("batch/v1", "Job", names.namespace(desired.organization, r.project, r.environment), names.run(r.id))
            followed = self.book.runs.get(r.id)
            if key in failed and followed is not None and not followed.finished:
                self.tell(followed, "failed", None, f"its Job could not be created: {failed[key]}")

    def namespaces(self, organization: str) -> set[str]:
        """The namespaces of the runs not finished yet (observed even when their deployment is gone)."""
        return {names.namespace(organization, f.project, f.environment) for f in self.book.runs.values()
                if not f.finished}

    def follow(self, desired: DesiredState, jobs: list[dict[str, Any]],
               job_pods: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        """Tell what changed of the runs among ``jobs`` (with their pods by (namespace, Job name))."""
        by_label = {names.label_value(d.id): d for d in desired.deployments}
        changed = False
        for job in jobs:
            which = run_id_of(job)
            if which is None:
                continue
            run_id, trigger = which
            meta = job["metadata"]
            followed = self.book.runs.get(run_id)
            if followed is None:
                if trigger == "manual":
                    continue  # a run this agent did not start (another agent's, or one from before its data dir)
                d = by_label.get((meta.get("labels") or {}).get(names.DEPLOYMENT, ""))
                if d is None:
                    continue
                started = (job.get("status") or {}).get("startTime") or meta.get("creationTimestamp") or now_iso()
                followed = self.book.runs[run_id] = Followed(run_id, d.id, d.environment, d.project, d.component,
                                                             "schedule", started, "")
                changed = True
            if followed.finished:
                continue
            outcome = health.run_outcome(job, job_pods.get((meta["namespace"], meta["name"]), []))
            if outcome.state != followed.told:
                self.tell(followed, outcome.state, outcome.exit_code, outcome.message)
                changed = True
        if changed:
            with contextlib.suppress(OSError):
                self.book.save()

    def tell(self, followed: Followed, state: RunState, code: int | None, text: str) -> None:
        ended = state in ("succeeded", "failed")
        if ended and followed.told in ("", "queued"):  # its start was not told yet: tell it first
            self.tell(followed, "running", None, "")
        try:
            self.host.task_run(TaskRunSent(
                id=followed.id, deployment=followed.deployment, environment=followed.environment,
                project=followed.project, component=followed.component,
                trigger="manual" if followed.trigger == "manual" else "schedule", state=state,
                startedAt=followed.startedAt, endedAt=now_iso() if ended else None, exitCode=code, message=text))
        except ValidationError as e:
            log.warning("a task run the control plane would refuse is not sent (%s)", e)
        followed.told = state
        if ended:
            followed.finished = time.time()
