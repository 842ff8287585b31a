"""Task runs on Kubernetes: which Jobs are runs, which were started, and what was last told of each.

A manual run (``DesiredRun``) becomes the Job the renderer makes (``run-<id>``, labelled ``cellplane.dev/run``). It
is applied once: its id goes into ``started-runs.json`` in the agent's data directory (the local runtime's file)
before the Job is sent, so a restarted agent, or a control plane that still lists the run as queued, never runs it
twice (a Job the TTL removed is not made again). A scheduled task's runs are the Jobs its CronJob spawns (owned by
the CronJob); each is reported as a run of trigger ``schedule`` with an id derived from the Job's uid
(``run_`` and 16 hex digits of its SHA-256: the contract's shape), so the same Job always gives the same id.

``RunBook`` keeps, in ``kube-runs.json`` beside it, the runs being followed and the state last told for each, so a
restarted agent tells the end of a run it told the start of, and nothing twice. Finished runs are kept for
``KEEP_FINISHED`` seconds (as long as their Job may still be listed), then dropped. Cost: a small JSON file
rewritten when a run's told state changes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cellplane.dataplane.localstate import read_json, write_json
from cellplane.kubernetes import names

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
