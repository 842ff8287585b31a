"""Routes for builds: start one (from the repository, or from an uploaded archive), list, show, cancel,
read or follow its logs, and download the artifacts builds produce."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cellplane import digests
from cellplane.build import archive
from cellplane.controlplane import blobs, builds, registries, resources
from cellplane.controlplane.api import ndjson, schemas
from cellplane.controlplane.api.declare import (
    COMPONENT_SUBJECT,
    ORGANIZATION,
    PROJECT,
    Call,
    Subject,
    found,
    looked_up,
    reads,
    requires,
)
from cellplane.controlplane.api.deps import DigestPath, NamePath, Work, audited, require
from cellplane.controlplane.api.routing import api_router
from cellplane.controlplane.rbac import Principal, Target
from cellplane.errors import CellplaneError, FieldProblem, InvalidError
from cellplane.model.document import problems_from

router = api_router(tags=["builds"])
COMPONENT = "/organizations/{org}/projects/{project}/components/{component}"
BUILD = "/organizations/{org}/builds/{build}"
ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar+gzip", "application/octet-stream")
BuildPath = Annotated[str, PathParam(min_length=1, max_length=20, description="a build id (b-...)")]


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="BuildRequest")
    track: schemas.TrackText | None = Field(default=None, max_length=100,
                                            description="deployment track (a branch name)")
    ref: str | None = Field(default=None, max_length=250, description="branch, tag or commit to build")


def settings(request: Request) -> Any:
    return request.app.state.build_settings


def wake(request: Request) -> None:
    workers = getattr(request.app.state, "build_workers", None)
    if workers is not None:
        workers.wake()


async def _receive_archive(request: Request, dest: Path, limit: int) -> None:
    size = 0
    with dest.open("wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise CellplaneError(f"the uploaded archive is larger than {limit >> 20} MiB",
                                     [FieldProblem("archive", "too large")], "too-large", 413)
            f.write(chunk)
    if size == 0:
        raise InvalidError("the upload is empty", [FieldProblem("archive", "empty")])


@router.mutation("POST", COMPONENT + "/builds", requires("builds:create"), PROJECT, action="build.create",
                 subject=COMPONENT_SUBJECT, status_code=201, response_model=schemas.BuildInfo,
                 response_model_exclude_unset=True,
                 openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": BuildRequest.model_json_schema()},
                     "application/gzip": {"schema": {"type": "string", "format": "binary",
                                                     "description": "a .tar.gz of the component's directory"}}}}})
async def start_build(c: Call[None], org: NamePath, project: NamePath, component: NamePath,
                      track: schemas.TrackText | None = Query(None, max_length=100,
                                                              description="with an archive upload"),
                      ) -> dict[str, Any]:
    """Queue a build: of the component's repository (JSON body), or of an uploaded .tar.gz (gzip body)."""
    # The permission was checked (a refusal audited) before anything of a possibly large upload is read.
    p, who, work, request = c.platform, c.who, c.work, c.request
    conf = settings(request)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    ref = None
    (p.data_dir / "tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cellplane-upload-", dir=p.data_dir / "tmp") as tmp:
        upload: Path | None = None
        if content_type in ARCHIVE_TYPES:
            upload = Path(tmp) / "upload.tar.gz"
            try:
                await _receive_archive(request, upload, conf.max_upload_mb << 20)
            except CellplaneError as e:
                await asyncio.to_thread(_audit_failure, p, who, work, e)
                raise
        else:
            body = await request.body()
            try:
                req = BuildRequest.model_validate_json(body or b"{}")
            except ValidationError as e:
                error = InvalidError("invalid build request", problems_from(e))
                await asyncio.to_thread(_audit_failure, p, who, work, error)
                raise error from None
            track, ref = req.track or track, req.ref

        def create() -> dict[str, Any]:
            with audited(p, who, work) as s:
                row = resources.get_component(s, org, project, component)
                digest = None
                if upload:
                    limits = archive.UploadLimits(max_compressed=conf.max_upload_mb << 20)
                    archive.unpack(upload, Path(tmp) / "check", limits)  # refuse a bad archive now, not in the build
                    digest = blobs.put(s, upload)[0]
                build = builds.create(s, row, actor=who.user, trigger="upload" if upload else "api", track=track,
                                      ref=ref, upload=digest, timeout=conf.timeout)
                work.message = f"build {build.id} #{build.number}"
                return builds.to_dict(build)

        result = await asyncio.to_thread(create)
    wake(request)
    return result


