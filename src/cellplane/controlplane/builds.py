"""Builds as the control plane records them: requests, the state machine, logs and artifacts.

States: queued → running → succeeded | failed | cancelled | timed-out. A queued build is claimed by
one worker (an atomic update, so replicas sharing a database never run it twice); a running build
is cancelled by flagging it, which its worker notices within a second.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cellplane.controlplane import blobs, tracks
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError
from cellplane.store import rowcount
from cellplane.store.tables import ArtifactRow, BuildLogRow, BuildRow, ResourceRow, WebhookSecretRow

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "timed-out")
TERMINAL = ("succeeded", "failed", "cancelled", "timed-out")
TRACK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
MAX_LOG_LINES = 20_000
MAX_LINE = 4000


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return "b-" + secrets.token_hex(6)


def check_track(track: str, field: str = "track") -> None:
    if not TRACK.fullmatch(track) or ".." in track or track.endswith((".", "/", ".lock")):
        raise InvalidError(f"'{track}' is not a valid track name (a git branch name such as main or release-1.x)",
                           [FieldProblem(field, "letters, digits, '.', '_', '/' and '-', at most 100")])


def check_ref(ref: str, field: str = "ref") -> None:
    if ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref) or len(ref) > 250 or ".." in ref:
        raise InvalidError(f"'{ref}' is not a valid git revision", [FieldProblem(field, "not a branch, tag or commit")])


def source_for(component: ResourceRow, track: str | None, ref: str | None, upload: str | None) -> dict[str, Any]:
    """What a build of ``component`` fetches: its uploaded archive, or its repository at the track or ref."""
    spec_source = (component.spec or {}).get("source") or {}
    if upload:
        return {"kind": "archive", "path": "."}
    repository = spec_source.get("repository")
    if not repository:
        raise InvalidError(
            f"component '{component.name}' has no source.repository to build from; set one, "
            "or upload a directory (cellplane build COMPONENT --source DIR)",
            [FieldProblem("source.repository", "required to build without an upload")])
    branch = spec_source.get("branch")
    if track and track != "default":
        branch = track
    return {"kind": "git", "repository": repository, "branch": None if ref else branch,
            "ref": ref or (None if track and track != "default" else spec_source.get("ref")),
            "path": spec_source.get("path") or "."}


def default_track(component: ResourceRow) -> str:
    return tracks.default_track(component.spec or {})


def create(s: Session, component: ResourceRow, *, actor: str, trigger: str, track: str | None = None,
           ref: str | None = None, upload: str | None = None, timeout: int = 900) -> BuildRow:
    if track:
        check_track(track)
    if ref:
        check_ref(ref)
    source = source_for(component, track, ref, upload)
    number = (s.scalar(select(func.max(BuildRow.number)).where(
        BuildRow.organization == component.organization, BuildRow.project == component.project,
        BuildRow.component == component.name)) or 0) + 1
    spec_timeout = ((component.spec or {}).get("build") or {}).get("timeoutSeconds")
    row = BuildRow(id=new_id(), organization=component.organization, project=component.project,
                   component=component.name, number=number, track=track or default_track(component),
                   source=source, trigger=trigger, requested_by=actor, state="queued",
                   timeout_seconds=int(spec_timeout or timeout), upload=upload, created_at=now())
    s.add(row)
    s.flush()
    return row


def get(s: Session, organization: str, build_id: str) -> BuildRow:
    row = s.get(BuildRow, build_id)
    if row is None or row.organization != organization:
        raise NotFoundError(f"build '{build_id}' not found in organization '{organization}'",
                            [FieldProblem("build", "not found")])
    return row


def list_for(s: Session, organization: str, project: str, component: str, limit: int,
             before: int | None = None, state: str | None = None) -> list[BuildRow]:
    q = select(BuildRow).where(BuildRow.organization == organization, BuildRow.project == project,
                               BuildRow.component == component)
    if before is not None:
        q = q.where(BuildRow.number < before)
    if state:
        q = q.where(BuildRow.state == state)
    return list(s.scalars(q.order_by(BuildRow.number.desc()).limit(limit)))


def cancel(s: Session, row: BuildRow) -> BuildRow:
    if row.state in TERMINAL:
        raise ConflictError(f"build {row.id} already {row.state}", [FieldProblem("state", row.state)])
    if row.state == "queued":
        row.state, row.finished_at, row.error = "cancelled", now(), "cancelled before it started"
        if row.upload:  # the uploaded source will never be built
            release_upload(s, row)
    else:
        row.cancel_requested = True
    return row


def claim(s: Session, worker: str) -> BuildRow | None:
    """Take the oldest queued build for ``worker``; None when there is none (or another worker won the race)."""
    candidate = s.scalars(select(BuildRow).where(BuildRow.state == "queued")
                          .order_by(BuildRow.created_at).limit(1)).first()
    if candidate is None:
        return None
    t = now()
    won = rowcount(s.execute(update(BuildRow).where(BuildRow.id == candidate.id, BuildRow.state == "queued")
                    .values(state="running", worker=worker, started_at=t, heartbeat_at=t)))
    if not won:
        return None
    s.refresh(candidate)
    return candidate


def reap_stale(s: Session, older_than: float = 60) -> list[str]:
    """Running builds whose worker stopped beating (a replica that died) are marked failed."""
    limit = now() - timedelta(seconds=older_than)
    rows = list(s.scalars(select(BuildRow).where(BuildRow.state == "running", BuildRow.heartbeat_at < limit)))
    for row in rows:
        finish(row, "failed", f"the worker running this build ({row.worker}) stopped responding")
    return [r.id for r in rows]


def finish(row: BuildRow, state: str, error: str = "") -> None:
    row.state, row.finished_at, row.error = state, now(), error
    for step in row.steps or []:
        if step.get("state") == "running":
            step["state"] = "failed" if state != "succeeded" else "succeeded"


def add_logs(s: Session, build_id: str, first_seq: int, lines: list[tuple[str, str]]) -> int:
    """Append (step, line) pairs; returns the next sequence number. Lines past the cap are dropped."""
    seq = first_seq
    for step, line in lines:
        if seq >= MAX_LOG_LINES:
            if seq == MAX_LOG_LINES:
                s.add(BuildLogRow(build_id=build_id, seq=seq, step=step, line="... (log truncated)"))
                seq += 1
            break
        s.add(BuildLogRow(build_id=build_id, seq=seq, step=step, line=line[:MAX_LINE]))
        seq += 1
    return seq


def logs(s: Session, build_id: str, after: int = -1, limit: int = 1000) -> list[BuildLogRow]:
    return list(s.scalars(select(BuildLogRow).where(BuildLogRow.build_id == build_id, BuildLogRow.seq > after)
                          .order_by(BuildLogRow.seq).limit(limit)))


def record_artifact(s: Session, row: BuildRow, digest: str, manifest: dict[str, Any]) -> None:
    exists = s.scalar(select(ArtifactRow.id).where(ArtifactRow.organization == row.organization,
                                                   ArtifactRow.project == row.project, ArtifactRow.digest == digest))
    if exists is None:
        s.add(ArtifactRow(organization=row.organization, project=row.project, digest=digest, manifest=manifest))
    row.artifact = digest


def artifact(s: Session, organization: str, project: str, digest: str) -> ArtifactRow:
    row = s.scalars(select(ArtifactRow).where(ArtifactRow.organization == organization,
                                              ArtifactRow.project == project, ArtifactRow.digest == digest)).first()
    if row is None:
        raise NotFoundError(f"artifact {digest} not found in project '{organization}/{project}'",
                            [FieldProblem("digest", "not found")])
    return row


def forget(s: Session, organization: str, project: str | None = None, component: str | None = None) -> None:
    """Delete the builds (and, for a whole project or organization, the artifacts) of what is being deleted."""
    where = [BuildRow.organization == organization]
    hooks = [WebhookSecretRow.organization == organization]
    if project is not None:
        where.append(BuildRow.project == project)
        hooks.append(WebhookSecretRow.project == project)
    if component is not None:
        where.append(BuildRow.component == component)
        hooks.append(WebhookSecretRow.component == component)
    uploads = [u for u in s.scalars(select(BuildRow.upload).where(*where, BuildRow.upload.is_not(None)))
               if u is not None]
    ids = select(BuildRow.id).where(*where).scalar_subquery()
    s.execute(delete(BuildLogRow).where(BuildLogRow.build_id.in_(ids)))
    s.execute(delete(BuildRow).where(*where))
    s.execute(delete(WebhookSecretRow).where(*hooks))
    if component is None:
        arts = [ArtifactRow.organization == organization] + ([ArtifactRow.project == project] if project else [])
        s.execute(delete(ArtifactRow).where(*arts))
    for digest in set(uploads):
        _drop_unused_upload(s, digest)


def release_upload(s: Session, row: BuildRow) -> None:
    """The build no longer needs its uploaded source; the blob goes when no other build holds the same one
    (uploads are content-addressed: the same archive uploaded for two builds is one blob)."""
    digest, row.upload = row.upload, None
    s.flush()
    if digest:
        _drop_unused_upload(s, digest)


def _drop_unused_upload(s: Session, digest: str) -> None:
    if s.scalar(select(func.count()).select_from(BuildRow).where(BuildRow.upload == digest)) == 0:
        blobs.remove(s, digest)


def to_dict(row: BuildRow) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    end = row.finished_at or (now() if row.started_at else None)
    duration = round((end - row.started_at).total_seconds(), 3) if row.started_at and end else None
    source = {k: v for k, v in (row.source or {}).items() if v is not None}
    summary: dict[str, int] = {}
    for f in row.findings or []:
        summary[f.get("kind", "?")] = summary.get(f.get("kind", "?"), 0) + 1
    return {
        "id": row.id, "number": row.number, "organization": row.organization, "project": row.project,
        "component": row.component, "track": row.track, "state": row.state, "trigger": row.trigger,
        "requestedBy": row.requested_by, "source": source, "commit": row.commit,
        "createdAt": iso(row.created_at), "startedAt": iso(row.started_at), "finishedAt": iso(row.finished_at),
        "durationSeconds": duration, "timeoutSeconds": row.timeout_seconds,
        "cancelRequested": row.cancel_requested, "detection": row.detection or {}, "steps": row.steps or [],
        "findings": row.findings or [], "findingCounts": summary, "artifact": row.artifact, "image": row.image or None,
        "error": row.error or None,
    }
