"""A PostgreSQL session after start-up, without I/O.

`ClientStream` frames what the client sends into groups (a simple Query, or extended-protocol
messages up to a Sync or Flush), says which statements each group carries, and, when a statement
is denied, replaces the group so the target itself answers with the denial (see `deny_group`).
`ServerStream` follows the target's replies message by message, pairing each result with the
statement that produced it, and masks cells, COPY rows and error texts by the statement's plan.

States of a client connection, in order (the adapter walks them; each accepts only the input
named here):

    NEGOTIATING     SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
    AUTHENTICATING  PasswordMessage (cleartext token over TLS) or SASL messages (SCRAM)
    CONNECTING      nothing from the client; the node authorizes, fetches credentials, logs in
    RELAYING        any frontend message; statements are decided and audited before forwarding
    CLOSED
"""

from __future__ import annotations

import csv
import io
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from operator import itemgetter

from data_plane.protocols.postgres import codec
from lockgate.masking.copy_text import CopyLayout, CopyTextMasker
from lockgate.masking.data_rows import SCANNED, DataRowMasker
from lockgate.masking.plan import ColumnAction, StatementPlan

try:
    from data_plane.protocols.postgres._rows import mask_copy_rows, mask_data_rows, scanned_cells
except ImportError:  # pragma: no cover - `make setup` builds it
    mask_copy_rows = mask_data_rows = scanned_cells = None  # type: ignore[assignment]

QUERY, PARSE, BIND, DESCRIBE, EXECUTE, CLOSE, SYNC, FLUSH, TERMINATE, FUNCTION_CALL = (
    ord(c) for c in "QPBDECSHXF"
)
# Messages that wait for a Sync or Flush before the target answers (protocol 55.2.3).
EXTENDED = frozenset((PARSE, BIND, DESCRIBE, EXECUTE, CLOSE))


class State(Enum):
    NEGOTIATING = "negotiating"
    AUTHENTICATING = "authenticating"
    CONNECTING = "connecting"
    RELAYING = "relaying"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement as the client sent it."""

    sql: str
    protocol: str  # "simple" | "extended" | "fastpath"
    name: str = ""  # prepared statement name (extended protocol)


@dataclass(slots=True)
class Group:
    """Whole messages that go upstream together, and what they ask for."""

    data: bytes
    end: int  # the last message's type
    statements: list[Statement] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (type, start, end) in data
    owners: list[int] = field(default_factory=list)  # for each statement, its span's index


def deny_query(message: str) -> bytes:
    """A simple Query that makes the target raise our denial (SQLSTATE 42501).

    The target answering for us keeps the stream in order and the transaction state right: the
    client gets ErrorResponse then ReadyForQuery, exactly as for a refused statement.
    """
    text = message.replace("$lockgate$", "").replace("'", "''")
    return codec.query(
        "DO $lockgate$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', "
        f"MESSAGE = '{text}'; END$lockgate$"
    )


class ClientStream:
    """Frames frontend messages into groups; keeps an incomplete group until it completes.

    A Bind of a statement prepared earlier is a statement too (protocol "execute"): it is
    decided again on every execution, so a policy change or an expired grant also stops
    statements a client prepared before it.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self.terminated = False
        self._prepared: dict[str, str] = {}  # protocol-level statement name -> SQL

    @property
    def pending(self) -> bool:
        """Whether part of a message or of a group waits for the rest."""
        return bool(self._pending)

    @property
    def prepared(self) -> dict[str, str]:
        """Protocol-level statement names the client prepared, with their SQL."""
        return self._prepared

    def feed(self, data: bytes) -> list[Group]:
        if self._pending:
            self._pending += data
            buf: bytes = bytes(self._pending)
            self._pending.clear()
            return self._frame(buf)
        if data[:1] == b"Q" and int.from_bytes(data[1:5]) == len(data) - 1 >= 4:
            # Exactly one whole simple Query, the commonest read: what `_frame` makes of it.
            sql = codec.parse_query(data[5:])
            return [Group(data, QUERY, [Statement(sql, "simple")], [(QUERY, 5, len(data))], [0])]
        return self._frame(data)

    def _frame(self, buf: bytes) -> list[Group]:
        spans, consumed = codec.split_messages(buf)
        groups: list[Group] = []
        start = 0
        current: list[tuple[int, int, int]] = []
        statements: list[Statement] = []
        owners: list[int] = []
        parsed: set[str] = set()
        for kind, body_start, body_end in spans:
            msg_start = body_start - 5
            if not current:
                start = msg_start
            current.append((kind, body_start - start, body_end - start))
            if kind == QUERY:
                statements.append(Statement(codec.parse_query(buf[body_start:body_end]), "simple"))
                owners.append(len(current) - 1)
            elif kind == PARSE:
                name, sql, _ = codec.parse_parse(buf[body_start:body_end])
                self._prepared[name] = sql
                parsed.add(name)
                statements.append(Statement(sql, "extended", name))
                owners.append(len(current) - 1)
            elif kind == BIND:
                _, name = codec.parse_bind_portal(buf[body_start:body_end])
                if name not in parsed:
                    # Unknown names may be SQL-level PREPAREs: decided as EXECUTE, which the
                    # enforcer resolves (and fails closed when it cannot).
                    sql = self._prepared.get(name) or f'EXECUTE "{name}"'
                    statements.append(Statement(sql, "execute", name))
                    owners.append(len(current) - 1)
            elif kind == CLOSE and buf[body_start : body_start + 1] == b"S":
                self._prepared.pop(
                    buf[body_start + 1 : body_end - 1].decode("utf-8", "replace"), None
                )
            elif kind == FUNCTION_CALL:
                statements.append(Statement("FUNCTION CALL", "fastpath"))
                owners.append(len(current) - 1)
            elif kind == TERMINATE:
                self.terminated = True
            if kind in EXTENDED:
                continue  # the group goes on until Sync or Flush
            groups.append(Group(buf[start:body_end], kind, statements, current, owners))
            current, statements, owners, parsed = [], [], [], set()
        if current:
            self._pending += buf[start:]
        elif consumed < len(buf):
            self._pending += buf[consumed:]
        return groups


