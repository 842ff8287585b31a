"""Releases: immutable snapshots of (artifact, component spec, configuration) made for one environment and track.

A release's id is taken from its digest ('r' and 12 hex digits): the same artifact, spec and configuration for
the same slot is the same release, so deploying it again changes nothing. Secret configuration values are
copied into the release encrypted with the key ring (bound to the release and key), so that a rollback restores
them even after they were changed. A deployment's history is its release events: which release became the one
it runs, when, by whom and how (deploy, promote, rollback, approval, configuration change).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cellplane.canonical import digest
from cellplane.controlplane import config
from cellplane.controlplane.keyring import MASK, KeyRing
from cellplane.errors import ConflictError, FieldProblem, NotFoundError
from cellplane.store.scope import delete_scoped
from cellplane.store.tables import BuildRow, DeploymentRow, ReleaseEventRow, ReleaseRow, now

# Spec fields that do not change what runs: they are kept in the release (for diffs) but not in its digest.
# Left out of a release's digest: what does not change how the release runs, or (scaling, like tracks) what the
# desired state reads from the component's current spec instead, so that changing it makes no new release.
RELEASE_EXCLUDED = ("source", "build", "displayName", "description", "configuration", "tracks", "scaling")
ID_LENGTHS = (12, 19)  # hex digits of the digest in a release id ('r' + 12; the column holds 20 characters)


def secret_context(release_id: str, key: str) -> str:
    return f"release\0{release_id}\0{key}"


def runtime_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in RELEASE_EXCLUDED}


@dataclass(frozen=True)
class Slot:
    """Where a release runs: one track of a component in one environment (what a deployment, its release events and
    its approval requests are keyed by). Its fields, in this order, are part of every release's digest."""

    organization: str
    project: str
    component: str
    environment: str
    track: str

    def describe(self) -> str:
        track = "" if self.track == "default" else f" (track {self.track})"
        return f"{self.project}/{self.component}{track} in {self.environment}"


def make(s: Session, keyring: KeyRing, slot: Slot, *, build_id: str, artifact: str, spec: dict[str, Any],
         origin: str, actor: str) -> ReleaseRow:
    """The release of ``artifact`` with ``spec`` and the configuration ``slot``'s environment has now: an existing
    one when nothing differs, else a new one."""
    resolved = config.resolve(s, keyring, slot.organization, slot.project, slot.component, spec,
                              slot.environment)
    markers = [{"key": v.key, "secret": True, "ref": list(v.ref or ())} if v.secret
               else {"key": v.key, "secret": False, "value": v.value} for v in resolved]
    release_digest = digest({"place": slot.__dict__, "artifact": artifact, "spec": runtime_spec(spec),
                             "declared": spec.get("configuration"), "configuration": markers})
    build = s.get(BuildRow, build_id)
    image = build.image if build is not None and build.artifact == artifact else None
    release_id = ""
    for length in ID_LENGTHS:  # a short id; a longer one in the unlikely case that the short one is taken
        release_id = "r" + release_digest[:length]
        existing = s.get(ReleaseRow, release_id)
        if existing is None:
            break
        if existing.digest == release_digest:
            if existing.image is None and image is not None:  # made before the image was: the same artifact's
                existing.image = image
            return existing
    else:
        raise ConflictError(f"release id {release_id} is taken by another release", code="release-id-taken")
    configuration = []
    for v, marker in zip(resolved, markers, strict=True):
        item = dict(marker)
        if v.secret:
            item["cipher"] = keyring.encrypt(v.reveal(), secret_context(release_id, v.key))
        configuration.append(item)
    row = ReleaseRow(id=release_id, organization=slot.organization, project=slot.project,
                     component=slot.component, environment=slot.environment, track=slot.track,
                     build_id=build_id, artifact=artifact, image=image, spec=spec, configuration=configuration,
                     digest=release_digest, origin=origin, created_by=actor, created_at=now())
    try:
        with s.begin_nested():  # a concurrent transaction may make the same release first: then it is that one
            s.add(row)
    except IntegrityError:
        existing = s.get(ReleaseRow, release_id)
        if existing is None or existing.digest != release_digest:
            raise
        return existing
    return row


