"""Audit events: drop the index on session_id alone.

The unique (session_id, seq) index already serves every lookup by session (its leading column)
and orders a session's events; the second index only cost one more B-tree insert per stored
event, about a third of SQLite's work per event in audit ingestion.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_session_id"))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_session_id"), ["session_id"], unique=False
        )
