"""Batch jobs: the journal and the quarantine know which job and row a record came from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("journal", "quarantine"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("batch_job", sa.String(32), nullable=True))
            batch.add_column(sa.Column("batch_row", sa.Integer, nullable=True))
            batch.create_index(f"ux_{table}_batch", ["batch_job", "batch_row"], unique=True)
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("replayed_request_id", sa.String(36), nullable=True))
    op.create_table(
        "contract_versions",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("service", sa.String(64), primary_key=True),
        sa.Column("side", sa.String(8), primary_key=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("contract_versions")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("replayed_request_id")
    for table in ("journal", "quarantine"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ux_{table}_batch")
            batch.drop_column("batch_row")
            batch.drop_column("batch_job")
