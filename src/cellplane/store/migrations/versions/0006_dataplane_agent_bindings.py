"""role bindings of data planes' agents: the data plane a dataplane-agent binding is for

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("role_bindings") as batch:
        batch.add_column(sa.Column("dataplane", sa.String(length=63), nullable=False, server_default=""))
    with op.batch_alter_table("role_bindings") as batch:  # the default was for the rows already there
        batch.alter_column("dataplane", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("role_bindings") as batch:
        batch.drop_column("dataplane")
