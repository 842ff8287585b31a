"""Configuration values per component and environment, versioned; secret values encrypted at rest.

Values come from two places: the component spec (``configuration.env`` / ``configuration.files``)
and values set later with ``config set``. Secret values never stay in the spec: applying a spec
that carries one moves it here, encrypted, and the stored spec keeps only the entry's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cellplane.controlplane.keyring import MASK, KeyRing
from cellplane.errors import FieldProblem, InvalidError, NotFoundError
from cellplane.model.component import ENV_NAME
from cellplane.model.meta import dns_label_problem
from cellplane.store.scope import delete_scoped
from cellplane.store.tables import ConfigValueRow, WebhookSecretRow, now

ALL = ""  # environment column value meaning "every environment"
FILE_PREFIX = "file:"


def secret_context(row: ConfigValueRow) -> str:
    """Associated data binding a ciphertext to its place."""
    return f"{row.organization}/{row.project}/{row.component}/{row.environment}/{row.key}"


_FIND = select(ConfigValueRow).where(  # built once: building a statement costs more than running it
    ConfigValueRow.organization == bindparam("org"), ConfigValueRow.project == bindparam("project"),
    ConfigValueRow.component == bindparam("component"), ConfigValueRow.environment == bindparam("env"),
    ConfigValueRow.key == bindparam("key"))


def _find(s: Session, org: str, project: str, component: str, env: str, key: str) -> ConfigValueRow | None:
    return s.scalar(_FIND, {"org": org, "project": project, "component": component, "env": env, "key": key})


def plaintext(keyring: KeyRing, row: ConfigValueRow) -> str:
    return keyring.decrypt(row.value, secret_context(row)) if row.secret else row.value


def set_value(s: Session, keyring: KeyRing, org: str, project: str, component: str, env: str, key: str,
              value: str, secret: bool, actor: str) -> tuple[ConfigValueRow, bool]:
    """Store a value; returns the row and whether anything changed (same value again: no new version)."""
    # A file's key is 'file:' + the file's name in the spec (configuration.files[].name, a DNS label).
    is_file = key.startswith(FILE_PREFIX) and dns_label_problem(key[len(FILE_PREFIX):]) is None
    if not (is_file or (ENV_NAME.fullmatch(key) and len(key) <= 255)):
        raise InvalidError(f"'{key[:300]}' is not a valid configuration key",
                           [FieldProblem("key", "use an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most "
                                                "255 characters) or 'file:<name>' for a configuration file")])
    row = _find(s, org, project, component, env, key)
    if row is None:
        row = ConfigValueRow(organization=org, project=project, component=component, environment=env, key=key,
                             secret=secret, value="", version=0, updated_by=actor)
        s.add(row)
    elif row.secret == secret and plaintext(keyring, row) == value:
        return row, False
    row.secret = secret
    row.value = keyring.encrypt(value, secret_context(row)) if secret else value
    row.version += 1
    row.updated_at = now()
    row.updated_by = actor
    s.flush()
    return row, True


def unset_value(s: Session, org: str, project: str, component: str, env: str, key: str) -> None:
    row = _find(s, org, project, component, env, key)
    if row is None:
        where = f"environment '{env}'" if env else "all environments"
        raise NotFoundError(f"'{key}' is not set for {where}", [FieldProblem("key", "not set")])
    s.delete(row)
    s.flush()


def absorb_spec_secrets(s: Session, keyring: KeyRing, org: str, project: str, component: str,
                        spec: dict[str, Any], actor: str) -> tuple[dict[str, Any], bool]:
    """Move secret values out of a component spec into encrypted storage. Returns (clean spec, changed)."""
    changed = False
    configuration = spec.get("configuration") or {}
    for section, value_key, prefix in (("env", "value", ""), ("files", "content", FILE_PREFIX)):
        for item in configuration.get(section) or []:
            if not item.get("secret"):
                continue
            key = prefix + item["name"]
            values = {ALL: item.pop(value_key, None), **item.pop("environments", {})}
            for env, value in values.items():
                if value is not None:
                    changed |= set_value(s, keyring, org, project, component, env, key, value, True, actor)[1]
    return spec, changed


def forget(s: Session, organization: str, project: str | None = None, component: str | None = None,
           environment: str | None = None) -> None:
    """Delete the values of what is being deleted."""
    delete_scoped(s, (ConfigValueRow,), organization, project, component, environment)


def rows_for(s: Session, org: str, project: str, component: str) -> list[ConfigValueRow]:
    return list(s.scalars(select(ConfigValueRow).where(
        ConfigValueRow.organization == org, ConfigValueRow.project == project,
        ConfigValueRow.component == component).order_by(ConfigValueRow.key, ConfigValueRow.environment)))


def public_view(row: ConfigValueRow) -> dict[str, Any]:
    """A stored value as the API shows it: secrets masked, always."""
    return {"key": row.key, "value": MASK if row.secret else row.value, "secret": row.secret,
            "environment": row.environment or None, "version": row.version,
            "updatedAt": row.updated_at.isoformat(), "updatedBy": row.updated_by, "source": "config"}


def effective(s: Session, org: str, project: str, component: str, spec: dict[str, Any],
              env: str | None) -> list[dict[str, Any]]:
    """What a component sees in ``env`` (or everything declared, when env is None), masked.

    Precedence, lowest first: spec value, spec per-environment value, ``config set`` for all
    environments, ``config set`` for this environment.
    """
    out: dict[str, dict[str, Any]] = {}
    configuration = spec.get("configuration") or {}
    for section, value_key, prefix in (("env", "value", ""), ("files", "content", FILE_PREFIX)):
        for item in configuration.get(section) or []:
            key = prefix + item["name"]
            value = item.get(value_key)
            per_env = item.get("environments") or {}
            if env is not None and env in per_env:
                value = per_env[env]
            secret = bool(item.get("secret"))
            out[key] = {"key": key, "value": MASK if secret and value is not None else value, "secret": secret,
                        "environment": env if env in per_env else None, "version": 0, "source": "spec"}
    rows = rows_for(s, org, project, component)
    for row in sorted(rows, key=lambda r: r.environment != ALL):
        if env is None or row.environment in (ALL, env):
            if env is None and row.environment != ALL:
                out[f"{row.key}@{row.environment}"] = public_view(row)
            else:
                out[row.key] = public_view(row)
    return sorted(out.values(), key=lambda i: (i["key"], i["environment"] or ""))


def rotate(s: Session, keyring: KeyRing, budget: int) -> int:
    """Re-encrypt configuration secrets held under an older key, at most ``budget``; returns how many."""
    done = 0
    for row in s.scalars(select(ConfigValueRow).where(ConfigValueRow.secret.is_(True))
                         .order_by(ConfigValueRow.id)).all():
        if done >= budget:
            break
        if keyring.key_id_of(row.value) != keyring.primary_id:
            row.value = keyring.encrypt(keyring.decrypt(row.value, secret_context(row)), secret_context(row))
            done += 1
    return done


def rotate_webhook_secrets(s: Session, keyring: KeyRing, budget: int) -> int:
    """Re-encrypt git webhook secrets (held under the same key ring) under an older key, at most ``budget``."""
    done = 0
    for hook in s.scalars(select(WebhookSecretRow).order_by(WebhookSecretRow.id)).all():
        if done >= budget:
            break
        if keyring.key_id_of(hook.secret) != keyring.primary_id:
            ctx = webhook_context(hook.organization, hook.project, hook.component)
            hook.secret = keyring.encrypt(keyring.decrypt(hook.secret, ctx), ctx)
            done += 1
    return done


def webhook_context(organization: str, project: str, component: str) -> str:
    """Associated data binding a webhook secret's ciphertext to its component."""
    return f"webhook\0{organization}\0{project}\0{component}"


