"""deployments, connection keys, workload logs and task runs

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("build_id", sa.String(length=20), nullable=False),
        sa.Column("artifact", sa.String(length=80), nullable=False),
        sa.Column("requested_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization", "project", "component", "environment", name="uq_deployments"),
    )
    op.create_index("ix_deployments_environment", "deployments", ["organization", "environment"], unique=False)
    op.create_table(
        "connection_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("dependency", sa.String(length=63), nullable=False),
        sa.Column("consumer_key", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("secret_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consumer_key"),
        sa.UniqueConstraint("organization", "environment", "project", "component", "dependency",
                            name="uq_connection_keys"),
    )
    op.create_table(
        "workload_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("deployment_id", sa.String(length=20), nullable=False),
        sa.Column("run_id", sa.String(length=20), nullable=True),
        sa.Column("replica", sa.Integer(), nullable=True),
        sa.Column("stream", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workload_logs_key", "workload_logs",
                    ["organization", "project", "component", "environment", "id"], unique=False)
    op.create_table(
        "task_runs",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("deployment_id", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=63), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_runs_component", "task_runs",
                    ["organization", "project", "component", "environment", "requested_at"], unique=False)
    op.create_index(op.f("ix_task_runs_state"), "task_runs", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_task_runs_state"), table_name="task_runs")
    op.drop_index("ix_task_runs_component", table_name="task_runs")
    op.drop_table("task_runs")
    op.drop_index("ix_workload_logs_key", table_name="workload_logs")
    op.drop_table("workload_logs")
    op.drop_table("connection_keys")
    op.drop_index("ix_deployments_environment", table_name="deployments")
    op.drop_table("deployments")
