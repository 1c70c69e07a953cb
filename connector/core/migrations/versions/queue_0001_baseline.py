"""The action queue as the release before Alembic made it: jobs and their effects.

A SQLite file of that release (state_dir/actions.sqlite, made by ``CREATE TABLE IF NOT EXISTS``) has these very
tables and no version table: ``IF NOT EXISTS`` adopts it as it is, rows and all, and stamps it with this revision.

Revision ID: queue_0001
Revises:
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "queue_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("queue",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Times are Unix seconds (REAL/double precision) as in that release, so no row needs converting.
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.Text(), nullable=False, unique=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("not_before", sa.Double(), nullable=False),
        sa.Column("lease_until", sa.Double()),
        sa.Column("worker", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("result", sa.Text()),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sqlite_autoincrement=True,  # ids are never reused after a purge, as with PostgreSQL's sequences
        if_not_exists=True,
    )
    op.create_index("jobs_due", "jobs", ["state", "not_before"], if_not_exists=True)
    op.create_table(
        "effects",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "name"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("effects")
    op.drop_index("jobs_due", table_name="jobs")
    op.drop_table("jobs")
