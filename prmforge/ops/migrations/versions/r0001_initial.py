"""The build registry: builds and their stages.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def upgrade() -> None:
    op.create_table(
        "prmforge_builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="status", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column("config_json", sa.JSON(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("runner", sa.String(length=16), nullable=True),
        sa.Column("started_by", sa.String(length=255), nullable=False),
        sa.Column("schedule", sa.String(length=200), nullable=True),
        sa.Column("retry_of", sa.Integer(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("num_shards", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("cost", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["retry_of"],
            ["prmforge_builds.id"],
            name=op.f("fk_prmforge_builds_retry_of_prmforge_builds"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prmforge_builds")),
    )
    with op.batch_alter_table("prmforge_builds") as batch:
        batch.create_index(batch.f("ix_prmforge_builds_status"), ["status"], unique=False)
        batch.create_index("ix_prmforge_builds_schedule_status", ["schedule", "status"], unique=False)
    op.create_table(
        "prmforge_build_stages",
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("resumed", sa.Integer(), nullable=False),
        sa.Column("rows_in", sa.BigInteger(), nullable=False),
        sa.Column("rows_out", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["prmforge_builds.id"],
            name=op.f("fk_prmforge_build_stages_build_id_prmforge_builds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("build_id", "name", name=op.f("pk_prmforge_build_stages")),
    )


def downgrade() -> None:
    op.drop_table("prmforge_build_stages")
    with op.batch_alter_table("prmforge_builds") as batch:
        batch.drop_index("ix_prmforge_builds_schedule_status")
        batch.drop_index(batch.f("ix_prmforge_builds_status"))
    op.drop_table("prmforge_builds")
