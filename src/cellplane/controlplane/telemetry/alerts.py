"""Alert rules: a condition on one component's telemetry in one environment, evaluated every few seconds over a
trailing window, and the signed webhook notifications sent when it fires and when it resolves.

A rule is ``ok``, ``pending`` (the condition holds, not yet for ``for`` seconds) or ``firing``. Firing opens an
event (``alert_events``); the first evaluation where the condition no longer holds resolves it. Each event
carries the delivery of its latest notification (firing, then resolved): pending until the webhook answers 2xx,
retried with exponential backoff (5s, 10s, 20s, 40s) and failed after five attempts.

Every control-plane replica runs ``tick``: each rule is evaluated in its own transaction with its row locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions take the write lock at BEGIN), and a notification
is claimed (compare-and-set on its attempt count and due time) before it is sent, so replicas do not fire twice
or send the same attempt twice.

A notification is a POST of a JSON body with ``X-Cellplane-Event`` (alert.firing, alert.resolved, alert.test),
``X-Cellplane-Timestamp`` (unix seconds) and ``X-Cellplane-Signature: sha256=<hex HMAC-SHA256>`` computed with
the rule's webhook secret (its text, UTF-8) over ``timestamp + "." + body``. The secret is returned once, when the
rule is created, and stored encrypted with the key ring.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cellplane.controlplane.keyring import KeyRing
from cellplane.controlplane.telemetry import durations, metrics
from cellplane.errors import ConflictError, FieldProblem, InvalidError, NotFoundError
from cellplane.store import Store, rowcount
from cellplane.store.scope import delete_scoped
from cellplane.store.tables import AlertEventRow, AlertRuleRow, now


class StoreAndKeys(Protocol):
    """What evaluating rules and delivering notifications need: the store and the key ring (the ``Platform`` has
    both; naming it here would make this module depend on the layer that starts it)."""

    @property
    def store(self) -> Store: ...

    @property
    def keyring(self) -> KeyRing: ...


log = logging.getLogger("cellplane.alerts")

METRICS = ("error-rate", "latency", "crash-loop", "task-failures")
STATES = ("ok", "pending", "firing")
PERCENTILES = (50, 95, 99)
DEFAULT_PERCENTILE = 95
WINDOW_RANGE = (10.0, 86400.0)
FOR_RANGE = (0.0, 86400.0)
MAX_WEBHOOK = 2000

SEND_TIMEOUT = 5.0  # seconds per delivery attempt
MAX_ATTEMPTS = 5
BACKOFF = 5.0  # seconds before the second attempt; doubled after each failure
LEASE = 60.0  # seconds a claimed attempt is not claimed again (longer than any attempt takes)
BATCH = 50  # notifications sent per tick at most
PARALLEL = 25  # of which at most this many at once: a tick waits for slow webhooks 2 x SEND_TIMEOUT at most
MAX_ERROR = 500

_ID = re.compile(r"^alr_[0-9a-f]{16}$")


# -- rules ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """A rule as requested, validated: durations in whole seconds."""

    name: str
    environment: str
    metric: str
    threshold: float
    percentile: int | None
    window_seconds: int
    for_seconds: int
    webhook: str


def validate(name: str, environment: str, metric: str, threshold: float, percentile: int | None, window: str,
             for_: str, webhook: str) -> RuleSpec:
    """Check what the request's schema cannot: the metric's threshold and percentile, the durations and the
    webhook URL. Every problem at once, at its field path."""
    problems: list[FieldProblem] = []
    if metric not in METRICS:
        problems.append(FieldProblem("metric", f"one of {', '.join(METRICS)}"))
    if threshold < 0:
        problems.append(FieldProblem("threshold", "must be at least 0"))
    elif metric == "error-rate" and threshold > 100:
        problems.append(FieldProblem("threshold", "an error rate is a percentage: at most 100"))
    if metric == "latency":
        if percentile is None:
            percentile = DEFAULT_PERCENTILE
        elif percentile not in PERCENTILES:
            problems.append(FieldProblem("percentile", "one of 50, 95, 99"))
    elif percentile is not None:
        problems.append(FieldProblem("percentile", "only a latency rule has a percentile"))
    window_seconds = _whole_seconds(window, "window", WINDOW_RANGE, problems)
    for_seconds = _whole_seconds(for_, "for", FOR_RANGE, problems)
    if problem := webhook_problem(webhook):
        problems.append(FieldProblem("webhook", problem))
    if problems:
        raise InvalidError("invalid alert rule", problems)
    return RuleSpec(name, environment, metric, float(threshold), percentile, window_seconds, for_seconds, webhook)


def _whole_seconds(text: str, field: str, bounds: tuple[float, float], problems: list[FieldProblem]) -> int:
    try:
        value = durations.seconds(text, field, *bounds)
    except InvalidError as e:
        problems.extend(e.details or [FieldProblem(field, e.message)])
        return 0
    if value != int(value):
        problems.append(FieldProblem(field, "give whole seconds"))
    return int(value)


def webhook_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (None when it can): an absolute http(s) URL, without credentials."""
    if len(url) > MAX_WEBHOOK:
        return f"at most {MAX_WEBHOOK} characters"
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "an http:// or https:// URL without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"not a valid URL ({e})"
    if parts.scheme not in ("http", "https"):
        return "an http:// or https:// URL"
    if not parts.hostname:
        return "an absolute URL with a host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "no credentials in the URL (user:password@): check notifications with the webhook secret instead"
    if port == 0:
        return "not a valid port"
    return None


