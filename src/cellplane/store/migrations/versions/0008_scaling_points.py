"""metric points of kind scaling: an autoscaled deployment's replicas (running, wanted) at a window's end, and the
cold starts (wake-ups from zero) that ended in it, with their summed seconds

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, without a default: SQLite adds such columns in place (no copy of a table that may be large).
    with op.batch_alter_table("metric_points") as batch:
        batch.add_column(sa.Column("replicas", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("desired_replicas", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cold_starts", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cold_start_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_column("cold_start_seconds")
        batch.drop_column("cold_starts")
        batch.drop_column("desired_replicas")
        batch.drop_column("replicas")