def of_deployment(s: Session, keyring: KeyRing, dep: DeploymentRow, spec: dict[str, Any]) -> ReleaseRow:
    """The deployment's release (one is made, from the component's spec, for a deployment older than releases)."""
    if dep.release_id is not None:
        row = s.get(ReleaseRow, dep.release_id)
        if row is not None:
            return row
    where = Slot(dep.organization, dep.project, dep.component, dep.environment, dep.track)
    release = make(s, keyring, where, build_id=dep.build_id, artifact=dep.artifact, spec=dict(spec),
                   origin="the deployment as it was before releases", actor="system")
    dep.release_id = release.id
    record(s, where, release, "deploy", dep.requested_by or "system", "recorded on upgrade")
    return release


def reveal(keyring: KeyRing, release: ReleaseRow, item: dict[str, Any]) -> str:
    """A configuration value of the release in plaintext (decrypting a secret: only for sealing)."""
    if item.get("secret"):
        return keyring.decrypt(item["cipher"], secret_context(release.id, item["key"]))
    return str(item.get("value") or "")


def get(s: Session, org: str, release_id: str, field_path: str = "release") -> ReleaseRow:
    row = s.get(ReleaseRow, release_id)
    if row is None or row.organization != org:
        raise NotFoundError(f"release '{release_id}' not found in organization '{org}'",
                            [FieldProblem(field_path, "no such release")])
    return row


def record(s: Session, slot: Slot, release: ReleaseRow, action: str, actor: str, note: str = "") -> None:
    s.add(ReleaseEventRow(organization=slot.organization, project=slot.project, component=slot.component,
                          environment=slot.environment, track=slot.track, release_id=release.id, action=action,
                          actor=actor, at=now(), note=note))
    s.flush()


def history(s: Session, org: str, project: str, component: str, env: str | None = None,
            track: str | None = None, limit: int = 100,
            environments: Collection[str] | None = None) -> list[ReleaseEventRow]:
    """The component's release events, newest first; only those of ``environments`` when given (the ones the
    caller may read), so that ``limit`` counts readable events."""
    q = select(ReleaseEventRow).where(ReleaseEventRow.organization == org, ReleaseEventRow.project == project,
                                      ReleaseEventRow.component == component)
    if env is not None:
        q = q.where(ReleaseEventRow.environment == env)
    if environments is not None:
        q = q.where(ReleaseEventRow.environment.in_(sorted(environments)))
    if track is not None:
        q = q.where(ReleaseEventRow.track == track)
    return list(s.scalars(q.order_by(ReleaseEventRow.id.desc()).limit(limit)))


def _at(slot: Slot) -> list[Any]:
    """The conditions selecting the release events of ``slot``."""
    e = ReleaseEventRow
    return [e.organization == slot.organization, e.project == slot.project, e.component == slot.component,
            e.environment == slot.environment, e.track == slot.track]


def previous(s: Session, slot: Slot, current: str | None) -> str | None:
    """The release that ran in ``slot`` before the current one (None when there was none)."""
    events = s.scalars(select(ReleaseEventRow.release_id).where(*_at(slot)).order_by(ReleaseEventRow.id.desc()))
    return next((r for r in events if r != current), None)


def ran_in(s: Session, slot: Slot, release_id: str) -> bool:
    return s.scalar(select(ReleaseEventRow.id).where(*_at(slot), ReleaseEventRow.release_id == release_id)
                    .limit(1)) is not None


def forget(s: Session, organization: str, project: str | None = None, component: str | None = None,
           environment: str | None = None) -> None:
    delete_scoped(s, (ReleaseRow, ReleaseEventRow), organization, project, component, environment)


