"""COPY ... TO STDOUT through `ServerStream`: masking runs of rows in bulk, in C (`_rows`) or
with regular expressions (`copy_text`, without the C module), gives, byte for byte, what the
row-at-a-time path gives, whatever the rows, actions, scanner and chunking."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres.session import ServerStream
from lockgate.masking import masks
from lockgate.masking.copy_text import CopyTextMasker
from lockgate.masking.data_rows import DataRowMasker
from lockgate.masking.detectors import ALL, Scanner
from lockgate.masking.plan import ColumnAction, RulesInForce, StatementPlan
from lockgate.sql.lineage import Lineage, OutputColumn
from tests.unit.lockgate.masking.test_copy_text import DETECTOR_WORDS, PLAIN_EMAILS, runs

FUZZ = settings(max_examples=300, deadline=None)
SCANNERS: list[Scanner | None] = [None, Scanner(["email"]), Scanner(["phone"]), Scanner(ALL)]
PATHS = ("c", "regex", "rows")  # bulk in C, bulk with regular expressions, row by row
BULK = pytest.mark.parametrize("path", PATHS[:2])


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def copy_out_response(columns: int, binary: bool = False) -> bytes:
    return message(b"H", bytes([binary]) + struct.pack("!h", columns) + b"\x00\x00" * columns)


def notice(text: str) -> bytes:
    return message(b"N", b"SNOTICE\x00M" + text.encode() + b"\x00\x00")


COPY_DONE = message(b"c", b"") + message(b"C", b"COPY 1\x00")
COPY_END = COPY_DONE + message(b"Z", b"I")


def plan(
    columns: int, masked: Iterable[int], derived: Iterable[int] = (), detectors: Iterable[str] = ()
) -> StatementPlan:
    """A plan for `COPY (SELECT c0, c1, ...) TO STDOUT` where rules mask `masked` (shown with
    their shape) and `derived` (computed from a masked column: fully masked)."""
    derived = set(derived)
    hidden = set(masked) | derived
    lineage = Lineage(
        tuple(
            OutputColumn(
                f"c{i}", frozenset({f"public.t.c{i}"}), "derived" if i in derived else "direct"
            )
            for i in range(columns)
        ),
        complete=True,
        tables=frozenset({"public.t"}),
    )
    rules = RulesInForce(
        ("rule",), tuple(("*", "t", f"c{i}") for i in sorted(hidden)), frozenset(detectors), False
    )
    return StatementPlan(rules, lineage)


def stream(statement: StatementPlan, scanner: Scanner | None, *, path: str) -> ServerStream:
    """A stream masking as the adapter does, for a query of one or two COPYs of `statement`,
    with runs of rows masked by `path` (one of PATHS)."""

    def mask_cell(raw: bytes, oid: int, binary: bool, action: ColumnAction) -> bytes | None:
        return masks.mask_cell(
            raw, oid=oid, binary=binary, how=action.how, keys=action.keys, scanner=scanner
        )

    s = ServerStream(
        mask_cell,
        lambda fields: fields,
        CopyTextMasker(scanner) if path != "rows" else None,
        DataRowMasker(scanner) if path == "c" else None,
    )
    s.expect_query((statement, statement))
    return s


def feed(s: ServerStream, data: bytes, cuts: Iterable[int] = ()) -> bytes:
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return b"".join(s.feed(data[a:b]) for a, b in pairwise(points))


Outcome = tuple[bytes, int, int] | str


def agreed(
    statement: StatementPlan, scanner: Scanner | None, data: bytes, cuts: Iterable[int] = ()
) -> Outcome:
    """(output, masked cells, rows) of every path on the same chunks, or the error they raise,
    once the three are found to be the same."""
    cuts = list(cuts)
    results: dict[str, Outcome] = {}
    for path in PATHS:
        s = stream(statement, scanner, path=path)
        try:
            out = feed(s, data, cuts)
        except Exception as exc:
            results[path] = f"{type(exc).__name__}: {exc}"
        else:
            results[path] = (out, s.masked_cells, s.rows)
    assert results["c"] == results["rows"], "C"
    assert results["regex"] == results["rows"], "regular expressions"
    return results["rows"]


def outcome(result: Outcome) -> tuple[bytes, int, int]:
    assert not isinstance(result, str), result
    return result


@st.composite
def copies(draw: st.DrawFn) -> tuple[StatementPlan, bytes]:
    """The reply to one or two COPYs: columns with random actions, runs of random rows, now and
    then a notice between rows, sometimes in binary format."""
    columns = draw(st.integers(1, 4))
    masked = draw(st.sets(st.integers(0, columns - 1), max_size=columns))
    derived: set[int] = set()
    detectors: tuple[str, ...] = ()
    if draw(st.integers(0, 3)) == 0:  # actions the bulk path leaves to the row path
        derived = draw(st.sets(st.integers(0, columns - 1), max_size=1)) - masked
        detectors = draw(st.sampled_from([(), ("email",), ("phone",)]))
    parts = []
    for _ in range(draw(st.integers(1, 2))):
        parts.append(copy_out_response(columns, binary=draw(st.integers(0, 9)) == 0))
        for _ in range(draw(st.integers(1, 3))):
            rows = draw(runs(columns, tuple(sorted(masked))))
            parts.extend(message(b"d", row) for row in rows)
            if draw(st.booleans()):
                parts.append(notice("between rows"))
        parts.append(COPY_DONE)
    parts.append(message(b"Z", b"I"))
    return plan(columns, masked, derived, detectors), b"".join(parts)


@FUZZ
@given(copies(), st.sampled_from(SCANNERS), st.lists(st.integers(0, 2000), max_size=6))
def test_bulk_masking_gives_what_the_row_path_gives(
    copy: tuple[StatementPlan, bytes], scanner: Scanner | None, cuts: list[int]
) -> None:
    statement, data = copy
    agreed(statement, scanner, data, cuts)


@FUZZ
@given(
    st.lists(PLAIN_EMAILS.map(str.encode), min_size=1, max_size=40),
    st.lists(st.integers(0, 4000), max_size=8),
)
def test_runs_cut_anywhere_by_the_network_give_the_same_bytes(
    emails: list[bytes], cuts: list[int]
) -> None:
    data = (
        copy_out_response(3)
        + b"".join(message(b"d", b"%d\t%s\tnote\n" % (i, e)) for i, e in enumerate(emails))
        + COPY_END
    )
    assert outcome(agreed(plan(3, [1]), None, data, cuts))[1] == len(emails)


def count_row_path(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The rows `ServerStream._mask_copy_row` is called with from now on."""
    calls: list[bytes] = []
    row_path = ServerStream._mask_copy_row

    def counted(self: ServerStream, body: bytes) -> bytes | None:
        calls.append(body)
        return row_path(self, body)

    monkeypatch.setattr(ServerStream, "_mask_copy_row", counted)
    return calls