# --- the target's replies -------------------------------------------------------------------

Masker = Callable[[bytes, int, bool, ColumnAction], bytes | None]
ErrorMasker = Callable[[dict[str, str]], dict[str, str]]

_NOT_COPY_DATA = re.compile(rb"[^d]")  # over the message types of a buffer


@dataclass(slots=True)
class _Prepared:
    plan: StatementPlan | None
    names: tuple[str, ...] = ()
    oids: tuple[int, ...] = ()


@dataclass(slots=True)
class _Portal:
    stmt: _Prepared
    formats: tuple[int, ...]


@dataclass(slots=True)
class _Expect:
    kind: str  # parse | bind | describe_stmt | describe_portal | execute | close | sync | query
    name: str = ""
    stmt: str = ""
    formats: tuple[int, ...] = ()
    plans: tuple[StatementPlan | None, ...] = ()
    plan: StatementPlan | None = None
    index: int = 0  # query: which statement's result is streaming


@dataclass(slots=True)
class _Result:
    actions: tuple[ColumnAction | None, ...]
    oids: tuple[int, ...]
    binary: tuple[bool, ...]
    layout: bytes | None = None  # for `mask_data_rows`, when its rows can be masked in runs
    scans: bool = False  # the layout has cells to look for triggers in (`data_rows.SCANNED`)