@router.read(COMPONENT + "/builds", requires("builds:list"), PROJECT, response_model=schemas.BuildList,
             response_model_exclude_unset=True)
def list_builds(c: Call[None], org: NamePath, project: NamePath, component: NamePath,
                limit: int = Query(20, ge=1, le=500), before: int | None = Query(None, ge=1, le=2**31 - 1),
                state: schemas.BuildState | None = Query(None, description="only builds in this state"),
                ) -> dict[str, Any]:
    s = c.session
    resources.get_component(s, org, project, component)
    rows = builds.list_for(s, org, project, component, limit, before, state)
    out: dict[str, Any] = {"items": [builds.to_dict(r) for r in rows]}
    if len(rows) == limit and rows[-1].number > 1:
        out["before"] = rows[-1].number
    return out


def _build(s: Any, who: Principal, org: str, build_id: str, permission: str) -> Any:
    if not who.member_of(org):
        require(who, permission, Target(org))
    row = builds.get(s, org, build_id)
    require(who, permission, Target(org, row.project))
    return row


def _build_of(c: Call[Any], permission: str) -> Target:
    """The build (after ``permission`` on the organization for a non-member), and its component (audited)."""
    row = c.row = _build(c.session, c.who, c["org"], c["build"], permission)
    c.work.project, c.work.name = row.project, row.component
    return Target(row.organization, row.project)


THE_BUILD = looked_up("the build's project", _build_of)


@router.read(BUILD, requires("builds:get"), THE_BUILD, response_model=schemas.BuildInfo,
             response_model_exclude_unset=True)
def show_build(c: Call[None], org: NamePath, build: BuildPath) -> dict[str, Any]:
    return builds.to_dict(c.row)


@router.mutation("POST", BUILD + "/cancel", requires("builds:cancel"), THE_BUILD,
                 action="build.cancel", subject=Subject("Component", "build", project=""),
                 response_model=schemas.BuildInfo, response_model_exclude_unset=True)
def cancel_build(c: Call[None], org: NamePath, build: BuildPath) -> dict[str, Any]:
    c.work.message = f"build {c.row.id}"
    return builds.to_dict(builds.cancel(c.session, c.row))


def _audit_failure(p: Any, who: Principal, work: Work, error: CellplaneError) -> None:
    with contextlib.suppress(CellplaneError), audited(p, who, work):
        raise error


def _log_item(r: Any) -> dict[str, Any]:
    return {"seq": r.seq, "at": r.at.isoformat(), "step": r.step, "line": r.line}


@router.read(BUILD + "/logs", requires("builds:get"), THE_BUILD, response_model=schemas.BuildLogs,
             response_model_exclude_unset=True, responses={200: {"content": {"application/x-ndjson": {}}}})
