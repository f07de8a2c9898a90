"""The C masker of result rows (`_rows`), socket-free: its email test is the regular expression
`mask_cell` uses, a COPY row is taken exactly when `copy_text` would take it, and no input
crashes it or makes it claim bytes it did not frame."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres import codec
from data_plane.protocols.postgres._rows import mask_copy_rows, mask_data_rows
from lockgate.masking import masks
from lockgate.masking.copy_text import CopyLayout
from lockgate.masking.data_rows import EMAIL, NULL, PASS, STAR
from tests.unit.data_plane.protocols.postgres.test_session_rows import data_row
from tests.unit.lockgate.masking.test_copy_text import (
    NEAR_MISSES,
    NOISE,
    PLAIN_EMAILS,
    frame,
    runs,
)

MAX = codec.MAX_MESSAGE


def mask_rows(buf: bytes, pos: int, layout: bytes | None) -> tuple[int, bytes | None, int, int]:
    return mask_data_rows(buf, pos, layout, MAX)


@settings(max_examples=600, deadline=None)
@given(st.one_of(PLAIN_EMAILS, NEAR_MISSES, NOISE, st.text(max_size=12)))
def test_an_email_cell_is_taken_exactly_when_it_is_a_plain_email(value: str) -> None:
    row = data_row([value.encode()])
    end, masked, rows, cells = mask_rows(row, 0, bytes([EMAIL]))
    if masks._PLAIN_EMAIL.fullmatch(value):
        assert (end, rows, cells) == (len(row), 1, 1)
        assert masked == data_row([masks.mask_column_value(value, None).encode()])
    else:
        assert (end, masked, rows, cells) == (0, None, 0, 0)


def test_each_code_gives_its_mask_and_nulls_stay_null() -> None:
    row = data_row([b"1", b"jane@example.com", b"x", b"42", None])
    layout = bytes([PASS, EMAIL, STAR, NULL, EMAIL])
    end, masked, rows, cells = mask_rows(b"junk" + row + b"Z\x00\x00\x00\x05I", 4, layout)
    assert (end, rows, cells) == (4 + len(row), 1, 3)
    assert masked == data_row([b"1", b"j***@example.com", b"****", None, None])


def test_a_run_ends_at_another_message_or_an_incomplete_one() -> None:
    rows = [data_row([b"a@b.com"]), data_row([None]), data_row([b"c@d.org"])]
    run = b"".join(rows)
    assert mask_rows(run + b"C\x00", 0, None) == (len(run), None, 3, 0)
    end, masked, count, cells = mask_rows(run + rows[0][:-1], 0, bytes([EMAIL]))
    assert (end, count, cells) == (len(run), 3, 2)
    assert masked == data_row([b"a***@b.com"]) + rows[1] + data_row([b"c***@d.org"])
    assert mask_rows(b"D\x00\x00\x00\x03", 0, None) == (0, None, 0, 0)  # a length under 4


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="cell code"):
        mask_rows(data_row([b"x"]), 0, b"\x09")
    with pytest.raises(ValueError, match="cell code"):
        mask_copy_rows(b"", 0, bytes([STAR]), MAX)
    with pytest.raises(ValueError, match="outside"):
        mask_rows(b"", 1, None)
    with pytest.raises(TypeError):
        mask_rows(b"", 0, "layout")  # type: ignore[arg-type]


@settings(max_examples=600, deadline=None)
@given(st.integers(1, 4), st.data())
def test_a_copy_row_is_taken_exactly_when_the_expressions_take_it(
    columns: int, data: st.DataObject
) -> None:
    masked = tuple(sorted(data.draw(st.sets(st.integers(0, columns - 1), min_size=1))))
    layout = CopyLayout(columns, masked)
    rows = data.draw(runs(columns, masked))
    for row in rows:
        taken = layout.mask([row], lambda _: b"not taken")
        end, out, count, cells = mask_copy_rows(frame(row), 0, layout.codes, MAX)
        if taken is None or taken[0] == b"not taken":
            assert (end, out, count, cells) == (0, None, 0, 0), row
        else:
            assert (out, cells) == taken, row
            assert (end, count) == (len(row) + 5, 1)


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=200),
    st.one_of(st.none(), st.binary(max_size=5).map(lambda b: bytes(x % 4 for x in b))),
    st.integers(0, 200),
)
def test_arbitrary_bytes_never_crash_it_or_claim_what_it_did_not_frame(
    data: bytes, layout: bytes | None, pos: int
) -> None:
    # Seeded with message headers so that runs of some length come up.
    for kind, masker, codes in (
        (b"D", mask_data_rows, layout),
        (b"d", mask_copy_rows, None if layout is None else bytes(c % 2 for c in layout)),
    ):
        buf = data.replace(b"!", kind + b"\x00\x00\x00").replace(b"?", b"\t")
        start = min(pos, len(buf))
        end, masked, rows, cells = masker(buf, start, codes, MAX)
        spans, framed = codec.split_messages(buf, start, limit=rows) if rows else ([], start)
        assert end == framed and all(k == kind[0] for k, _, _ in spans)
        assert len(spans) == rows and cells >= 0
        if masked is not None:
            out, rest = codec.split_messages(masked)
            assert rest == len(masked) and len(out) == rows
