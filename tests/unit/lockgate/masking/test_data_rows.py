"""`DataRowMasker.layout`: every code it gives is what `masks.mask_cell` does to any value of
that column (the email code: to any plain email; the scanned codes: to any value without a
trigger), and it gives none where that is not so; `triggered_rows` finds the rows with one."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.masking import masks
from lockgate.masking.data_rows import (
    DETECT,
    EMAIL,
    MASKED,
    NULL,
    PASS,
    STAR,
    DataRowMasker,
)
from lockgate.masking.detectors import ALL, Scanner
from lockgate.masking.plan import ColumnAction
from tests.unit.lockgate.masking.test_copy_text import FIELDS, PLAIN_EMAILS

SCANNERS: list[Scanner | None] = [None, Scanner(["email"]), Scanner(["phone"]), Scanner(ALL)]
HOWS = ["column", "derived", "json", "detect", "binary"]
OIDS = [25, 1043, 1042, 19, 705, 23, 20, 114, 3802, 1009, 869, 17]
# Text far from every trigger (no digits, capitals, '@', '$', '-', '+', ':', no long words), and
# any bytes: both sides of the scanned codes' condition.
CLEAN = st.one_of(
    st.text(alphabet="abcdefg xyz,;!?\t\u00e9\u4e2d", max_size=30).map(str.encode),
    st.binary(max_size=20),
)


def has_trigger(scanner: Scanner, value: bytes) -> bool:
    return scanner.segments_with_triggers(value, [0]) == [0]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(HOWS),
    st.sampled_from(OIDS),
    st.booleans(),
    st.sampled_from(SCANNERS),
    st.one_of(FIELDS, PLAIN_EMAILS.map(str.encode), CLEAN),
)
def test_a_code_is_what_mask_cell_gives(
    how: str, oid: int, binary: bool, scanner: Scanner | None, value: bytes
) -> None:
    layout = DataRowMasker(scanner).layout([ColumnAction(how)], [oid])
    if layout is None:
        return
    (code,) = layout
    masked = masks.mask_cell(value, oid=oid, binary=binary, how=how, scanner=scanner)
    if code == STAR:
        assert masked == b"****"
    elif code == NULL:
        assert masked is None
    elif code in (DETECT, MASKED):
        assert scanner is not None
        if not has_trigger(scanner, value):
            assert masked is value if code == DETECT else masked == b"****"
    else:
        assert code == EMAIL
        if masks._PLAIN_EMAIL.fullmatch(value.decode("utf-8", "replace")):
            local, _, domain = value.partition(b"@")
            assert masked == local[:1] + b"***@" + domain


def test_layouts() -> None:
    column, derived = ColumnAction("column"), ColumnAction("derived")
    masker = DataRowMasker(None)
    assert masker.layout([None, column, derived, column], [23, 25, 1043, 23]) == bytes(
        [PASS, EMAIL, STAR, NULL]
    )
    assert masker.layout([column], [114]) is None  # JSON
    assert masker.layout([ColumnAction("detect")], [25]) is None  # no detectors to scan with
    assert masker.layout([ColumnAction("json", frozenset({"a"}))], [25]) is None
    assert masker.layout([None, column], [25]) is None  # fewer types than columns
    detect = ColumnAction("detect")
    phone = DataRowMasker(Scanner(["phone"]))
    assert phone.layout([detect, detect, detect], [25, 23, 114]) is None  # JSON
    assert phone.layout([detect, detect, column], [25, 23, 25]) == bytes([DETECT, DETECT, MASKED])
    # Without email shaping, a text column masked by name needs the detectors.
    assert DataRowMasker(Scanner(["email", "phone"])).layout([column], [25]) == bytes([EMAIL])


def test_copy_layouts() -> None:
    column, detect = ColumnAction("column"), ColumnAction("detect")
    assert DataRowMasker(None).copy_layout([None, column]) == bytes([PASS, EMAIL])
    assert DataRowMasker(None).copy_layout([None, None]) is None  # nothing to mask
    assert DataRowMasker(None).copy_layout([detect]) is None  # no detectors to scan with
    phone = DataRowMasker(Scanner(["phone"]))
    assert phone.copy_layout([detect, column, None]) == bytes([DETECT, MASKED, PASS])
    for how in ("derived", "json", "binary"):
        assert phone.copy_layout([ColumnAction(how)]) is None


def scanned(cells_by_row: list[list[bytes]]) -> tuple[bytes, bytes, list[int]]:
    """What `_rows.scanned_cells` gives for rows of these scanned cells at offsets 100, 200..."""
    text, rows, offsets = b"", b"", []
    for i, cells in enumerate(cells_by_row):
        offsets.append(100 * (i + 1))
        rows += struct.pack("=qq", offsets[-1], len(text))
        text += b"".join(c + b"\x00" for c in cells)
    return text, rows, offsets


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SCANNERS[1:]),
    st.lists(st.lists(st.one_of(FIELDS, CLEAN), min_size=1, max_size=3), max_size=8),
)
def test_the_triggered_rows_are_those_with_a_cell_the_scanner_may_match(
    scanner: Scanner, cells_by_row: list[list[bytes]]
) -> None:
    text, rows, offsets = scanned(cells_by_row)
    expected = [
        offset
        for offset, cells in zip(offsets, cells_by_row, strict=True)
        if any(has_trigger(scanner, c) for c in cells)
    ]
    assert DataRowMasker(scanner).triggered_rows(text, rows) == expected


def test_triggered_rows() -> None:
    masker = DataRowMasker(Scanner(["credit_card", "us_ssn"]))
    text, rows, _ = scanned(
        [[b"plain", b"4242 4242 4242 4242"], [b"a@b.com"], [b"123-45-6789", b"x"], [b"note"]]
    )
    assert masker.triggered_rows(text, rows) == [100, 300]
    assert masker.triggered_rows(b"", b"") == []