def new_secret() -> str:
    """32 random bytes as URL-safe base64 text (43 characters)."""
    return secrets.token_urlsafe(32)


def secret_context(rule_id: str) -> str:
    """Associated data binding a webhook secret's ciphertext to its rule."""
    return "alert\0" + rule_id


def create(s: Session, keyring: KeyRing, org: str, project: str, component: str, spec: RuleSpec,
           actor: str) -> tuple[AlertRuleRow, str]:
    """Store a rule (ok, not evaluated yet); returns it and its webhook secret in plain text (shown once)."""
    if find(s, org, project, component, spec.environment, spec.name) is not None:
        raise ConflictError(f"alert rule '{spec.name}' already exists for '{project}/{component}' in "
                            f"'{spec.environment}'", [FieldProblem("name", "already exists")])
    rule_id = "alr_" + secrets.token_hex(8)
    secret = new_secret()
    row = AlertRuleRow(id=rule_id, organization=org, project=project, component=component,
                       environment=spec.environment, name=spec.name, metric=spec.metric, threshold=spec.threshold,
                       percentile=spec.percentile, window_seconds=spec.window_seconds, for_seconds=spec.for_seconds,
                       webhook=spec.webhook, secret=keyring.encrypt(secret, secret_context(rule_id)), state="ok",
                       since=None, value=None, evaluated_at=None, created_by=actor, created_at=now())
    s.add(row)
    s.flush()
    return row, secret


def find(s: Session, org: str, project: str, component: str, environment: str, name: str) -> AlertRuleRow | None:
    return s.scalar(select(AlertRuleRow).where(
        AlertRuleRow.organization == org, AlertRuleRow.project == project, AlertRuleRow.component == component,
        AlertRuleRow.environment == environment, AlertRuleRow.name == name))


def get(s: Session, org: str, rule_id: str, field_path: str = "path.alert") -> AlertRuleRow:
    row = s.get(AlertRuleRow, rule_id) if _ID.fullmatch(rule_id) else None
    if row is None or row.organization != org:
        raise NotFoundError(f"alert rule '{rule_id}' not found in organization '{org}'",
                            [FieldProblem(field_path, "no such alert rule")])
    return row