def rotate(s: Session, keyring: KeyRing, budget: int) -> int:
    """Re-encrypt release secrets held under an older key, at most ``budget`` releases; returns how many."""
    done = 0
    for row in s.scalars(select(ReleaseRow).order_by(ReleaseRow.id)).all():
        if done >= budget:
            break
        items = row.configuration or []
        if not any(i.get("secret") and keyring.key_id_of(i["cipher"]) != keyring.primary_id for i in items):
            continue
        fresh = []
        for item in items:
            if item.get("secret"):
                ctx = secret_context(row.id, item["key"])
                item = {**item, "cipher": keyring.encrypt(keyring.decrypt(item["cipher"], ctx), ctx)}
            fresh.append(item)
        row.configuration = fresh
        done += 1
    return done


# -- views ----------------------------------------------------------------------------------------------------------


def configuration_view(release: ReleaseRow) -> list[dict[str, Any]]:
    return [{"key": i["key"], "secret": bool(i.get("secret")),
             "value": MASK if i.get("secret") else i.get("value")} for i in release.configuration or []]


def view(release: ReleaseRow, build_number: int | None = None, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": release.id, "organization": release.organization, "project": release.project,
        "component": release.component, "environment": release.environment, "track": release.track,
        "build": {"id": release.build_id, "number": build_number}, "artifact": release.artifact,
        "origin": release.origin, "createdBy": release.created_by, "createdAt": release.created_at.isoformat(),
    }
    if release.image:
        out["image"] = release.image["reference"]
    if detail:
        out["spec"] = release.spec
        out["configuration"] = configuration_view(release)
    return out


def event_view(event: ReleaseEventRow, release: ReleaseRow | None, build_number: int | None,
               current: bool) -> dict[str, Any]:
    return {
        "release": event.release_id, "environment": event.environment, "track": event.track,
        "action": event.action, "actor": event.actor, "at": event.at.isoformat(), "note": event.note,
        "artifact": release.artifact if release else None,
        "build": {"id": release.build_id if release else None, "number": build_number},
        "origin": release.origin if release else "", "current": current,
        **({"image": release.image["reference"]} if release is not None and release.image else {}),
    }


def diff(a: ReleaseRow, b: ReleaseRow) -> dict[str, Any]:
    """What differs from release ``a`` to release ``b``: the artifact, spec fields (by path) and configuration
    keys. A secret's value is never shown: only that it changed."""
    spec_changes: list[dict[str, Any]] = []
    _diff_values("spec", a.spec or {}, b.spec or {}, spec_changes)
    ca = {i["key"]: i for i in a.configuration or []}
    cb = {i["key"]: i for i in b.configuration or []}
    conf: list[dict[str, Any]] = []
    for key in sorted(set(ca) | set(cb)):
        x, y = ca.get(key), cb.get(key)
        if x is None or y is None:
            item = y if x is None else x
            assert item is not None
            conf.append({"key": key, "change": "added" if x is None else "removed", "secret": bool(item.get("secret")),
                         **({} if item.get("secret") else {"from" if y is None else "to": item.get("value")})})
            continue
        secret = bool(x.get("secret") or y.get("secret"))
        if secret:
            if (x.get("secret"), x.get("ref")) != (y.get("secret"), y.get("ref")):
                conf.append({"key": key, "change": "changed", "secret": True})
        elif x.get("value") != y.get("value"):
            conf.append({"key": key, "change": "changed", "secret": False, "from": x.get("value"),
                         "to": y.get("value")})
    return {"from": a.id, "to": b.id,
            "artifact": None if a.artifact == b.artifact else {"from": a.artifact, "to": b.artifact},
            "environment": None if a.environment == b.environment else {"from": a.environment, "to": b.environment},
            "spec": spec_changes, "configuration": conf}


def _diff_values(path: str, x: Any, y: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y), key=str):
            _diff_values(f"{path}.{k}", x.get(k), y.get(k), out)
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            _diff_values(f"{path}[{i}]", xi, yi, out)
    elif x != y:
        out.append({"path": path, "from": x, "to": y})


def builds_numbers(s: Session, build_ids: set[str]) -> dict[str, int]:
    if not build_ids:
        return {}
    return {i: n for i, n in s.execute(select(BuildRow.id, BuildRow.number).where(BuildRow.id.in_(build_ids)))}
