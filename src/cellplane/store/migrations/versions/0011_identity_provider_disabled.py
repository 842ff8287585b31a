"""single sign-on: an identity provider can be disabled (kept with its links and mappings, but no sign-in through it,
and the console sessions it started end)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_providers") as batch:
        batch.add_column(sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("identity_providers") as batch:  # the default was for the rows already there
        batch.alter_column("disabled", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("identity_providers") as batch:
        batch.drop_column("disabled")