def list_rules(s: Session, org: str, project: str | None = None, component: str | None = None,
               environment: str | None = None, state: str | None = None) -> list[AlertRuleRow]:
    q = select(AlertRuleRow).where(AlertRuleRow.organization == org)
    for column, value in ((AlertRuleRow.project, project), (AlertRuleRow.component, component),
                          (AlertRuleRow.environment, environment), (AlertRuleRow.state, state)):
        if value is not None:
            q = q.where(column == value)
    order = (AlertRuleRow.project, AlertRuleRow.component, AlertRuleRow.environment, AlertRuleRow.name)
    return list(s.scalars(q.order_by(*order)))


def remove(s: Session, row: AlertRuleRow) -> None:
    """Delete a rule and its history (notifications not yet delivered are dropped)."""
    s.execute(delete(AlertEventRow).where(AlertEventRow.rule_id == row.id))
    s.delete(row)
    s.flush()


def events(s: Session, rule_id: str, limit: int = 50) -> list[AlertEventRow]:
    """The rule's events, newest first."""
    return list(s.scalars(select(AlertEventRow).where(AlertEventRow.rule_id == rule_id)
                          .order_by(AlertEventRow.id.desc()).limit(limit)))


def forget(s: Session, organization: str, project: str | None = None, component: str | None = None,
           environment: str | None = None) -> None:
    """Delete the rules and events of what is being deleted."""
    delete_scoped(s, (AlertEventRow, AlertRuleRow), organization, project, component, environment)


def rotate(s: Session, keyring: KeyRing, budget: int) -> int:
    """Re-encrypt webhook secrets held under an older key, at most ``budget``; returns how many."""
    done = 0
    for row in s.scalars(select(AlertRuleRow).order_by(AlertRuleRow.id)).all():
        if done >= budget:
            break
        if keyring.key_id_of(row.secret) != keyring.primary_id:
            ctx = secret_context(row.id)
            row.secret = keyring.encrypt(keyring.decrypt(row.secret, ctx), ctx)
            done += 1
    return done


# -- views ----------------------------------------------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def expire(s: Session, before: datetime) -> int:
    """Delete events resolved before ``before`` (the history of a rule that flaps stays bounded by age)."""
    return rowcount(s.execute(delete(AlertEventRow).where(AlertEventRow.resolved_at < before))) or 0


def masked(url: str) -> str:
    """A webhook URL without its path and query: chat webhooks carry their credential there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") or parts.query else url


def rule_view(row: AlertRuleRow, reveal: bool = False) -> dict[str, Any]:
    """A rule as the API shows it: never its secret, and its webhook's path only to those who may change it
    (``reveal``)."""
    return {"id": row.id, "name": row.name, "project": row.project, "component": row.component,
            "environment": row.environment, "metric": row.metric, "threshold": row.threshold,
            "percentile": row.percentile, "window": durations.show(row.window_seconds),
            "for": durations.show(row.for_seconds), "webhook": row.webhook if reveal else masked(row.webhook),
            "state": row.state,
            "since": _iso(row.since), "value": row.value, "createdBy": row.created_by,
            "createdAt": row.created_at.isoformat()}


def event_view(row: AlertEventRow) -> dict[str, Any]:
    return {"id": row.id, "rule": row.rule_id, "state": row.state, "firedAt": row.fired_at.isoformat(),
            "resolvedAt": _iso(row.resolved_at), "value": row.value, "message": row.message,
            "delivery": {"state": row.delivery_state, "attempts": row.attempts, "lastError": row.last_error or None}}


# -- evaluation -----------------------------------------------------------------------------------------------------


def measure(s: Session, rule: AlertRuleRow, at: datetime) -> float | None:
    """The rule's metric over the trailing window ending at ``at`` (None when there is nothing to measure)."""
    start = at - timedelta(seconds=rule.window_seconds)
    key = (rule.organization, rule.project, rule.component, rule.environment, start, at)
    # windows that ENDED in the trailing window count: a data plane sends a window once it has ended
    if rule.metric == "error-rate":
        totals = metrics.totals(s, *key, by_end=True)
        return round(totals.errors / totals.requests * 100, 4) if totals.requests else None
    if rule.metric == "latency":
        totals = metrics.totals(s, *key, by_end=True)
        return totals.quantile_ms((rule.percentile or DEFAULT_PERCENTILE) / 100)
    if rule.metric == "crash-loop":
        return float(metrics.restarts(s, *key, by_end=True))
    if rule.metric == "task-failures":
        return float(metrics.task_runs(s, *key)["failed"])
    return None


