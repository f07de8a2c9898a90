"""Masking rules: column patterns and content detectors per connection, with exemptions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "masking_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("connections", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("detectors", sa.JSON(), nullable=False),
        sa.Column("exempt", sa.JSON(), nullable=False),
        sa.Column("unresolved", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("masking_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_masking_rules_name"), ["name"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("masking_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_masking_rules_name"))
    op.drop_table("masking_rules")
