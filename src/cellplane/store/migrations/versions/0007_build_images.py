"""builds and releases: the image a succeeded build pushed (reference by digest, tag, signature, every registry it
went to), and the release made of it

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("image", sa.JSON(), nullable=True))
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("image", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("image")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("image")