def _number(value: float) -> str:
    return f"{round(value, 2):g}"


def _what(rule: AlertRuleRow) -> str:
    if rule.metric == "latency":
        return f"p{rule.percentile or DEFAULT_PERCENTILE} latency"
    return {"error-rate": "error rate", "crash-loop": "restarts", "task-failures": "failed task runs"}[rule.metric]


def _bound(rule: AlertRuleRow) -> str:
    """' > 5% over 1m for 5m'."""
    unit = {"error-rate": "%", "latency": "ms"}.get(rule.metric, "")
    text = f" > {_number(rule.threshold)}{unit} over {durations.show(rule.window_seconds)}"
    return text + (f" for {durations.show(rule.for_seconds)}" if rule.for_seconds else "")


def condition(rule: AlertRuleRow) -> str:
    """'error rate > 5% over 1m for 5m'."""
    return _what(rule) + _bound(rule)


def message(rule: AlertRuleRow, value: float | None) -> str:
    """'error rate 12.5% > 5% over 1m for 5m'."""
    if value is None:
        shown = "none (no requests)"
    else:
        shown = _number(value) + {"error-rate": "%", "latency": "ms"}.get(rule.metric, "")
    return f"{_what(rule)} {shown}{_bound(rule)}"


def evaluate(s: Session, rule_id: str, at: datetime | None = None) -> str | None:
    """Evaluate one rule (its row locked for the transaction); returns its state afterwards (None when gone)."""
    at = at or now()
    rule = s.scalar(select(AlertRuleRow).where(AlertRuleRow.id == rule_id).with_for_update())
    if rule is None:
        return None
    value = measure(s, rule, at)
    holds = value is not None and value > rule.threshold
    rule.value, rule.evaluated_at = value, at
    if rule.state == "firing":
        if not holds:
            _resolve(s, rule, at)
    elif holds:
        if rule.state != "pending" or rule.since is None:
            rule.state, rule.since = "pending", at
        if (at - rule.since).total_seconds() >= rule.for_seconds:
            _fire(s, rule, at, value)
    elif rule.state == "pending":
        rule.state, rule.since = "ok", at
    s.flush()
    return rule.state


def _open_event(s: Session, rule_id: str) -> AlertEventRow | None:
    return s.scalar(select(AlertEventRow).where(AlertEventRow.rule_id == rule_id, AlertEventRow.state == "firing")
                    .order_by(AlertEventRow.id.desc()).limit(1))


def _fire(s: Session, rule: AlertRuleRow, at: datetime, value: float | None) -> None:
    rule.state, rule.since = "firing", at
    if _open_event(s, rule.id) is not None:  # already open (should not happen): one event per firing
        return
    s.add(AlertEventRow(rule_id=rule.id, organization=rule.organization, project=rule.project,
                        component=rule.component, environment=rule.environment, state="firing", fired_at=at,
                        resolved_at=None, value=value, message=message(rule, value), delivery_state="pending",
                        attempts=0, last_error="", next_attempt_at=at))
    log.info("alert %s (%s/%s in %s, %s) firing: %s", rule.id, rule.project, rule.component, rule.environment,
             rule.name, message(rule, value))


def _resolve(s: Session, rule: AlertRuleRow, at: datetime) -> None:
    rule.state, rule.since = "ok", at
    event = _open_event(s, rule.id)
    if event is None:
        return
    # The event's delivery now tracks the resolved notification (a firing one still pending is superseded).
    event.state, event.resolved_at = "resolved", at
    event.delivery_state, event.attempts, event.last_error, event.next_attempt_at = "pending", 0, "", at
    log.info("alert %s (%s/%s in %s, %s) resolved", rule.id, rule.project, rule.component, rule.environment,
             rule.name)


