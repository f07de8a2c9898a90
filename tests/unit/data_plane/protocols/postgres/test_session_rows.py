"""Results through `ServerStream`: masking runs of DataRows in C gives, byte for byte, what the
row-at-a-time path through `masks.mask_cell` gives, whatever the columns, types, formats,
actions, values, scanner and chunking, malformed rows included."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres import session
from data_plane.protocols.postgres.session import ServerStream
from lockgate.masking import masks
from lockgate.masking.data_rows import DataRowMasker
from lockgate.masking.detectors import ALL, Scanner
from lockgate.masking.plan import ColumnAction
from tests.unit.data_plane.protocols.postgres.test_session_copy import message
from tests.unit.lockgate.masking.test_copy_text import (
    DETECTOR_WORDS,
    NEAR_MISSES,
    NOISE,
    PLAIN_EMAILS,
)

FUZZ = settings(max_examples=400, deadline=None)
SCANNERS: list[Scanner | None] = [
    None,
    Scanner(["email"]),
    Scanner(["phone"]),
    Scanner(["credit_card", "us_ssn"]),
    Scanner(ALL),
]
# text, varchar, name, int4, json, jsonb, text[], int8, unknown
OIDS = [25, 1043, 19, 23, 114, 3802, 1009, 20, 705]
ACTIONS = [
    None,
    ColumnAction("column"),
    ColumnAction("derived"),
    ColumnAction("json", frozenset({"email"})),
    ColumnAction("detect"),
]

# The C module is built by `make setup`; without it the stream would test the row path twice.
assert session.mask_data_rows is not None


@dataclass(frozen=True)
class FixedPlan:
    """A statement plan whose result columns get `fixed` actions, by position."""

    fixed: tuple[ColumnAction | None, ...]

    def actions(self, names: Sequence[str]) -> tuple[ColumnAction | None, ...]:
        return tuple(self.fixed[i] if i < len(self.fixed) else None for i in range(len(names)))


def row_description(oids: Sequence[int], formats: Sequence[int]) -> bytes:
    fields = b"".join(
        f"c{i}".encode() + b"\x00" + struct.pack("!ihihih", 0, 0, oid, -1, -1, fmt)
        for i, (oid, fmt) in enumerate(zip(oids, formats, strict=True))
    )
    return message(b"T", struct.pack("!h", len(oids)) + fields)


def data_row(cells: Sequence[bytes | None]) -> bytes:
    body = struct.pack("!h", len(cells)) + b"".join(
        b"\xff\xff\xff\xff" if c is None else struct.pack("!i", len(c)) + c for c in cells
    )
    return message(b"D", body)


NOTICE = message(b"N", b"SNOTICE\x00Mbetween rows\x00\x00")
DONE = message(b"C", b"SELECT 1\x00")
READY = message(b"Z", b"I")
CELLS = st.one_of(
    PLAIN_EMAILS.map(str.encode),
    PLAIN_EMAILS.map(str.encode),
    NEAR_MISSES.map(str.encode),
    NOISE.map(str.encode),
    DETECTOR_WORDS,
    st.binary(max_size=8),
    st.none(),
)


@st.composite
def malformed(draw: st.DrawFn, columns: int) -> bytes:
    """A DataRow the C path must leave to the row path: cells that overrun or fall short of
    the message, a negative length other than -1, bytes after the last cell."""
    cells = [draw(CELLS) for _ in range(columns)]
    good = data_row(cells)
    kind = draw(st.sampled_from(["count", "trailing", "negative", "overrun"]))
    body = bytearray(good[5:])
    if kind == "count":
        body[0:2] = struct.pack("!h", draw(st.integers(0, columns + 2)))
    elif kind == "trailing":
        body += draw(st.binary(min_size=1, max_size=3))
    elif kind == "negative":
        body[2:6] = struct.pack("!i", draw(st.integers(-5, -2)))
    else:
        body[2:6] = struct.pack("!i", len(body) + draw(st.integers(0, 3)))
    return message(b"D", bytes(body))


@st.composite
def results(draw: st.DrawFn) -> tuple[list[FixedPlan], bytes]:
    """The reply to a query of one or two SELECTs: random column types, formats and actions,
    runs of random rows, now and then a notice or a malformed row between rows."""
    plans, parts = [], []
    for _ in range(draw(st.integers(1, 2))):
        columns = draw(st.integers(1, 4))
        oids = [draw(st.sampled_from(OIDS)) for _ in range(columns)]
        formats = [draw(st.sampled_from([0, 0, 0, 1])) for _ in range(columns)]
        plans.append(FixedPlan(tuple(draw(st.sampled_from(ACTIONS)) for _ in range(columns))))
        parts.append(row_description(oids, formats))
        for _ in range(draw(st.integers(0, 30))):
            choice = draw(st.integers(0, 40))
            if choice == 0:
                parts.append(NOTICE)
            elif choice == 1:
                parts.append(draw(malformed(columns)))
            else:
                parts.append(data_row([draw(CELLS) for _ in range(columns)]))
        parts.append(DONE)
    parts.append(READY)
    return plans, b"".join(parts)


def stream(plans: list[FixedPlan], scanner: Scanner | None, *, in_c: bool) -> ServerStream:
    """A stream masking as the adapter does; `in_c=False` forces the row-at-a-time path."""

    def mask_cell(raw: bytes, oid: int, binary: bool, action: ColumnAction) -> bytes | None:
        return masks.mask_cell(
            raw, oid=oid, binary=binary, how=action.how, keys=action.keys, scanner=scanner
        )

    s = ServerStream(
        mask_cell, lambda fields: fields, row_masker=DataRowMasker(scanner) if in_c else None
    )
    s.expect_query(tuple(plans))  # type: ignore[arg-type]
    return s


Outcome = tuple[bytes, int, int] | str


def both(
    plans: list[FixedPlan], scanner: Scanner | None, data: bytes, cuts: Iterable[int] = ()
) -> tuple[Outcome, Outcome]:
    """(output, masked cells, rows) through C and through the row path on the same chunks, or
    the error each raised."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    outcomes: list[Outcome] = []
    for in_c in (True, False):
        s = stream(plans, scanner, in_c=in_c)
        try:
            out = b"".join(s.feed(data[a:b]) for a, b in pairwise(points))
        except Exception as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
        else:
            outcomes.append((out, s.masked_cells, s.rows))
    return outcomes[0], outcomes[1]


