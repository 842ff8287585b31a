"""The control plane's tables (SQLAlchemy 2). Alembic migrations in ``migrations/`` create them.

Resources of every kind share one table: the document envelope is the same for all kinds, and
the scope columns (organization, project) make names unique where Kubernetes would use namespaces.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Timestamps are stored and returned as aware UTC datetimes on every engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ResourceRow(Base):
    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    organization: Mapped[str] = mapped_column(String(63), default="")
    project: Mapped[str] = mapped_column(String(63), default="")
    name: Mapped[str] = mapped_column(String(63))
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict] = mapped_column(JSON, default=dict)
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[dict] = mapped_column(JSON, default=dict)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (
        UniqueConstraint("kind", "organization", "project", "name", name="uq_resources_identity"),
        Index("ix_resources_scope", "organization", "kind", "project", "name"),
    )


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    # argon2id (argon2-cffi's encoded form, salt and parameters included); None: no password, no console sign-in
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)


class SessionRow(Base):
    """A console session. Like a token, only a keyed digest of the session token (the cookie's value) is stored."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # HMAC-SHA256 of the session token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # absolute; idle expiry is last_seen_at + a setting
    provider: Mapped[str | None] = mapped_column(String(140), nullable=True)  # None | "oidc:<org>/<name>"


class TokenRow(Base):
    """An API token. Only a keyed digest (HMAC-SHA256) of the token is stored, never the token."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoleBindingRow(Base):
    """A role granted to a user on an organization, or narrowed to a project or an environment; a dataplane-agent
    binding names its data plane."""

    __tablename__ = "role_bindings"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    organization: Mapped[str] = mapped_column(String(63), index=True)
    project: Mapped[str] = mapped_column(String(63), default="")
    environment: Mapped[str] = mapped_column(String(63), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    dataplane: Mapped[str] = mapped_column(String(63), default="")
    # set on the bindings an identity provider's groups gave (replaced at each sign-in through it); None: granted
    provider_id: Mapped[int | None] = mapped_column(
        ForeignKey("identity_providers.id", ondelete="CASCADE", name="fk_role_bindings_provider"), nullable=True,
        index=True)

    __table_args__ = (
        UniqueConstraint("user_id", "role", "organization", "project", "environment", name="uq_role_bindings"),
    )


class ConfigValueRow(Base):
    """A configuration value of a component, for all environments ('') or one. Secrets hold ciphertext."""

    __tablename__ = "config_values"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63), default="")
    key: Mapped[str] = mapped_column(String(255))
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    value: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_by: Mapped[str] = mapped_column(String(63), default="")

    __table_args__ = (
        UniqueConstraint("organization", "project", "component", "environment", "key", name="uq_config_values"),
    )


class AuditRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, index=True)
    actor: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(40), default="")
    organization: Mapped[str] = mapped_column(String(63), default="", index=True)
    project: Mapped[str] = mapped_column(String(63), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    outcome: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")


class BuildRow(Base):
    """One build of a component: its request, its state machine and what it produced."""

    __tablename__ = "builds"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    number: Mapped[int] = mapped_column(Integer)
    track: Mapped[str] = mapped_column(String(100), default="default")
    source: Mapped[dict] = mapped_column(JSON, default=dict)  # kind git|archive, repository, branch, ref, path
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trigger: Mapped[str] = mapped_column(String(20), default="api")
    requested_by: Mapped[str] = mapped_column(String(63), default="")
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str] = mapped_column(String(100), default="")
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=900)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    detection: Mapped[dict] = mapped_column(JSON, default=dict)
    steps: Mapped[list] = mapped_column(JSON, default=list)
    findings: Mapped[list] = mapped_column(JSON, default=list)
    artifact: Mapped[str | None] = mapped_column(String(80), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    upload: Mapped[str | None] = mapped_column(String(80), nullable=True)  # blob digest of an uploaded archive
    deploy_to: Mapped[str | None] = mapped_column(String(63), nullable=True)  # environment to deploy on success
    # The image pushed after the build succeeded (docs/images.md): reference (by digest), digest, repository, tag,
    # signature, pushedTo (every registry's reference). None: no registry configured.
    image: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        UniqueConstraint("organization", "project", "component", "number", name="uq_builds_number"),
        Index("ix_builds_component", "organization", "project", "component"),
    )


class BuildLogRow(Base):
    __tablename__ = "build_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    build_id: Mapped[str] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    step: Mapped[str] = mapped_column(String(20), default="")
    line: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("build_id", "seq", name="uq_build_logs_seq"),)


class BlobRow(Base):
    """Content-addressed bytes (artifacts, uploaded sources), stored in chunks so that replicas share them."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)  # sha256:<hex>
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class BlobChunkRow(Base):
    __tablename__ = "blob_chunks"

    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ArtifactRow(Base):
    """An artifact as a project knows it: its digest (a blob) and its manifest."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"))
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (UniqueConstraint("organization", "project", "digest", name="uq_artifacts"),)


class WebhookSecretRow(Base):
    """A component's git webhook secret, encrypted like configuration secrets."""

    __tablename__ = "webhook_secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    created_by: Mapped[str] = mapped_column(String(63), default="")

    __table_args__ = (UniqueConstraint("organization", "project", "component", name="uq_webhook_secrets"),)


class DeploymentRow(Base):
    """A release of one track of a component, bound to an environment, and what its data plane last reported
    about it. ``build_id`` and ``artifact`` repeat the release's, for lists."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # dep_<12 hex>
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    track: Mapped[str] = mapped_column(String(100), default="default", server_default="default")
    release_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    build_id: Mapped[str] = mapped_column(String(20))
    artifact: Mapped[str] = mapped_column(String(80))
    requested_by: Mapped[str] = mapped_column(String(63), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    status: Mapped[dict] = mapped_column(JSON, default=dict)  # the data plane's last report about it
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("organization", "project", "component", "environment", "track", name="uq_deployments"),
        Index("ix_deployments_environment", "organization", "environment"),
    )


class ReleaseRow(Base):
    """An immutable snapshot: an artifact, the component spec and the configuration resolved for one environment.
    Secret configuration values are kept encrypted with the key ring (context: ``releases.secret_context``)."""

    __tablename__ = "releases"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # r<10 hex of its digest>
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    track: Mapped[str] = mapped_column(String(100), default="default")
    build_id: Mapped[str] = mapped_column(String(20))
    artifact: Mapped[str] = mapped_column(String(80))
    image: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the build's image: digest, reference, pushedTo
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    configuration: Mapped[list] = mapped_column(JSON, default=list)
    digest: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(63), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (Index("ix_releases_component", "organization", "project", "component", "environment"),)


class ReleaseEventRow(Base):
    """A release becoming the one a deployment runs (deploy, promote, rollback, approval, configuration change):
    a deployment's history."""

    __tablename__ = "release_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    track: Mapped[str] = mapped_column(String(100), default="default")
    release_id: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(63), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_release_events_component", "organization", "project", "component", "environment"),)


class ApprovalRow(Base):
    """A request to run a release in an environment that requires approval, and its decision."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # apr_<8 hex>
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    track: Mapped[str] = mapped_column(String(100), default="default")
    release_id: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(20))  # deploy | promote
    source_environment: Mapped[str | None] = mapped_column(String(63), nullable=True)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    requested_by: Mapped[str] = mapped_column(String(63), default="")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    decided_by: Mapped[str | None] = mapped_column(String(63), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_approvals_org", "organization", "state"),)


class PreviewRow(Base):
    """An ephemeral environment holding a project's components built from one branch."""

    __tablename__ = "previews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    branch: Mapped[str] = mapped_column(String(250))
    environment: Mapped[str] = mapped_column(String(63))
    created_by: Mapped[str] = mapped_column(String(63), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (
        UniqueConstraint("organization", "project", "branch", name="uq_previews_branch"),
        UniqueConstraint("organization", "environment", name="uq_previews_environment"),
    )


class ConnectionKeyRow(Base):
    """The credentials of one connection (a consumer's dependency, in one environment) to an endpoint of another
    project. The secret is encrypted with the key ring; its SHA-256 is what the gateway checks."""

    __tablename__ = "connection_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    dependency: Mapped[str] = mapped_column(String(63))
    consumer_key: Mapped[str] = mapped_column(String(40), unique=True)
    secret: Mapped[str] = mapped_column(Text)
    secret_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (
        UniqueConstraint("organization", "environment", "project", "component", "dependency",
                         name="uq_connection_keys"),
    )


class WorkloadLogRow(Base):
    """A line a workload (or the data plane about it) wrote; at most a bounded number per component and
    environment are kept."""

    __tablename__ = "workload_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    deployment_id: Mapped[str] = mapped_column(String(20), default="")
    run_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    replica: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stream: Mapped[str] = mapped_column(String(10))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    line: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_workload_logs_key", "organization", "project", "component", "environment", "id"),
        Index("ix_workload_logs_at", "at"),
    )


class TaskRunRow(Base):
    """One run of a task: requested by someone (manual) or started by its data plane (schedule)."""

    __tablename__ = "task_runs"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # run_<16 hex>
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    deployment_id: Mapped[str] = mapped_column(String(20))
    trigger: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    requested_by: Mapped[str] = mapped_column(String(63), default="")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index("ix_task_runs_component", "organization", "project", "component", "environment", "requested_at"),
    )