def evaluate_all(p: StoreAndKeys, at: datetime | None = None) -> dict[str, int]:
    """Evaluate every rule, each in its own transaction; a rule that fails is logged and skipped. Counts by state
    afterwards (and 'failed')."""
    with p.store.transaction() as s:
        ids = list(s.scalars(select(AlertRuleRow.id).order_by(AlertRuleRow.id)))
    counts: dict[str, int] = {}
    for rule_id in ids:
        try:
            with p.store.transaction() as s:
                state = evaluate(s, rule_id, at)
        except Exception:
            log.exception("evaluating alert rule %s failed", rule_id)
            state = "failed"
        if state is not None:
            counts[state] = counts.get(state, 0) + 1
    return counts


# -- notifications --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One signed POST, ready to send."""

    event_id: int | None  # None for a test
    attempts: int  # attempts made before this one
    state: str  # the event's state it reports (firing | resolved | test)
    url: str
    headers: dict[str, str]
    body: bytes


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Cellplane-Signature header: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(rule: AlertRuleRow, event: AlertEventRow | None, state: str) -> dict[str, Any]:
    """The notification's JSON body (no secret in it). ``eventId`` is the same for every attempt of it."""
    if event is None:
        event_id = f"{rule.id}-test-{secrets.token_hex(6)}"
        value, shown = rule.value, None
        text = f"test notification of alert rule '{rule.name}' ({message(rule, rule.value)})"
    else:
        event_id = f"{rule.id}-{event.id}-{state}"
        value = event.value if state == "firing" else rule.value
        text = event.message if state == "firing" else f"resolved: {event.message}"
        shown = {k: v for k, v in event_view(event).items() if k != "delivery"}
    return {"eventId": event_id, "type": f"alert.{state}", "state": state, "organization": rule.organization,
            "project": rule.project, "component": rule.component, "environment": rule.environment,
            "metric": rule.metric, "value": value, "threshold": rule.threshold, "message": text,
            "alert": rule_view(rule), "event": shown}