class ServerStream:
    """Pairs the target's replies with the client's requests and masks what the plans say.

    `expect_*` calls record, in forwarding order, what each forwarded message will be answered
    with (protocol 55.2.3: every extended message gets its reply in order; an error skips to
    the next Sync; a simple Query ends with ReadyForQuery).

    `copy_masker`, when given, masks runs of text COPY rows in bulk where it can prove the
    result is the same as `mask_cell`'s row by row; it must use the scanner `mask_cell` uses.
    `row_masker` does the same for runs of DataRows, and runs of COPY rows too, with the C
    module `_rows` (which then takes the place of `copy_masker`'s regular expressions): given,
    it says that `mask_cell` is `masks.mask_cell` with that scanner.
    """

    def __init__(
        self,
        mask_cell: Masker,
        mask_error: ErrorMasker,
        copy_masker: CopyTextMasker | None = None,
        row_masker: DataRowMasker | None = None,
    ) -> None:
        self._mask_cell = mask_cell
        self._mask_error = mask_error
        self._copy_masker = copy_masker
        self._row_masker = row_masker if mask_data_rows is not None else None
        self._pending = bytearray()
        self._expect: deque[_Expect] = deque()
        self._prepared: dict[str, _Prepared] = {}
        self._portals: dict[str, _Portal] = {}
        self._result: _Result | None = None
        self._copy: tuple[ColumnAction | None, ...] | None = None
        # `_copy_masker`'s layout for `_copy`, found once per COPY: (actions, layout).
        self._copy_bulk: tuple[tuple[ColumnAction | None, ...] | None, CopyLayout | None] = (
            None,
            None,
        )
        # The C masker's codes for `_copy`, found once per COPY: (actions, codes).
        self._copy_c: tuple[tuple[ColumnAction | None, ...] | None, bytes | None] = (None, None)
        # The rows of a run whose scanned cells hold a trigger, found once for the run:
        # (the buffer, where the run ends in it, their offsets left to reach).
        self._triggered: tuple[bytes, int, deque[int]] = (b"", 0, deque())
        self._bulk_misses = 0  # runs in a row the layout could not mask a row of
        self._bulk_rest = 0  # runs to leave to the row path before trying the layout again
        self.masked_cells = 0
        self.rows = 0

    # what the client sent (called by the adapter for forwarded groups) -------------------

    def expect_group(self, group: Group, plans: Sequence[tuple[StatementPlan, ...]]) -> None:
        """Record the replies `group` will get; `plans[i]` belongs to the group's i-th statement
        (whose message is `group.owners[i]`)."""
        data = group.data
        plan_of = dict(zip(group.owners, plans, strict=False))
        for position, (kind, start, end) in enumerate(group.spans):
            body = data[start:end]
            if kind == QUERY:
                self._expect.append(_Expect("query", plans=tuple(plan_of.get(position, ()))))
            elif kind == PARSE:
                name, _, _ = codec.parse_parse(body)
                stmt_plans = plan_of.get(position, ())
                self._expect.append(
                    _Expect("parse", name=name, plan=stmt_plans[0] if stmt_plans else None)
                )
            elif kind == BIND:
                portal, stmt, formats = _parse_bind(body)
                self._expect.append(_Expect("bind", name=portal, stmt=stmt, formats=formats))
            elif kind == DESCRIBE:
                which, name = body[:1], body[1:-1].decode("utf-8", "replace")
                k = "describe_stmt" if which == b"S" else "describe_portal"
                self._expect.append(_Expect(k, name=name))
            elif kind == EXECUTE:
                portal = body[: body.index(b"\x00")].decode("utf-8", "replace")
                self._expect.append(_Expect("execute", name=portal))
            elif kind == CLOSE:
                self._expect.append(_Expect("close"))
            elif kind == SYNC:
                self._expect.append(_Expect("sync"))
            elif kind == FUNCTION_CALL:
                self._expect.append(_Expect("fastpath"))

    def expect_sync(self) -> None:
        self._expect.append(_Expect("sync"))

    def expect_query(self, plans: tuple[StatementPlan, ...]) -> None:
        self._expect.append(_Expect("query", plans=plans))

    # what the target answers -------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Masked bytes to send to the client (whole messages only)."""
        if self._pending:
            self._pending += data
            buf: bytes = bytes(self._pending)
            self._pending.clear()
        else:
            buf = data
        out: list[bytes] = []
        copied = 0  # buf[copied:] not yet emitted
        pos = 0  # where the next message starts
        rows_in_c = self._row_masker is not None
        while True:
            if rows_in_c and buf[pos : pos + 1] in (b"D", b"d"):
                end, copied = self._row_run(buf, pos, copied, out)
                if end > pos:
                    pos = end
                    continue
                # The row path takes this row (or the message is incomplete).
                spans, end = codec.split_messages(buf, pos, limit=1)
            else:
                spans, end = codec.split_messages(buf, pos, before=b"Dd" if rows_in_c else b"")
            if not spans:
                break
            copied = self._on_messages(buf, spans, copied, out)
            pos = end
        if pos > copied:
            out.append(buf[copied:pos])
        if pos < len(buf):
            self._pending += buf[pos:]
        return b"".join(out)

    def _row_run(self, buf: bytes, pos: int, copied: int, out: list[bytes]) -> tuple[int, int]:
        """Take the run of DataRows or CopyData rows at `pos` in C: where it ends (`pos` if C
        takes none) and the new `copied`. Masked rows go to `out`, after what was not emitted
        before them."""
        assert mask_data_rows is not None and mask_copy_rows is not None
        layout: bytes | None = None
        if buf[pos] == 0x44:  # DataRow
            result = self._current_result()
            stop = len(buf)
            if result is not None:
                if result.layout is None:
                    return pos, copied  # rows its layout cannot give: mask_cell, one by one
                layout = result.layout
                if result.scans:
                    stop = self._next_triggered(buf, pos, layout)
                    if stop == pos:
                        return pos, copied  # a trigger in this row: mask_cell finds what
            end, masked, rows, cells = mask_data_rows(buf, pos, layout, codec.MAX_MESSAGE, stop)
            self.rows += rows
        else:  # CopyData
            stop = len(buf)
            if self._copy is not None:
                layout = self._copy_codes()
                if layout is None:
                    return pos, copied
                if not SCANNED.isdisjoint(layout):
                    stop = self._next_triggered(buf, pos, layout)
                    if stop == pos:
                        return pos, copied
            end, masked, _, cells = mask_copy_rows(buf, pos, layout, codec.MAX_MESSAGE, stop)
        if masked is None:  # nothing changed: the rows pass as they are
            return end, copied
        self.masked_cells += cells
        if pos > copied:
            out.append(buf[copied:pos])
        out.append(masked)
        return end, end

    def _copy_codes(self) -> bytes | None:
        """The C masker's codes for the current COPY's fields (`DataRowMasker.copy_layout`),
        found once per COPY."""
        assert self._row_masker is not None
        actions = self._copy
        known, codes = self._copy_c
        if known is not actions:
            codes = None if actions is None else self._row_masker.copy_layout(actions)
            self._copy_c = (actions, codes)
        return codes

    def _next_triggered(self, buf: bytes, pos: int, layout: bytes) -> int:
        """Where C must stop in the run of rows at `pos` (DataRows or COPY rows): the first
        row whose scanned cells hold a trigger, else the end of the run. The run's rows are
        looked through once, on the first call; the row path takes each triggered row, and
        the calls after it go on from the same list."""
        assert scanned_cells is not None and self._row_masker is not None
        run, end, triggered = self._triggered
        if run is not buf or pos >= end:
            end, text, rows = scanned_cells(buf, pos, layout, codec.MAX_MESSAGE)
            triggered = deque(self._row_masker.triggered_rows(text, rows))
            self._triggered = (buf, end, triggered)
        while triggered and triggered[0] < pos:
            triggered.popleft()
        return triggered[0] if triggered else end

    def _on_messages(
        self, buf: bytes, spans: list[tuple[int, int, int]], copied: int, out: list[bytes]
    ) -> int:
        """Follow (and mask) the messages `spans` of `buf`; returns the new `copied`."""
        kinds: bytes | None = None
        row_path_until = 0  # CopyData messages before this offset are not masked in bulk
        messages = enumerate(spans)
        for first, (kind, start, end) in messages:
            if (
                kind != 0x64
                or self._row_masker is not None  # runs of rows were for C to take
                or start < row_path_until
                or (layout := self._copy_layout()) is None
            ):
                replaced = self._on_message(kind, buf, start, end)
            else:
                # CopyData rows are masked together, up to the next message of another type.
                if kinds is None:
                    kinds = bytes(map(itemgetter(0), spans))
                other = _NOT_COPY_DATA.search(kinds, first)
                last = (len(spans) if other is None else other.start()) - 1
                replaced = self._mask_copy_run(layout, buf, spans[first : last + 1])
                if replaced is None:
                    row_path_until = spans[last][2]
                    replaced = self._on_message(kind, buf, start, end)
                else:
                    next(islice(messages, last - first, last - first), None)  # past the run
                    end = spans[last][2]
            if replaced is not None:
                if start - 5 > copied:
                    out.append(buf[copied : start - 5])
                out.append(replaced)
                copied = end
        return copied

    def _on_message(self, kind: int, buf: bytes, start: int, end: int) -> bytes | None:
        """Track state; return a replacement message, or None to pass the message through."""
        if kind == 0x44:  # 'D' DataRow
            self.rows += 1
            result = self._current_result()
            if result is None:
                return None
            return self._mask_row(result, buf, start, end)
        if kind == 0x64:  # 'd' CopyData
            if self._copy is not None:
                return self._mask_copy_row(buf[start:end])
            return None
        head = self._expect[0] if self._expect else None
        if kind == 0x54:  # 'T' RowDescription
            names, oids, formats = _parse_row_description(buf[start:end])
            if head is None:
                return None
            if head.kind == "describe_stmt":
                self._prepared.setdefault(head.name, _Prepared(None)).names = names
                self._prepared[head.name].oids = oids
                self._expect.popleft()
            elif head.kind == "describe_portal":
                portal = self._portals.get(head.name)
                if portal is not None:
                    portal.stmt = _Prepared(portal.stmt.plan, names, oids)
                self._expect.popleft()
            elif head.kind == "query":
                plan = head.plans[head.index] if head.index < len(head.plans) else None
                self._result = self._make_result(plan, names, oids, formats)
            return None
        if kind == 0x6E:  # 'n' NoData
            if head is not None and head.kind.startswith("describe"):
                self._expect.popleft()
            return None
        if kind == 0x74:  # 't' ParameterDescription: the RowDescription or NoData follows
            return None
        if kind == 0x31:  # '1' ParseComplete
            if head is not None and head.kind == "parse":
                self._prepared[head.name] = _Prepared(head.plan)
                self._expect.popleft()
            return None
        if kind == 0x32:  # '2' BindComplete
            if head is not None and head.kind == "bind":
                stmt = self._prepared.get(head.stmt) or _Prepared(None)
                self._portals[head.name] = _Portal(stmt, head.formats)
                self._expect.popleft()
            return None
        if kind == 0x33:  # '3' CloseComplete
            if head is not None and head.kind == "close":
                self._expect.popleft()
            return None
        if kind in (0x43, 0x49, 0x73):  # CommandComplete, EmptyQueryResponse, PortalSuspended
            self._result = None
            if head is not None and head.kind in ("execute", "fastpath"):
                self._expect.popleft()
            elif head is not None and head.kind == "query":
                head.index += 1
            return None
        if kind == 0x56:  # 'V' FunctionCallResponse
            if head is not None and head.kind == "fastpath":
                self._expect.popleft()
            return None
        if kind == 0x48:  # 'H' CopyOutResponse
            body = buf[start:end]
            count = int.from_bytes(body[1:3], "big")
            plan = None
            if head is not None and head.kind == "query" and head.index < len(head.plans):
                plan = head.plans[head.index]
            elif head is not None and head.kind == "execute":
                portal = self._portals.get(head.name)
                plan = portal.stmt.plan if portal else None
            self._copy = plan.copy_actions(count) if plan is not None else None
            if self._copy is not None and not any(self._copy):
                self._copy = None  # nothing to mask: rows pass as they are
            elif body[0] == 1 and self._copy is not None:
                # Binary COPY cannot be masked field by field: refuse to leak it.
                self._copy = tuple(ColumnAction("binary") for _ in range(count))
            return None
        if kind == 0x63:  # 'c' CopyDone
            self._copy = None
            return None
        if kind in (0x45, 0x4E):  # ErrorResponse, NoticeResponse
            if kind == 0x45:
                self._result = None
                self._copy = None
                self._on_error(head)
            fields = codec.parse_error_fields(buf[start:end])
            masked = self._mask_error(fields)
            if masked == fields:
                return None
            return _error_message(kind, masked)
        if kind == 0x5A:  # 'Z' ReadyForQuery
            self._result = None
            self._copy = None
            while self._expect:
                done = self._expect.popleft()
                if done.kind in ("sync", "query"):
                    break
            self._portals.clear()  # unnamed and named portals end with the transaction's sync
            return None
        return None

    def _on_error(self, head: _Expect | None) -> None:
        if head is None or head.kind == "query":
            if head is not None:
                head.index = len(head.plans)  # the rest of a multi-statement query is skipped
            return
        # Extended protocol: the target skips everything up to the next Sync.
        while self._expect and self._expect[0].kind != "sync":
            self._expect.popleft()

    def _current_result(self) -> _Result | None:
        """The result whose rows are streaming: a query's (set by its RowDescription) or, found
        here, the executed portal's."""
        if self._result is not None:
            return self._result
        head = self._expect[0] if self._expect else None
        if head is None or head.kind != "execute":
            return None
        portal = self._portals.get(head.name)
        if portal is None or portal.stmt.plan is None:
            return None
        stmt = portal.stmt
        formats = _expand_formats(portal.formats, len(stmt.names))
        self._result = self._make_result(stmt.plan, stmt.names, stmt.oids, formats)
        return self._result

    def _make_result(
        self,
        plan: StatementPlan | None,
        names: tuple[str, ...],
        oids: tuple[int, ...],
        formats: tuple[int, ...],
    ) -> _Result | None:
        if plan is None:
            return None
        actions = plan.actions(names)
        if not any(actions):
            return None
        layout = self._row_masker.layout(actions, oids) if self._row_masker else None
        scans = layout is not None and not SCANNED.isdisjoint(layout)
        return _Result(actions, oids, tuple(f == 1 for f in formats), layout, scans)

    def _mask_row(self, result: _Result, buf: bytes, start: int, end: int) -> bytes | None:
        count = int.from_bytes(buf[start : start + 2], "big")
        pos = start + 2
        cells: list[bytes] = []
        changed = False
        actions = result.actions
        for i in range(count):
            size = int.from_bytes(buf[pos : pos + 4], "big", signed=True)
            pos += 4
            if size < 0:
                cells.append(b"\xff\xff\xff\xff")
                continue
            raw = buf[pos : pos + size]
            pos += size
            action = actions[i] if i < len(actions) else None
            if action is None:
                cells.append(size.to_bytes(4, "big") + raw)
                continue
            new = self._mask_cell(raw, result.oids[i], result.binary[i], action)
            if new is raw:
                cells.append(size.to_bytes(4, "big") + raw)
                continue
            changed = True
            self.masked_cells += 1
            if new is None:
                cells.append(b"\xff\xff\xff\xff")
            else:
                cells.append(len(new).to_bytes(4, "big") + new)
        if not changed:
            return None
        body = count.to_bytes(2, "big") + b"".join(cells)
        return b"D" + (len(body) + 4).to_bytes(4, "big") + body

    def _copy_layout(self) -> CopyLayout | None:
        """How to mask the current COPY's rows in bulk, if they can be (see `copy_text`)."""
        actions = self._copy
        if actions is None or self._copy_masker is None:
            return None
        known, layout = self._copy_bulk
        if known is not actions:
            layout = self._copy_masker.layout(actions)
            self._copy_bulk = (actions, layout)
            self._bulk_misses = self._bulk_rest = 0
        return layout

    def _mask_copy_run(
        self, layout: CopyLayout, buf: bytes, spans: list[tuple[int, int, int]]
    ) -> bytes | None:
        """The messages for consecutive CopyData messages `spans` of `buf`, or None to leave
        them to the row path: when the layout cannot mask any of them, and for a while after
        (1, 3, 7... up to 63 runs), so that a column of NULLs or other values than emails costs
        little more than before."""
        if self._bulk_rest:
            self._bulk_rest -= 1
            return None
        rows = [buf[start:end] for _, start, end in spans]
        result = layout.mask(rows, self._copy_row_message)
        if result is None:
            self._bulk_misses = min(self._bulk_misses + 1, 6)
            self._bulk_rest = (1 << self._bulk_misses) - 1
            return None
        self._bulk_misses = 0
        masked, cells = result
        self.masked_cells += cells
        return masked

    def _copy_row_message(self, body: bytes) -> bytes:
        """The CopyData message the row path sends for `body`."""
        masked = self._mask_copy_row(body)
        return _copy_data(body) if masked is None else masked

    def _mask_copy_row(self, body: bytes) -> bytes | None:
        actions = self._copy
        assert actions is not None
        if actions and actions[0] is not None and actions[0].how == "binary":
            self.masked_cells += 1
            return None if not body else _copy_data(b"")
        line = body[:-1] if body.endswith(b"\n") else body
        fields = line.split(b"\t")
        if len(fields) != len(actions) and any(actions):
            return self._mask_csv_row(body, actions)
        changed = False
        for i, value in enumerate(fields):
            action = actions[i] if i < len(actions) else None
            if action is None or value == b"\\N":
                continue
            new = self._mask_cell(value, 25, False, action)
            if new is value:
                continue
            fields[i] = b"\\N" if new is None else _copy_escape(new)
            changed = True
            self.masked_cells += 1
        if not changed:
            return None
        return _copy_data(b"\t".join(fields) + (b"\n" if body.endswith(b"\n") else b""))

    def _mask_csv_row(self, body: bytes, actions: tuple[ColumnAction | None, ...]) -> bytes:
        """A COPY row that is not in the text format: CSV, or else masked whole."""
        text = body.decode("utf-8", "replace")
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error:  # a bare "\r" in an unquoted field, say: not CSV PostgreSQL writes
            rows = []
        if len(rows) == 1 and len(rows[0]) == len(actions):
            fields = rows[0]
            for i, action in enumerate(actions):
                if action is None or fields[i] == "":
                    continue
                new = self._mask_cell(fields[i].encode(), 25, False, action)
                fields[i] = "" if new is None else new.decode("utf-8", "replace")
                self.masked_cells += 1
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow(fields)
            return _copy_data(out.getvalue().encode())
        # Unknown delimiter or unreadable CSV: no field of it can be trusted to be clear.
        self.masked_cells += len(actions)
        return _copy_data(b"****\n")


