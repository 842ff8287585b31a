"""releases, release events, approvals, previews; deployments per track

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("track", sa.String(length=100), nullable=False, server_default="default"))
        batch.add_column(sa.Column("release_id", sa.String(length=20), nullable=True))
        batch.drop_constraint("uq_deployments", type_="unique")
        batch.create_unique_constraint("uq_deployments",
                                       ["organization", "project", "component", "environment", "track"])
    # Deployments made before releases existed run the track of their build.
    op.execute("UPDATE deployments SET track = (SELECT builds.track FROM builds WHERE builds.id = deployments.build_id)"
               " WHERE EXISTS (SELECT 1 FROM builds WHERE builds.id = deployments.build_id)")
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("deploy_to", sa.String(length=63), nullable=True))
    op.create_table(
        "releases",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("track", sa.String(length=100), nullable=False),
        sa.Column("build_id", sa.String(length=20), nullable=False),
        sa.Column("artifact", sa.String(length=80), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("configuration", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_releases_component", "releases", ["organization", "project", "component", "environment"])
    op.create_table(
        "release_events",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("track", sa.String(length=100), nullable=False),
        sa.Column("release_id", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=63), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_release_events_component", "release_events",
                    ["organization", "project", "component", "environment"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("component", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("track", sa.String(length=100), nullable=False),
        sa.Column("release_id", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("source_environment", sa.String(length=63), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=63), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=63), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_approvals_org", "approvals", ["organization", "state"])
    op.create_index(op.f("ix_approvals_state"), "approvals", ["state"])
    op.create_table(
        "previews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization", sa.String(length=63), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("branch", sa.String(length=250), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("created_by", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization", "project", "branch", name="uq_previews_branch"),
        sa.UniqueConstraint("organization", "environment", name="uq_previews_environment"),
    )


def downgrade() -> None:
    op.drop_table("previews")
    op.drop_index(op.f("ix_approvals_state"), table_name="approvals")
    op.drop_index("ix_approvals_org", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_release_events_component", table_name="release_events")
    op.drop_table("release_events")
    op.drop_index("ix_releases_component", table_name="releases")
    op.drop_table("releases")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("deploy_to")
    op.execute("DELETE FROM deployments WHERE id NOT IN (SELECT MIN(id) FROM deployments "
               "GROUP BY organization, project, component, environment)")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_constraint("uq_deployments", type_="unique")
        batch.create_unique_constraint("uq_deployments", ["organization", "project", "component", "environment"])
        batch.drop_column("release_id")
        batch.drop_column("track")