def notification(keyring: KeyRing, rule: AlertRuleRow, event: AlertEventRow | None, state: str) -> Notification:
    body = json.dumps(payload(rule, event, state), separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    secret = keyring.decrypt(rule.secret, secret_context(rule.id))
    headers = {"Content-Type": "application/json", "User-Agent": "cellplane-alerts",
               "X-Cellplane-Event": f"alert.{state}", "X-Cellplane-Timestamp": timestamp,
               "X-Cellplane-Signature": sign(secret, timestamp, body)}
    return Notification(event.id if event is not None else None, event.attempts if event is not None else 0, state,
                        rule.webhook, headers, body)


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    status: int | None
    error: str | None


def _outcome(status: int | None, error: BaseException | None) -> Delivery:
    if error is not None:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return Delivery(False, None, text[:MAX_ERROR])
    assert status is not None
    if 200 <= status < 300:
        return Delivery(True, status, None)
    return Delivery(False, status, f"HTTP {status}")


async def send(client: httpx.AsyncClient, n: Notification) -> Delivery:
    """POST it within SEND_TIMEOUT in all; only the status counts (the answer's body is not read)."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            async with client.stream("POST", n.url, content=n.body, headers=n.headers, timeout=SEND_TIMEOUT,
                                     follow_redirects=False) as r:
                status = r.status_code
    except TimeoutError:
        return Delivery(False, None, f"no answer within {SEND_TIMEOUT:g}s")
    except (httpx.HTTPError, OSError) as e:
        return _outcome(None, e)
    return _outcome(status, None)


def send_now(n: Notification) -> Delivery:
    """Send synchronously (the test notification); redirects are not followed, the answer's body is not read."""
    try:
        with httpx.Client(timeout=SEND_TIMEOUT, follow_redirects=False) as client, \
                client.stream("POST", n.url, content=n.body, headers=n.headers) as r:
            status = r.status_code
    except httpx.TimeoutException:
        return Delivery(False, None, f"no answer within {SEND_TIMEOUT:g}s")
    except (httpx.HTTPError, OSError) as e:
        return _outcome(None, e)
    return _outcome(status, None)


def claim_due(p: StoreAndKeys, at: datetime | None = None, limit: int = BATCH) -> list[Notification]:
    """The notifications due now, each claimed for one attempt (so that another replica does not send it too)."""
    at = at or now()
    out = []
    with p.store.transaction() as s:
        due = s.execute(select(AlertEventRow.id, AlertEventRow.attempts, AlertEventRow.state).where(
            AlertEventRow.delivery_state == "pending", AlertEventRow.next_attempt_at <= at)
            .order_by(AlertEventRow.next_attempt_at, AlertEventRow.id).limit(limit)).all()
    for event_id, attempts, state in due:
        try:
            with p.store.transaction() as s:
                claimed = rowcount(s.execute(update(AlertEventRow).where(
                    AlertEventRow.id == event_id, AlertEventRow.delivery_state == "pending",
                    AlertEventRow.attempts == attempts, AlertEventRow.state == state,
                    AlertEventRow.next_attempt_at <= at).values(
                    next_attempt_at=at + timedelta(seconds=LEASE))))
                if claimed != 1:
                    continue
                event = s.get(AlertEventRow, event_id)
                rule = s.get(AlertRuleRow, event.rule_id) if event is not None else None
                if event is None or rule is None:
                    continue
                out.append(notification(p.keyring, rule, event, state))
        except Exception:
            log.exception("preparing the notification of alert event %s failed", event_id)
    return out


def record(p: StoreAndKeys, n: Notification, result: Delivery, at: datetime | None = None) -> None:
    """Record an attempt's outcome, unless the event moved on meanwhile (resolved: a new notification)."""
    at = at or now()
    assert n.event_id is not None
    attempts = n.attempts + 1
    values: dict[str, Any]
    if result.delivered:
        values = {"delivery_state": "delivered", "attempts": attempts, "last_error": "", "next_attempt_at": None}
    elif attempts >= MAX_ATTEMPTS:
        values = {"delivery_state": "failed", "attempts": attempts, "last_error": result.error or "",
                  "next_attempt_at": None}
    else:
        values = {"attempts": attempts, "last_error": result.error or "",
                  "next_attempt_at": at + timedelta(seconds=BACKOFF * 2 ** (attempts - 1))}
    with p.store.transaction() as s:
        s.execute(update(AlertEventRow).where(
            AlertEventRow.id == n.event_id, AlertEventRow.delivery_state == "pending",
            AlertEventRow.attempts == n.attempts, AlertEventRow.state == n.state).values(**values))
    if not result.delivered:
        log.warning("alert event %s: the %s notification to %s failed (attempt %d): %s", n.event_id, n.state,
                    _host(n.url), attempts, result.error)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def deliver_due(p: StoreAndKeys, client: httpx.AsyncClient) -> int:
    """Send the notifications that are due (at most ``PARALLEL`` at once); returns how many were sent."""
    due = await asyncio.to_thread(claim_due, p)
    if not due:
        return 0
    gate = asyncio.Semaphore(PARALLEL)

    async def one(n: Notification) -> None:
        async with gate:
            result = await send(client, n)
        try:
            await asyncio.to_thread(record, p, n, result)
        except Exception:
            log.exception("recording the delivery of alert event %s failed", n.event_id)

    await asyncio.gather(*(one(n) for n in due))
    return len(due)


async def tick(p: StoreAndKeys, client: httpx.AsyncClient) -> None:
    """Evaluate every rule once and send the notifications that are due."""
    await asyncio.to_thread(evaluate_all, p)
    await deliver_due(p, client)
