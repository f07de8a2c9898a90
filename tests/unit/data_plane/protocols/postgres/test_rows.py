"""The C masker of result rows (`_rows`), socket-free: its email test is the regular expression
`mask_cell` uses, a COPY row is taken exactly when `copy_text` would take it, the scanned cells
of a run are the ones a stop is found in, and no input crashes it or makes it claim bytes it
did not frame."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres import codec
from data_plane.protocols.postgres._rows import mask_copy_rows, mask_data_rows, scanned_cells
from lockgate.masking import masks
from lockgate.masking.copy_text import CopyLayout
from lockgate.masking.data_rows import DETECT, EMAIL, MASKED, NULL, PASS, STAR
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


def test_scanned_cells_pass_or_give_the_mask_and_a_stop_ends_the_run() -> None:
    rows = [data_row([b"1", b"jane", b"a note"]), data_row([b"2", None, b""])]
    rows.append(data_row([b"3", b"x", b"card 4242 4242 4242 4242"]))
    run = b"".join(rows)
    layout = bytes([PASS, MASKED, DETECT])
    end, masked, count, cells = mask_rows(run, 0, layout)
    assert (end, count, cells) == (len(run), 3, 2)
    assert masked == b"".join(
        [
            data_row([b"1", b"****", b"a note"]),
            rows[1],
            data_row([b"3", b"****", b"card 4242 4242 4242 4242"]),  # a stop is the caller's
        ]
    )
    stop = len(rows[0]) + len(rows[1])
    end, masked, count, cells = mask_data_rows(run, 0, layout, MAX, stop)
    assert (end, count, cells) == (stop, 2, 1)
    assert mask_data_rows(run, stop, layout, MAX, stop) == (stop, None, 0, 0)
    # A row of DETECT cells alone changes nothing.
    assert mask_rows(rows[2], 0, bytes([PASS, PASS, DETECT])) == (len(rows[2]), None, 1, 0)


def test_scanned_cells_are_the_run_s_detect_and_masked_cells_with_their_rows() -> None:
    rows = [
        data_row([b"1", b"jane", b"a note"]),
        data_row([b"2", None, None]),  # nothing to scan: no entry
        data_row([b"3", b"", b"x"]),
        data_row([b"jane@example.com", b"y", b"z"]),  # EMAIL refuses it: the run ends
    ]
    buf = b"junk" + b"".join(rows)
    layout = bytes([EMAIL, MASKED, DETECT])
    assert scanned_cells(buf, 4, layout, MAX) == (4, b"", b"")  # "1" is no email
    layout = bytes([PASS, MASKED, DETECT])
    end, text, pairs = scanned_cells(buf, 4, layout, MAX)
    third = 4 + len(rows[0]) + len(rows[1])
    assert end == len(buf)
    assert text == b"jane\x00a note\x00\x00x\x00y\x00z\x00"
    assert struct.unpack("=6q", pairs) == (4, 0, third, 12, third + len(rows[2]), 15)
    stop_at = bytes([EMAIL, MASKED, DETECT])
    assert scanned_cells(rows[3], 0, stop_at, MAX)[0] == len(rows[3])
    with pytest.raises(TypeError, match="needs a layout"):
        scanned_cells(buf, 4, None, MAX)  # type: ignore[arg-type]


def test_copy_fields_detect_and_masked_and_their_scanned_cells() -> None:
    rows = [b"1\tjane\tnote\n", b"2\t\\N\t\\N\n", b"3\t\tcard 4242\n"]
    run = b"".join(frame(r) for r in rows)
    layout = bytes([PASS, MASKED, DETECT])
    end, masked, count, cells = mask_copy_rows(run, 0, layout, MAX)
    assert (end, count, cells) == (len(run), 3, 2)  # NULL stays NULL, uncounted
    assert masked == frame(b"1\t****\tnote\n") + frame(rows[1]) + frame(b"3\t****\tcard 4242\n")
    end, text, pairs = scanned_cells(run + b"c\x00\x00\x00\x04", 0, layout, MAX)
    assert end == len(run)
    assert text == b"jane\x00note\x00\\N\x00\\N\x00\x00card 4242\x00"
    second = len(rows[0]) + 5
    assert struct.unpack("=6q", pairs) == (0, 0, second, 10, second + len(rows[1]) + 5, 16)
    stop = second
    assert mask_copy_rows(run, 0, layout, MAX, stop)[:3] == (stop, frame(b"1\t****\tnote\n"), 1)


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
    st.one_of(st.none(), st.binary(max_size=5).map(lambda b: bytes(x % 6 for x in b))),
    st.integers(0, 200),
)
def test_arbitrary_bytes_never_crash_it_or_claim_what_it_did_not_frame(
    data: bytes, layout: bytes | None, pos: int
) -> None:
    # Seeded with message headers so that runs of some length come up.
    for kind, masker, codes in (
        (b"D", mask_data_rows, layout),
        (b"d", mask_copy_rows, None if layout is None else bytes(c & 5 for c in layout)),
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
    if layout:
        buf = data.replace(b"!", b"D\x00\x00\x00")
        start = min(pos, len(buf))
        end, text, pairs = scanned_cells(buf, start, layout, MAX)
        assert end == mask_data_rows(buf, start, layout, MAX)[0]
        offsets = struct.unpack(f"={len(pairs) // 8}q", pairs)
        assert all(start <= row < end for row in offsets[0::2])
        assert (
            list(offsets[1::2]) == sorted(offsets[1::2])
            and text.count(b"\x00") >= len(offsets) // 2
        )
