"""Bulk masking of text COPY rows: it claims exactly the rows whose masked columns hold plain
emails, gives them what `mask_column_value` gives, and hands every other row to the fallback in
its place."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.masking import masks
from lockgate.masking.copy_text import CopyLayout, CopyTextMasker
from lockgate.masking.detectors import ALL, Scanner
from lockgate.masking.plan import DETECT, ColumnAction

FUZZ = settings(max_examples=300, deadline=None)
COLUMN = ColumnAction("column")

PLAIN_EMAILS = st.from_regex(
    r"[A-Za-z0-9._%+-]{1,6}@[A-Za-z0-9-]{1,5}(\.[A-Za-z0-9-]{1,4}){0,2}\.[A-Za-z]{2,4}",
    fullmatch=True,
)
NEAR_MISSES = st.sampled_from(
    [
        "a@b",
        "a@b.c",
        "a@.com",
        "a@b..com",
        "a@-.co",
        "@b.com",
        "a@b.com.",
        "a@b.c0m",
        "a@b@c.com",
        "a b@c.com",
        " a@b.com",
        "a@b.com ",
        "a@b.com\r",
        "\x1ca@b.com",
        "a@b.com\xa0",
        "\\N",
        "\\\\N",
        "",
        "ü@b.com",
        "a@b.cöm",
        "a\\tb@c.com",
        "a@b.com\\n",
        "A.B+C%D-E_F@X-Y.Z.MUSEUM",
    ]
)
NOISE = st.text(st.sampled_from(list('ab@.-_\\N ,"\t\n\r\x1c\xa0é€😀')), max_size=8)
TEXT_FIELDS = st.one_of(PLAIN_EMAILS, NEAR_MISSES, NOISE).map(str.encode)
FIELDS = st.one_of(TEXT_FIELDS, st.binary(max_size=6))
# Words and numbers, with and without a detector's trigger (a card, an SSN, an email, a long
# token), and COPY's escapes of a backslash and a newline.
DETECTOR_WORDS = st.lists(
    st.sampled_from(
        [
            "order",
            "shipped",
            "42",
            "2024-03-01",
            "4242 4242 4242 4242",
            "123-45-6789",
            "a@b.com",
            "Zk3Qp9Lm2Xv7Rt4Yw8Nb",
            "\\\\",
            "\\n",
            "é",
            " ",
            "",
        ]
    ),
    max_size=4,
).map(lambda words: " ".join(words).encode())


def frame(payload: bytes) -> bytes:
    return b"d" + struct.pack("!i", len(payload) + 4) + payload


@st.composite
def runs(draw: st.DrawFn, columns: int, masked: tuple[int, ...]) -> list[bytes]:
    """Payloads of CopyData messages. A clean run has well-formed rows with plain emails in the
    masked columns; a mixed one also near misses there, and rows with a field too many; a wild
    one anything there, and rows of other widths and without their newline."""
    mode = draw(st.sampled_from(["clean", "mixed", "wild"]))
    emails = PLAIN_EMAILS.map(str.encode)
    shapes = ["row"]
    if mode == "mixed":
        emails = st.one_of(emails, emails, NEAR_MISSES.map(str.encode), FIELDS)
        shapes = ["row"] * 6 + ["long"]
    elif mode == "wild":
        shapes = ["row"] * 12 + ["short", "long", "bare"]
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        shape = draw(st.sampled_from(shapes))
        count = columns + {"short": -1, "long": 1}.get(shape, 0)
        fields = [draw(emails if i in masked and mode != "wild" else FIELDS) for i in range(count)]
        rows.append(b"\t".join(fields) + (b"" if shape == "bare" else b"\n"))
    return rows


def fallback(row: bytes) -> bytes:
    return b"<row path:" + row + b">"


def outcome(masked: tuple[bytes, int] | None) -> tuple[bytes, int]:
    assert masked is not None
    return masked


def expected(rows: list[bytes], columns: int, masked: tuple[int, ...]) -> tuple[bytes, int] | None:
    """What the bulk path must give: the row path's result for every row it claims, or None
    when it can claim none."""
    one_per_message = all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in rows)
    out, cells = [], 0
    for row in rows:
        fields = row[:-1].split(b"\t")
        if (
            one_per_message
            and len(fields) == columns
            and all(
                masks._PLAIN_EMAIL.fullmatch(fields[k].decode("utf-8", "replace")) for k in masked
            )
        ):
            for k in masked:
                fields[k] = masks.mask_column_value(fields[k].decode(), None).encode()
            out.append(frame(b"\t".join(fields) + b"\n"))
            cells += len(masked)
        else:
            out.append(fallback(row))
    return (b"".join(out), cells) if cells else None


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, tuple[int, ...]]:
    columns = draw(st.integers(1, 5))
    masked = draw(st.sets(st.integers(0, columns - 1), min_size=1))
    return columns, tuple(sorted(masked))


@FUZZ
@given(st.data())
def test_claims_exactly_the_rows_of_plain_emails_and_masks_them_as_the_row_path(
    data: st.DataObject,
) -> None:
    columns, masked = data.draw(layouts())
    rows = data.draw(runs(columns, masked))
    assert CopyLayout(columns, masked).mask(rows, fallback) == expected(rows, columns, masked)


@FUZZ
@given(st.one_of(PLAIN_EMAILS, NEAR_MISSES, NOISE))
def test_a_value_is_claimed_exactly_when_it_is_a_plain_email(value: str) -> None:
    masked = CopyLayout(1, (0,)).mask([value.encode() + b"\n"], fallback)
    if masks._PLAIN_EMAIL.fullmatch(value):
        assert masked == (frame(masks.mask_match("email", value).encode() + b"\n"), 1)
    else:
        assert masked is None


def test_a_run_of_plain_emails_is_masked_without_the_row_path() -> None:
    rows = [b"1\tjane.doe@example.com\tx\n", b"2\tJ@mail.example.co.uk\t\n"]

    def unused(row: bytes) -> bytes:
        raise AssertionError(row)

    out, cells = outcome(CopyLayout(3, (1,)).mask(rows, unused))
    assert out == frame(b"1\tj***@example.com\tx\n") + frame(b"2\tJ***@mail.example.co.uk\t\n")
    assert cells == 2


def test_several_masked_columns_side_by_side_and_apart() -> None:
    rows = [b"a@b.io\tkeep\tc@d.io\te@f.io\tz\n"] * 3
    out, cells = outcome(CopyLayout(5, (0, 2, 3)).mask(rows, fallback))
    assert out == frame(b"a***@b.io\tkeep\tc***@d.io\te***@f.io\tz\n") * 3
    assert cells == 9


def test_a_row_with_a_field_too_many_goes_to_the_row_path() -> None:
    # Every row matches: only counting the tabs tells the second has a field too many.
    rows = [b"1\ta@b.io\tx\n", b"2\tc@d.io\tx\tmore\n", b"3\te@f.io\tx\n"]
    out, cells = outcome(CopyLayout(3, (1,)).mask(rows, fallback))
    assert out == frame(b"1\ta***@b.io\tx\n") + fallback(rows[1]) + frame(b"3\te***@f.io\tx\n")
    assert cells == 2


def test_rows_it_cannot_prove_go_to_the_row_path_in_their_place() -> None:
    rows = [
        b"1\ta@b.io\n",
        b"2\t\\N\n",  # NULL
        b"3\t a@b.io\n",  # mask_column_value strips it: the row path's business
        b"4\tnot an email\n",
        b"5\ta@b.io\n",
        b"6\ta@b.io\textra\n",  # a field too many
    ]
    out, cells = outcome(CopyLayout(2, (1,)).mask(rows, fallback))
    assert out == b"".join(
        [
            frame(b"1\ta***@b.io\n"),
            fallback(rows[1]),
            fallback(rows[2]),
            fallback(rows[3]),
            frame(b"5\ta***@b.io\n"),
            fallback(rows[5]),
        ]
    )
    assert cells == 2


@pytest.mark.parametrize(
    "odd",
    [b"3\tc@d.io", b"3\tc@d.io\n4\te@f.io\n", b"", b"\n\n"],
    ids=["no newline", "two rows in one message", "empty", "newlines only"],
)
def test_a_run_that_is_not_one_row_per_message_is_left_to_the_row_path(odd: bytes) -> None:
    rows = [b"1\ta@b.io\n", odd, b"2\tb@c.io\n"]
    assert CopyLayout(2, (1,)).mask(rows, fallback) is None


@pytest.mark.parametrize(
    "rows",
    [
        [b'1,a@b.io,"x\ty"\n', b"2,b@c.io,z\n"],  # CSV
        [b"1\t\\N\tx\n", b"2\t\\N\ty\n"],  # NULLs
        [b"1\t123-45-6789\tx\n"],  # another kind of value
        [b"1\ta@b.io\tx\ty\n", b"2\ta@b.io\n"],  # emails, but in rows of other widths
    ],
    ids=["csv", "nulls", "ssn", "widths"],
)
def test_a_run_with_no_row_to_claim_is_left_to_the_row_path(rows: list[bytes]) -> None:
    assert CopyLayout(3, (1,)).mask(rows, fallback) is None


def test_rows_of_many_sizes_get_the_right_headers() -> None:
    rows = [b"%d\ta@b.io\t%s\n" % (i, b"x" * i) for i in range(5000)]
    out, cells = outcome(CopyLayout(3, (1,)).mask(rows, fallback))
    assert out == b"".join(frame(b"%d\ta***@b.io\t%s\n" % (i, b"x" * i)) for i in range(5000))
    assert cells == 5000


def test_layouts_only_for_column_masks_of_emails() -> None:
    masker = CopyTextMasker(None)
    layout = masker.layout((None, COLUMN, None, COLUMN))
    assert layout is not None
    assert (layout.columns, layout.masked) == (4, (1, 3))
    assert CopyTextMasker(Scanner(["email"])).layout((COLUMN,)) is not None
    assert CopyTextMasker(Scanner(ALL)).layout((COLUMN,)) is not None
    # Without the email detector the row path gives "****", not the email shape.
    assert CopyTextMasker(Scanner(["phone"])).layout((COLUMN,)) is None
    assert masker.layout((None, None)) is None
    for other in (ColumnAction("derived"), ColumnAction("json", frozenset({"a"})), DETECT):
        assert masker.layout((COLUMN, other)) is None
    assert masker.layout((ColumnAction("binary"),)) is None