async def build_logs(c: Call[None], org: NamePath, build: BuildPath,
                     after: int = Query(-1, ge=-1, le=2**31 - 1, description="the last sequence number already seen"),
                     limit: int = Query(1000, ge=1, le=10000),
                     follow: bool = Query(False, description="stream new lines (NDJSON) until the build ends"),
                     ) -> Any:
    """A build's log lines; with ``follow``, an NDJSON stream of lines and state changes until the build ends."""
    request = c.request

    def page(after_seq: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        with c.reading() as s:  # the build, looked up and checked again for every page
            return [_log_item(r) for r in builds.logs(s, build, after_seq, limit)], builds.to_dict(c.row)

    items, info = await asyncio.to_thread(page, after)
    if not follow:
        return {"items": items, "state": info["state"], "next": items[-1]["seq"] if items else after}

    async def stream() -> AsyncIterator[bytes]:
        nonlocal items, info
        last, state, steps, quiet = after, None, None, ndjson.Quiet(request)
        while True:
            for item in items:
                yield ndjson.line(item)
                last = item["seq"]
            if (info["state"], info["steps"]) != (state, steps):
                state, steps = info["state"], info["steps"]
                yield ndjson.line({"event": "build", "build": info})
            if info["state"] in builds.TERMINAL and not items:
                return
            if items:
                quiet.spoke()
            else:
                said = await quiet.wait()
                if said is None:
                    return
                if said:
                    yield said
            try:
                items, info = await asyncio.to_thread(page, last)
            except CellplaneError:  # deleted meanwhile
                return

    return StreamingResponse(stream(), media_type="application/x-ndjson")


# -- artifacts ---------------------------------------------------------------------------------------------


@router.read("/organizations/{org}/projects/{project}/artifacts/{digest}", requires("artifacts:get"), PROJECT,
             tags=["artifacts"],
             responses={200: {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the artifact (.tar.gz)"}},
             response_class=Response)
def download_artifact(c: Call[None], org: NamePath, project: NamePath, digest: DigestPath) -> Response:
    """The artifact's bytes; their SHA-256 is the digest (verify it)."""
    s = c.session
    _check_digest(digest)
    builds.artifact(s, org, project, digest)
    size = blobs.size_of(s, digest)
    # sent after the transaction has ended, as before: the answer reads the blob as it goes, in its own
    return StreamingResponse(blobs.stream(c.platform.store, digest), media_type="application/gzip",
                             headers={"Content-Length": str(size), "X-Cellplane-Digest": digest,
                                      "Cache-Control": "public, max-age=31536000, immutable"})


@router.read("/organizations/{org}/projects/{project}/artifacts/{digest}/manifest", requires("artifacts:get"),
             PROJECT, tags=["artifacts"], response_model=schemas.ArtifactManifest, response_model_exclude_unset=True)
def artifact_manifest(c: Call[None], org: NamePath, project: NamePath, digest: DigestPath) -> dict[str, Any]:
    s = c.session
    _check_digest(digest)
    row = builds.artifact(s, org, project, digest)
    return {"digest": row.digest, "size": blobs.size_of(s, digest), "createdAt": row.created_at.isoformat(),
            "manifest": row.manifest}


def _check_digest(digest: str) -> None:
    if not digests.valid(digest):
        raise InvalidError(f"'{digest}' is not a sha256 digest", [FieldProblem("digest", "sha256:<64 hex digits>")])


@router.read("/organizations/{org}/image-signing-key", reads("organizations:get"), found(ORGANIZATION),
             session="transaction", tags=["images"], response_model=schemas.SigningKey)
def image_signing_key(c: Call[None], org: NamePath) -> dict[str, Any]:
    """The public half of the organization's image signing key (made on first use): give it to ``cosign verify
    --key`` or a cluster's policy-controller (docs/images.md)."""
    registries.signing_key_pem(c.session, c.platform.keyring, org, c.who.user)
    return _signing_keys(c, org)


def _signing_keys(c: Call[None], org: str) -> dict[str, Any]:
    keys = registries.signing_keys(c.session, c.platform.keyring, org)
    return {"organization": org, "algorithm": "ecdsa-p256-sha256", "publicKey": keys[0]["publicKey"],
            "keyId": keys[0]["keyId"], "keys": keys}


@router.mutation("POST", "/organizations/{org}/image-signing-key/rotate", requires("organizations:update"),
                 found(ORGANIZATION), action="image-signing-key.rotate", subject=Subject("Organization", "org", ""),
                 tags=["images"], response_model=schemas.SigningKey)
def rotate_image_signing_key(c: Call[None], org: NamePath) -> dict[str, Any]:
    """A new signing key signs every image from now on; the old one's public key is kept (``keys``), so the images
    it signed still verify until it is forgotten (docs/images.md)."""
    new, old = registries.rotate_signing_key(c.session, c.platform.keyring, org, c.who.user)
    c.work.message = f"new key {new}" + (f", {old} kept for verifying" if old else "")
    return _signing_keys(c, org)


@router.mutation("DELETE", "/organizations/{org}/image-signing-key/keys/{key}", requires("organizations:update"),
                 found(ORGANIZATION), action="image-signing-key.forget", subject=Subject("Organization", "org", ""),
                 tags=["images"], response_model=schemas.SigningKey)
def forget_image_signing_key(c: Call[None], org: NamePath,
                             key: Annotated[str, PathParam(max_length=64, description="a kept key's id")]
                             ) -> dict[str, Any]:
    """Stop keeping a retired public key: images signed only with it no longer verify with the listed keys."""
    if not registries.forget_signing_key(c.session, org, key):
        current = registries.signing_keys(c.session, c.platform.keyring, org)
        if current and current[0]["keyId"] == key:
            raise CellplaneError(f"key {key} is the current signing key: rotate first",
                                 [FieldProblem("path.key", "the current key")], "conflict", 409)
        raise CellplaneError(f"key {key} is not a kept signing key of {org}",
                             [FieldProblem("path.key", "no such kept key")], "not-found", 404)
    c.work.message = f"key {key} forgotten"
    return _signing_keys(c, org)
