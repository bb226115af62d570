"""Idempotency keys on journal records, so a repeated request is answered from the journal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.create_index("ix_journal_idempotency", ["key_id", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("journal") as batch:
        batch.drop_index("ix_journal_idempotency")
        batch.drop_column("idempotency_key")
