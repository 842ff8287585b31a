"""Git push webhooks: a per-component secret, and the endpoint a git host calls.

The endpoint takes no token: a delivery is accepted only when its ``X-Hub-Signature-256`` header
(GitHub's format, ``sha256=<hex HMAC-SHA256 of the raw body>``) matches the component's secret. A push
to the branch the component builds, with auto-build on, queues a build of exactly the pushed commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from typing import Any

from fastapi import Header, Request
from sqlalchemy import select

from cellplane.controlplane import builds, resources
from cellplane.controlplane.api import schemas
from cellplane.controlplane.api.builds import settings, wake
from cellplane.controlplane.api.declare import COMPONENT_SUBJECT, PROJECT, Call, requires
from cellplane.controlplane.api.deps import NamePath, Work, audited, platform
from cellplane.controlplane.api.routing import API_PREFIX, api_router
from cellplane.controlplane.config import webhook_context
from cellplane.controlplane.rbac import Principal
from cellplane.errors import CellplaneError, FieldProblem, InvalidError, UnauthorizedError
from cellplane.store.tables import WebhookSecretRow

router = api_router(tags=["webhooks"])
COMPONENT = "/organizations/{org}/projects/{project}/components/{component}/webhook"
HOOK = "/hooks/git/{org}/{project}/{component}"
WEBHOOK_ACTOR = Principal(user="webhook")


def hook_path(org: str, project: str, component: str) -> str:
    return API_PREFIX + HOOK.format(org=org, project=project, component=component)


def _secret_row(s: Any, org: str, project: str, component: str) -> WebhookSecretRow | None:
    return s.scalars(select(WebhookSecretRow).where(
        WebhookSecretRow.organization == org, WebhookSecretRow.project == project,
        WebhookSecretRow.component == component)).first()


def _info(org: str, project: str, component: Any, row: WebhookSecretRow | None) -> dict[str, Any]:
    out: dict[str, Any] = {"url": hook_path(org, project, component.name), "configured": row is not None,
                           "autoBuild": bool(((component.spec or {}).get("build") or {}).get("autoBuild"))}
    if row is not None:
        out["createdAt"] = row.created_at.isoformat()
    return out


@router.read(COMPONENT, requires("components:get"), PROJECT, response_model=schemas.WebhookInfo,
             response_model_exclude_unset=True)
def show_webhook(c: Call[None], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    s = c.session
    row = resources.get_component(s, org, project, component)
    return _info(org, project, row, _secret_row(s, org, project, component))


@router.mutation("PUT", COMPONENT, requires("components:update"), PROJECT, action="webhook.rotate",
                 subject=COMPONENT_SUBJECT, response_model=schemas.WebhookInfo, response_model_exclude_unset=True)
def rotate_webhook(c: Call[None], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    """Create (or replace) the component's webhook secret; the secret is in this answer only."""
    s, who = c.session, c.who
    row = resources.get_component(s, org, project, component)
    secret = "whsec_" + secrets.token_urlsafe(32)
    sealed = c.platform.keyring.encrypt(secret, webhook_context(org, project, component))
    hook = _secret_row(s, org, project, component)
    if hook is None:
        hook = WebhookSecretRow(organization=org, project=project, component=component, secret=sealed,
                                created_by=who.user)
        s.add(hook)
    else:
        hook.secret, hook.created_by, hook.created_at = sealed, who.user, builds.now()
    s.flush()
    return {**_info(org, project, row, hook), "secret": secret}


@router.mutation("DELETE", COMPONENT, requires("components:update"), PROJECT, action="webhook.delete",
                 subject=COMPONENT_SUBJECT, response_model=schemas.Deleted, response_model_exclude_unset=True)
def delete_webhook(c: Call[None], org: NamePath, project: NamePath, component: NamePath) -> dict[str, Any]:
    resources.get_component(c.session, org, project, component)
    hook = _secret_row(c.session, org, project, component)
    if hook is not None:
        c.session.delete(hook)
    return {"deleted": "webhook"}


def _verify(secret: str, body: bytes, signature: str | None) -> bool:
    if not signature or not signature.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


@router.post(HOOK, response_model=schemas.WebhookDelivery, response_model_exclude_unset=True,
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}})
async def git_push(request: Request, org: NamePath, project: NamePath, component: NamePath,
                   x_hub_signature_256: str | None = Header(None, max_length=200),
                   x_github_event: str | None = Header(None, max_length=100)) -> dict[str, Any]:
    """A git host's push event (GitHub's format). Signed with the component's webhook secret."""
    p = platform(request)
    body = await request.body()
    work = Work("build.webhook", "Component", org, project, component)

    def deliver() -> dict[str, Any]:
        with audited(p, WEBHOOK_ACTOR, work) as s:
            hook = _secret_row(s, org, project, component)
            secret = p.keyring.decrypt(hook.secret, webhook_context(org, project, component)) if hook else None
            if secret is None or not _verify(secret, body, x_hub_signature_256):
                raise UnauthorizedError(
                    "the X-Hub-Signature-256 header does not match this component's webhook secret",
                    [FieldProblem("header.X-Hub-Signature-256", "missing or wrong signature")])
            if (x_github_event or "push") == "ping":
                work.message = "ping"
                return {"queued": False, "reason": "pong: the webhook is configured"}
            if x_github_event not in (None, "push"):
                work.message = f"ignored {x_github_event} event"
                return {"queued": False, "reason": f"'{x_github_event}' events are ignored; only push builds"}
            event = _parse(body)
            row = resources.get_component(s, org, project, component)
            reason = _ignored(row.spec or {}, event)
            if reason:
                work.message = reason
                return {"queued": False, "reason": reason}
            build = builds.create(s, row, actor="webhook", trigger="webhook", track=event["branch"],
                                  ref=event["commit"], timeout=settings(request).timeout)
            work.message = f"build {build.id} #{build.number} of {event['branch']}@{event['commit'][:12]}"
            return {"queued": True, "reason": f"push to {event['branch']}", "build": builds.to_dict(build)}

    result = await asyncio.to_thread(deliver)
    if result["queued"]:
        wake(request)
    return result


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidError("the push event is not JSON", [FieldProblem("body", "not JSON")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("ref"), str):
        raise InvalidError("the push event has no ref", [FieldProblem("body.ref", "required")])
    after = data.get("after") if isinstance(data.get("after"), str) else ""
    given = data.get("repository")
    repo: dict[str, Any] = given if isinstance(given, dict) else {}
    branch = data["ref"].removeprefix("refs/heads/") if data["ref"].startswith("refs/heads/") else None
    return {"branch": branch, "ref": data["ref"], "commit": after, "deleted": bool(data.get("deleted")),
            "default": repo.get("default_branch") if isinstance(repo.get("default_branch"), str) else None}


def _ignored(spec: dict[str, Any], event: dict[str, Any]) -> str | None:
    build = spec.get("build") or {}
    if not build.get("autoBuild"):
        return "auto-build is off for this component (spec.build.autoBuild)"
    if event["branch"] is None:
        return f"{event['ref']} is not a branch; only branch pushes build"
    if event["deleted"] or not event["commit"] or set(event["commit"]) == {"0"}:
        return f"branch {event['branch']} was deleted"
    wanted = (spec.get("source") or {}).get("branch") or event["default"]
    if wanted and event["branch"] != wanted:
        return f"push to {event['branch']}; this component builds {wanted}"
    try:
        builds.check_ref(event["commit"], "body.after")
        builds.check_track(event["branch"], "body.ref")
    except CellplaneError:
        return "the push names a branch or commit that is not valid"
    return None
