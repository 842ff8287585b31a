"""telemetry: access logs, metric points, spans, alert rules and events; log search

Revision ID: 0005
Revises: 0004

On SQLite, workload log lines are indexed by an FTS5 table with the trigram tokenizer (substring search that
uses the index); on PostgreSQL a search is an ILIKE over one component's lines.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SCOPE = ("organization", "project", "component", "environment")


def _scope() -> list[sa.Column]:
    return [sa.Column(name, sa.String(length=63), nullable=False) for name in SCOPE]


def upgrade() -> None:
    op.create_index("ix_workload_logs_at", "workload_logs", ["at"])
    op.create_table(
        "access_logs",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        *_scope(),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("consumer", sa.String(length=127), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("listener", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_logs_key", "access_logs", [*SCOPE, "id"])
    op.create_index(op.f("ix_access_logs_at"), "access_logs", ["at"])
    op.create_table(
        "metric_points",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        *_scope(),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("consumer", sa.String(length=127), nullable=False),
        sa.Column("replica", sa.Integer(), nullable=True),
        sa.Column("release", sa.String(length=40), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("client_errors", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=True),
        sa.Column("cpu", sa.Float(), nullable=True),
        sa.Column("memory", sa.BigInteger(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_points_key", "metric_points", [*SCOPE, "at"])
    op.create_index("ix_metric_points_age", "metric_points", ["resolution", "at"])
    op.create_table(
        "spans",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=16), nullable=True),
        *_scope(),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("listener", sa.String(length=20), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("consumer", sa.String(length=127), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_spans_trace_id"), "spans", ["trace_id"])
    op.create_index(op.f("ix_spans_start"), "spans", ["start"])
    op.create_index("ix_spans_key", "spans", [*SCOPE, "start"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=20), nullable=False),
        *_scope(),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("metric", sa.String(length=20), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("percentile", sa.Integer(), nullable=True),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("for_seconds", sa.Integer(), nullable=False),
        sa.Column("webhook", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(*SCOPE, "name", name="uq_alert_rules"),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(length=20), nullable=False),
        *_scope(),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delivery_state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_events_rule", "alert_events", ["rule_id", "id"])
    op.create_index("ix_alert_events_delivery", "alert_events", ["delivery_state", "next_attempt_at"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)


# The search index follows the lines through triggers; "rebuild" indexes the lines already there.
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE workload_logs_fts USING fts5(line, content='workload_logs', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER workload_logs_fts_insert AFTER INSERT ON workload_logs BEGIN "
    "INSERT INTO workload_logs_fts(rowid, line) VALUES (new.id, new.line); END",
    "CREATE TRIGGER workload_logs_fts_delete AFTER DELETE ON workload_logs BEGIN "
    "INSERT INTO workload_logs_fts(workload_logs_fts, rowid, line) VALUES ('delete', old.id, old.line); END",
    "INSERT INTO workload_logs_fts(workload_logs_fts) VALUES ('rebuild')",
)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS workload_logs_fts_insert")
        op.execute("DROP TRIGGER IF EXISTS workload_logs_fts_delete")
        op.execute("DROP TABLE IF EXISTS workload_logs_fts")
    op.drop_index("ix_alert_events_delivery", table_name="alert_events")
    op.drop_index("ix_alert_events_rule", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_rules")
    op.drop_index("ix_spans_key", table_name="spans")
    op.drop_index(op.f("ix_spans_start"), table_name="spans")
    op.drop_index(op.f("ix_spans_trace_id"), table_name="spans")
    op.drop_table("spans")
    op.drop_index("ix_metric_points_age", table_name="metric_points")
    op.drop_index("ix_metric_points_key", table_name="metric_points")
    op.drop_table("metric_points")
    op.drop_index(op.f("ix_access_logs_at"), table_name="access_logs")
    op.drop_index("ix_access_logs_key", table_name="access_logs")
    op.drop_table("access_logs")
    op.drop_index("ix_workload_logs_at", table_name="workload_logs")