@FUZZ
@given(results(), st.sampled_from(SCANNERS), st.lists(st.integers(0, 3000), max_size=6))
def test_rows_masked_in_c_are_the_rows_the_row_path_gives(
    result: tuple[list[FixedPlan], bytes], scanner: Scanner | None, cuts: list[int]
) -> None:
    plans, data = result
    in_c, row_path = both(plans, scanner, data, cuts)
    assert in_c == row_path


def count_row_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = ServerStream._mask_row

    def counting(self: ServerStream, *args: object) -> bytes | None:
        calls.append(1)
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ServerStream, "_mask_row", counting)
    return calls


def test_a_result_of_plain_emails_never_takes_the_row_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_row_path(monkeypatch)
    plans = [FixedPlan((None, ColumnAction("column"), ColumnAction("derived")))]
    rows = [data_row([b"%d" % i, b"user%d@example.com" % i, b"x"]) for i in range(500)]
    data = row_description([23, 25, 25], [0, 0, 0]) + b"".join(rows) + DONE + READY
    s = stream(plans, None, in_c=True)
    out = b"".join(s.feed(data[i : i + 4096]) for i in range(0, len(data), 4096))
    assert calls == []
    assert (s.rows, s.masked_cells) == (500, 1000)
    assert data_row([b"7", b"u***@example.com", b"****"]) in out
    assert b"user7@" not in out
    assert (out, s.masked_cells, s.rows) == both(plans, None, data)[1]


def test_rows_c_cannot_give_take_the_row_path_in_their_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_row_path(monkeypatch)
    plans = [FixedPlan((ColumnAction("column"),))]
    cells = [b"a@b.com", b" padded@b.com ", b"c@d.org", None, b"not an email", b"e@f.net"]
    data = row_description([25], [0]) + b"".join(data_row([c]) for c in cells) + DONE + READY
    s = stream(plans, None, in_c=True)
    out = s.feed(data)
    assert len(calls) == 2  # the padded email and the text that is not one
    expected = [b"a***@b.com", b"p***@b.com", b"c***@d.org", None, b"****", b"e***@f.net"]
    assert (
        out == row_description([25], [0]) + b"".join(data_row([c]) for c in expected) + DONE + READY
    )
    assert (s.rows, s.masked_cells) == (6, 5)


def test_a_result_with_nothing_to_mask_passes_through_as_it_came() -> None:
    plans = [FixedPlan((None, None))]
    data = (
        row_description([25, 23], [0, 0])
        + b"".join(data_row([b"a@b.com", b"1"]) for _ in range(100))
        + DONE
        + READY
    )
    s = stream(plans, None, in_c=True)
    assert s.feed(data) == data
    assert (s.rows, s.masked_cells) == (100, 0)


def test_scanned_columns_take_the_row_path_only_in_rows_with_a_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_row_path(monkeypatch)
    scanner = Scanner(["credit_card", "us_ssn"])
    plans = [FixedPlan((None, ColumnAction("column"), ColumnAction("detect")))]
    notes = [b"paid", b"card 4242 4242 4242 4242", b"", None, b"ssn 123-45-6789", b"order 42"]
    rows = [
        data_row([b"%d" % i, b"user%d@example.com" % i, notes[i % len(notes)]]) for i in range(600)
    ]
    data = row_description([23, 25, 25], [0, 0, 0]) + b"".join(rows) + DONE + READY
    s = stream(plans, scanner, in_c=True)
    out = b"".join(s.feed(data[i : i + 5000]) for i in range(0, len(data), 5000))
    assert len(calls) == 200  # the card and SSN rows
    assert data_row([b"6", b"****", b"paid"]) in out
    assert data_row([b"7", b"****", b"card **** **** **** 4242"]) in out
    assert (out, s.masked_cells, s.rows) == both(plans, scanner, data)[1]


def test_json_columns_and_triggered_cells_stay_on_the_row_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_row_path(monkeypatch)
    for action, oid in [(ColumnAction("column"), 114), (ColumnAction("detect"), 25)]:
        plans = [FixedPlan((action,))]
        data = row_description([oid], [0]) + data_row([b'"a@b.com"']) + DONE + READY
        row_path = both(plans, Scanner(ALL), data)[1]
        calls.clear()
        s = stream(plans, Scanner(ALL), in_c=True)
        assert (s.feed(data), s.masked_cells, s.rows) == row_path
        assert len(calls) == 1