def _copy_escape(value: bytes) -> bytes:
    return (
        value.replace(b"\\", b"\\\\")
        .replace(b"\t", b"\\t")
        .replace(b"\n", b"\\n")
        .replace(b"\r", b"\\r")
    )


def _copy_data(payload: bytes) -> bytes:
    return b"d" + (len(payload) + 4).to_bytes(4, "big") + payload


def _error_message(kind: int, fields: dict[str, str]) -> bytes:
    body = (
        b"".join(
            k.encode() + v.replace("\x00", "\ufffd").encode() + b"\x00" for k, v in fields.items()
        )
        + b"\x00"
    )
    return bytes([kind]) + (len(body) + 4).to_bytes(4, "big") + body


def _parse_row_description(
    body: bytes,
) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """Names, type OIDs and format codes of a RowDescription (protocol 55.7)."""
    count = int.from_bytes(body[:2], "big")
    pos = 2
    names, oids, formats = [], [], []
    for _ in range(count):
        nul = body.index(b"\x00", pos)
        names.append(body[pos:nul].decode("utf-8", "replace"))
        pos = nul + 1
        oids.append(int.from_bytes(body[pos + 6 : pos + 10], "big"))
        formats.append(int.from_bytes(body[pos + 16 : pos + 18], "big"))
        pos += 18
    return tuple(names), tuple(oids), tuple(formats)


def _parse_bind(body: bytes) -> tuple[str, str, tuple[int, ...]]:
    """Portal, statement and result-column format codes of a Bind message (protocol 55.7)."""
    nul = body.index(b"\x00")
    portal = body[:nul].decode("utf-8", "replace")
    pos = nul + 1
    nul = body.index(b"\x00", pos)
    stmt = body[pos:nul].decode("utf-8", "replace")
    pos = nul + 1
    n = int.from_bytes(body[pos : pos + 2], "big")
    pos += 2 + 2 * n
    n = int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    for _ in range(n):
        size = int.from_bytes(body[pos : pos + 4], "big", signed=True)
        pos += 4 + max(size, 0)
    n = int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    formats = tuple(int.from_bytes(body[pos + 2 * i : pos + 2 * i + 2], "big") for i in range(n))
    return portal, stmt, formats


def _expand_formats(formats: tuple[int, ...], count: int) -> tuple[int, ...]:
    """Bind's result formats: none = all text, one = applies to all, else one per column."""
    if not formats:
        return (0,) * count
    if len(formats) == 1:
        return formats * count
    return formats