@BULK
def test_a_copy_of_plain_emails_never_takes_the_row_path(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    rows = [b"%d\tuser%d@example.com\t%s\n" % (i, i, b"n" * 68) for i in range(1000)]
    data = copy_out_response(3) + b"".join(message(b"d", r) for r in rows) + COPY_END
    s = stream(plan(3, [1]), None, path=path)
    calls = count_row_path(monkeypatch)
    out = feed(s, data, range(0, len(data), 65536))
    assert calls == []
    assert s.masked_cells == 1000
    assert b"u***@example.com" in out
    assert b"user1@" not in out


def test_rows_the_bulk_path_cannot_prove_are_masked_row_by_row() -> None:
    rows = [b"1\tjane@example.com\n", b"2\t\\N\n", b"3\t  jane@example.com \n", b"4\tJane\n"]
    data = copy_out_response(2) + b"".join(message(b"d", r) for r in rows) + COPY_END
    out, cells, _ = outcome(agreed(plan(2, [1]), None, data))
    assert message(b"d", b"1\tj***@example.com\n") in out
    assert message(b"d", b"2\t\\N\n") in out
    assert message(b"d", b"3\tj***@example.com\n") in out
    assert message(b"d", b"4\t****\n") in out
    assert cells == 3


@BULK
def test_runs_of_nulls_go_to_the_row_path_then_emails_to_the_bulk_path_again(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    rows = [b"%d\t\\N\tnote\n" % i for i in range(10000)]
    rows += [b"%d\tuser%d@example.com\tnote\n" % (i, i) for i in range(30000)]
    data = copy_out_response(3) + b"".join(message(b"d", r) for r in rows) + COPY_END
    cuts = range(0, len(data), 16384)
    agreed(plan(3, [1]), None, data, cuts)
    calls = count_row_path(monkeypatch)
    feed(stream(plan(3, [1]), None, path=path), data, cuts)
    emails = [c for c in calls if b"@" in c]
    assert len(calls) - len(emails) == 10000  # the NULLs, row by row
    if path == "c":
        assert emails == []  # C takes each row it can, wherever it is
    else:
        # The emails of the runs the stream waits before trying the expressions again are
        # masked row by row; the other emails in bulk.
        assert 0 < len(emails) < 5000


@BULK
def test_a_copy_with_nothing_to_mask_passes_through(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    data = copy_out_response(2) + message(b"d", b"1\tjane@example.com\n") + COPY_END
    s = stream(plan(2, []), None, path=path)
    calls = count_row_path(monkeypatch)
    assert feed(s, data) == data
    assert calls == []
    assert s.masked_cells == 0


def test_binary_copy_is_still_withheld() -> None:
    data = copy_out_response(1, binary=True) + message(b"d", b"PGCOPY\n\xff\r\n\x00") + COPY_END
    out = outcome(agreed(plan(1, [0]), None, data))[0]
    assert message(b"d", b"") in out
    assert b"PGCOPY" not in out


@pytest.mark.parametrize("scanner", SCANNERS, ids=["all", "email", "phone", "ALL"])
def test_csv_copy_is_masked_as_before(scanner: Scanner | None) -> None:
    rows = [b'1,jane@example.com,"a\tb"\n', b"2,john@example.com,c\n"]
    data = copy_out_response(3) + b"".join(message(b"d", r) for r in rows) + COPY_END
    assert b"jane@" not in outcome(agreed(plan(3, [1]), scanner, data))[0]


@pytest.mark.parametrize("scanner", SCANNERS, ids=["all", "email", "phone", "ALL"])
def test_a_row_no_csv_reader_accepts_is_masked_whole_and_the_stream_goes_on(
    scanner: Scanner | None,
) -> None:
    # A bare "\r" in an unquoted field: PostgreSQL never writes it, Python's CSV reader
    # rejects it; the row must be withheld, not crash the session.
    rows = [b"1,jane@example.com,a\rb\n", b"2,john@example.com,c\n"]
    data = copy_out_response(3) + b"".join(message(b"d", r) for r in rows) + COPY_END
    out, cells, _ = outcome(agreed(plan(3, [1]), scanner, data))
    assert message(b"d", b"****\n") in out
    assert b"jane@" not in out and b"john@" not in out
    assert out.endswith(COPY_END)
    assert cells == 3 + 1  # the whole first row, the email of the second


DETECTOR_SETS = [("credit_card", "us_ssn"), ("phone",), ("email",), tuple(ALL)]
# Fields with and without a trigger, escaped as COPY writes them, NULLs among them.
DETECT_FIELDS = st.one_of(
    DETECTOR_WORDS,
    st.just(b"\\N"),
    PLAIN_EMAILS.map(str.encode),
)


@FUZZ
@given(
    st.integers(1, 4),
    st.sampled_from(DETECTOR_SETS),
    st.data(),
    st.lists(st.integers(0, 3000), max_size=6),
)
def test_copy_rows_with_detectors_on_are_masked_in_c_as_the_row_path_masks_them(
    columns: int, detectors: tuple[str, ...], data: st.DataObject, cuts: list[int]
) -> None:
    masked = data.draw(st.sets(st.integers(0, columns - 1), max_size=columns))
    rows = data.draw(
        st.lists(st.lists(DETECT_FIELDS, min_size=columns, max_size=columns), max_size=30)
    )
    if data.draw(st.booleans()) and rows:  # a row of another width: the row path's
        rows[0] = rows[0] + [b"x"]
    body = b"".join(message(b"d", b"\t".join(fields) + b"\n") for fields in rows)
    reply = copy_out_response(columns) + body + COPY_END
    agreed(plan(columns, masked, detectors=detectors), Scanner(detectors), reply, cuts)


def test_copy_rows_with_detectors_on_take_the_row_path_only_with_a_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notes = [b"paid", b"card 4242 4242 4242 4242", b"\\N", b"ssn 123-45-6789", b"order 42"]
    rows = [b"%d\tuser%d@example.com\t%s\n" % (i, i, notes[i % 5]) for i in range(500)]
    data = copy_out_response(3) + b"".join(message(b"d", r) for r in rows) + COPY_END
    statement = plan(3, [1], detectors=("credit_card", "us_ssn"))
    scanner = Scanner(["credit_card", "us_ssn"])
    s = stream(statement, scanner, path="c")
    calls = count_row_path(monkeypatch)
    out = feed(s, data, range(0, len(data), 4096))
    assert len(calls) == 200  # the card and SSN rows
    assert message(b"d", b"5\t****\tpaid\n") in out
    assert message(b"d", b"6\t****\tcard **** **** **** 4242\n") in out
    assert message(b"d", b"7\t****\t\\N\n") in out
    monkeypatch.undo()
    assert (out, s.masked_cells, s.rows) == outcome(agreed(statement, scanner, data))