def _constant(value: str) -> Callable[[], str]:
    """A ``reveal`` for a value that is not secret: it returns the value itself."""
    return lambda: value


@dataclass(frozen=True)
class Resolved:
    """A configuration value as a deployment in one environment gets it.

    ``value`` is the plaintext of a value that is not secret; a secret's plaintext is only read (decrypted)
    by calling ``reveal``, when it is sealed for a data plane. ``ref`` is the stored value's (row id,
    version): it stands for the value wherever a digest must change exactly when the value does.
    """

    key: str
    secret: bool
    value: str | None
    ref: tuple[int, int] | None
    reveal: Callable[[], str]

    @property
    def is_file(self) -> bool:
        return self.key.startswith(FILE_PREFIX)

    @property
    def name(self) -> str:
        """The variable's name, or the file's name in the spec."""
        return self.key[len(FILE_PREFIX):] if self.is_file else self.key


def resolve(s: Session, keyring: KeyRing, org: str, project: str, component: str, spec: dict[str, Any],
            env: str) -> list[Resolved]:
    """Every value the component gets in ``env``, with the precedence of ``effective`` (lowest first: spec value,
    spec per-environment value, ``config set`` for all environments, ``config set`` for this environment).

    An entry declared secret in the spec stays secret whatever set its value. Entries without a value are left
    out. Sorted by key.
    """
    declared_secret: set[str] = set()
    out: dict[str, Resolved] = {}
    configuration = spec.get("configuration") or {}
    for section, value_key, prefix in (("env", "value", ""), ("files", "content", FILE_PREFIX)):
        for item in configuration.get(section) or []:
            key = prefix + item["name"]
            secret = bool(item.get("secret"))
            if secret:
                declared_secret.add(key)
            value = (item.get("environments") or {}).get(env, item.get(value_key))
            if value is not None and not secret:  # a secret's spec value was moved to a row when applied
                out[key] = Resolved(key, False, value, None, _constant(value))
    rows = [r for r in rows_for(s, org, project, component) if r.environment in (ALL, env)]
    for row in sorted(rows, key=lambda r: r.environment != ALL):
        secret = row.secret or row.key in declared_secret
        stored, ctx, is_secret_row = row.value, secret_context(row), row.secret

        def reveal(stored: str = stored, ctx: str = ctx, is_secret_row: bool = is_secret_row) -> str:
            return keyring.decrypt(stored, ctx) if is_secret_row else stored

        out[row.key] = Resolved(row.key, secret, None if secret else row.value, (row.id, row.version), reveal)
    return [out[k] for k in sorted(out)]