# -- telemetry ------------------------------------------------------------------------------------------------------


class AccessLogRow(Base):
    """One request a gateway answered for a component (as shipped by its data plane; see docs/observability.md)."""

    __tablename__ = "access_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    endpoint: Mapped[str] = mapped_column(String(63))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    bytes_sent: Mapped[int] = mapped_column(BigInteger)
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    consumer: Mapped[str | None] = mapped_column(String(127), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    listener: Mapped[str] = mapped_column(String(100))

    __table_args__ = (
        Index("ix_access_logs_key", "organization", "project", "component", "environment", "id"),
    )


class MetricPointRow(Base):
    """One window of one series: gateway requests of an endpoint (by consumer), one replica's resources, or an
    autoscaled deployment's scaling (replicas running and wanted at the window's end, cold starts that ended in it).

    ``resolution`` is 0 for points as the data plane sent them and the rollup's length in seconds for points
    merged by downsampling."""

    __tablename__ = "metric_points"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(10))  # http | replica | scaling
    endpoint: Mapped[str] = mapped_column(String(63), default="")
    consumer: Mapped[str] = mapped_column(String(127), default="")
    replica: Mapped[int | None] = mapped_column(Integer, nullable=True)
    release: Mapped[str] = mapped_column(String(40), default="")  # of a replica: during a rollout two share an index
    resolution: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    seconds: Mapped[float] = mapped_column(Float)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    client_errors: Mapped[int] = mapped_column(Integer, default=0)
    duration_sum: Mapped[float] = mapped_column(Float, default=0.0)
    buckets: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    cpu: Mapped[float | None] = mapped_column(Float, nullable=True)
    memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # scaling points only (null in the others)
    replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    desired_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cold_starts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cold_start_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_metric_points_key", "organization", "project", "component", "environment", "at"),
        Index("ix_metric_points_age", "resolution", "at"),
    )


