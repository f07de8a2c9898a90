"""Audit events stored in blocks: one row per session per upload instead of one per event.

Creates `audit_blocks` and `sessions.last_seq`, moves every stored event into blocks of at
most 1,000 consecutive events of a session, and drops `audit_events`. Downgrading unpacks the
blocks into `audit_events` again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from protos.lockgate.v1 import node_pb2 as pb

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PER_BLOCK = 1000

_events = sa.table(
    "audit_events",
    sa.column("session_id", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("time", sa.DateTime(timezone=True)),
    sa.column("kind", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("received_at", sa.DateTime(timezone=True)),
)
_blocks = sa.table(
    "audit_blocks",
    sa.column("session_id", sa.String),
    sa.column("first_seq", sa.Integer),
    sa.column("last_seq", sa.Integer),
    sa.column("events", sa.LargeBinary),
    sa.column("received_at", sa.DateTime(timezone=True)),
)
_sessions = sa.table("sessions", sa.column("id", sa.String), sa.column("last_seq", sa.Integer))


def _ms(value: datetime) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return round(aware.timestamp() * 1000)


def _runs(rows: Iterator[Any]) -> Iterator[tuple[str, list[Any]]]:
    """Rows ordered by (session_id, seq) as runs of one session, at most _PER_BLOCK long."""
    sid: str | None = None
    run: list[Any] = []
    for row in rows:
        if row.session_id != sid or len(run) == _PER_BLOCK:
            if run:
                assert sid is not None
                yield sid, run
            sid, run = row.session_id, []
        run.append(row)
    if run:
        assert sid is not None
        yield sid, run


def upgrade() -> None:
    op.create_table(
        "audit_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("events", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "last_seq", name="uq_audit_blocks_session_last_seq"),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_seq", sa.Integer(), nullable=False, server_default="0"))

    bind = op.get_bind()
    rows = bind.execute(sa.select(_events).order_by(_events.c.session_id, _events.c.seq)).yield_per(
        _PER_BLOCK
    )
    last: dict[str, int] = {}
    for sid, run in _runs(iter(rows)):
        events = [
            pb.AuditEvent(
                session_id=sid,
                seq=row.seq,
                time_ms=_ms(row.time),
                kind=row.kind,
                payload_json=json.dumps(row.payload, separators=(",", ":")).encode(),
            )
            for row in run
        ]
        bind.execute(
            _blocks.insert().values(
                session_id=sid,
                first_seq=run[0].seq,
                last_seq=run[-1].seq,
                events=pb.AuditBatch(events=events).SerializeToString(),
                received_at=run[-1].received_at,
            )
        )
        last[sid] = run[-1].seq
    if last:
        bind.execute(
            _sessions.update().where(_sessions.c.id == sa.bindparam("sid")),
            [{"sid": sid, "last_seq": seq} for sid, seq in last.items()],
        )
    op.drop_table("audit_events")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column("last_seq", server_default=None)


def downgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "seq", name="uq_audit_events_session_seq"),
    )
    bind = op.get_bind()
    blocks = bind.execute(
        sa.select(_blocks).order_by(_blocks.c.session_id, _blocks.c.last_seq)
    ).yield_per(100)
    for block in blocks:
        rows = []
        for event in pb.AuditBatch.FromString(block.events).events:
            try:
                payload = json.loads(event.payload_json or b"{}")
            except ValueError:
                payload = {"undecodable": True}
            rows.append(
                {
                    "session_id": event.session_id,
                    "seq": event.seq,
                    "time": datetime.fromtimestamp(event.time_ms / 1000, UTC),
                    "kind": event.kind,
                    "payload": payload if isinstance(payload, dict) else {"value": payload},
                    "received_at": block.received_at,
                }
            )
        if rows:
            bind.execute(_events.insert(), rows)
    op.drop_table("audit_blocks")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("last_seq")