class SpanRow(Base):
    """One hop of a trace: a request one gateway proxied to one component."""

    __tablename__ = "spans"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    span_id: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    endpoint: Mapped[str] = mapped_column(String(63))
    listener: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(Text)
    start: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    consumer: Mapped[str | None] = mapped_column(String(127), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(100), nullable=True)

    __table_args__ = (
        Index("ix_spans_key", "organization", "project", "component", "environment", "start"),
    )


class AlertRuleRow(Base):
    """A condition on one component's telemetry in one environment, and where to say it holds."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # alr_<16 hex>
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    metric: Mapped[str] = mapped_column(String(20))
    threshold: Mapped[float] = mapped_column(Float)
    percentile: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_seconds: Mapped[int] = mapped_column(Integer)
    for_seconds: Mapped[int] = mapped_column(Integer)
    webhook: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # encrypted with the key ring
    state: Mapped[str] = mapped_column(String(10), default="ok")
    since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (
        UniqueConstraint("organization", "project", "component", "environment", "name", name="uq_alert_rules"),
    )


class AlertEventRow(Base):
    """One time a rule fired: when, until when, and whether its notifications were delivered."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(20))
    organization: Mapped[str] = mapped_column(String(63))
    project: Mapped[str] = mapped_column(String(63))
    component: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(10))  # firing | resolved
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    delivery_state: Mapped[str] = mapped_column(String(10), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_alert_events_rule", "rule_id", "id"),
        Index("ix_alert_events_delivery", "delivery_state", "next_attempt_at"),
    )


class IdentityProviderRow(Base):
    """An organization's OpenID Connect provider (single sign-on); the client secret is ciphertext (key ring)."""

    __tablename__ = "identity_providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    issuer: Mapped[str] = mapped_column(String(1024))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: a public client (PKCE alone)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    groups_claim: Mapped[str] = mapped_column(String(100), default="groups")
    group_roles: Mapped[list] = mapped_column(JSON, default=list)  # [{group, role, project?, environment?}]
    create_users: Mapped[bool] = mapped_column(Boolean, default=False)
    # no sign-in through it, its sessions ended; links and mappings kept (migration 0011)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    __table_args__ = (UniqueConstraint("organization", "name", name="uq_identity_providers"),)


class UserIdentityRow(Base):
    """A user's account at an identity provider: the provider's subject (``sub``) signs in as the user."""

    __tablename__ = "user_identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("identity_providers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (UniqueConstraint("provider_id", "subject", name="uq_user_identities"),)
