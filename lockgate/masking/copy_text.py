"""Masking of text-format COPY rows in bulk: one regex pass over a run of rows, not one per cell.

A COPY ... TO STDOUT sends each row in its own CopyData message. Masking them one at a time
(split the fields, decode, `mask_column_value`, re-escape, re-frame) costs microseconds of Python
per row, several times what the client spends reading it. The common masked column holds plain
emails, whose mask (`j***@example.com`) only replaces the local part after its first character,
so a run of rows is masked here with C-level operations: a few `bytes` counts, one `re.split`,
and slicing and joining of the pieces.

The result must be byte for byte what the row-at-a-time path gives (`ServerStream._mask_copy_row`
in the PostgreSQL adapter), so rows are only claimed when that is proven:

* the run is one row per message: every payload ends with its only newline;
* the row has as many tab-separated fields as the COPY has columns (else the row path tries
  CSV or masks the row whole): the regex sees at least as many, and then counting tabs, over
  the run when every row matched, says there are no more;
* every masked column of the row is exactly a plain email, as `masks._PLAIN_EMAIL` defines it:
  no surrounding whitespace (which `mask_column_value` would strip), no NULL (`\\N`), no escape,
  nothing outside ASCII. Then decoding is the identity, the email shape comes before any
  detector, and the masked value needs no COPY escaping.

Rows that are not claimed go through the caller's row path, in their place in the run; when no
row of a run can be claimed (the run is not one row per message, its masked columns hold NULLs or
other values than emails), `CopyLayout.mask` says so and leaves the whole run to the row path.
Only how == "column" actions are handled, and only when the scanner shapes emails (None, or one
with the email detector): other layouts get no `CopyLayout`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, repeat
from operator import add, itemgetter

from lockgate.masking import masks
from lockgate.masking.data_rows import EMAIL, PASS
from lockgate.masking.detectors import Scanner
from lockgate.masking.plan import ColumnAction

# `masks._PLAIN_EMAIL` in three parts: the first character of the local part (kept), the rest
# of it (replaced with "***"), and the domain, `[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`,
# here as dotted labels then a last label: the same language, written possessively so that sre
# rejects a non-email without backtracking.
_LOCAL = rb"[A-Za-z0-9._%+-]"
_DOMAIN = rb"(?:[A-Za-z0-9-]++\.)++[A-Za-z]{2,}+"
_FIELD = rb"[^\t\n]*+"
_MASKED_LOCAL = b"***@"

Fallback = Callable[[bytes], bytes]


def _row_pattern(columns: int, masked: Sequence[int]) -> re.Pattern[bytes]:
    """A row of `columns` fields or more, with plain emails in the `masked` ones (ascending),
    from the newline before it.

    `split` keeps the groups: the text from the row's start to the first character of its
    first masked email, from each email's domain to the first character of the next masked
    email, and (between matches) the last domain and the rest of the row. What it drops, the
    newline before the row and each email's local part after its first character and "@",
    is what masking replaces. Starting with a literal newline lets sre jump from row to row.
    """
    groups = []
    previous = -1
    for column in masked:
        if previous < 0:
            before = rb"%s\t" % _FIELD * column
        else:
            # The domain of the previous email, then the fields between the two.
            between = rb"\t%s" % _FIELD * (column - previous - 1)
            before = rb"(?=%s\t)%s%s\t" % (_DOMAIN, _FIELD, between)
        groups.append(rb"(%s%s)%s*+@" % (before, _LOCAL, _LOCAL))
        previous = column
    # The last domain, then the tabs of the fields after it (not the last field itself): the row
    # has `columns` fields or more; `mask` counts tabs for "not more".
    after = columns - 1 - previous
    end = rb"%s\t" % (rb"\t%s" % _FIELD * (after - 1)) if after else rb"\n"
    return re.compile(rb"\n%s(?=%s%s)" % (b"".join(groups), _DOMAIN, end))


class _Headers(dict[int, bytes]):
    """CopyData headers ('d', int32 length) by the size of a row's pieces, built once a size.

    A row's payload is its pieces, "***@" after each of its `masked` groups, and a newline.
    """

    def __init__(self, masked: int) -> None:
        super().__init__()
        self._extra = 4 + len(_MASKED_LOCAL) * masked + 1  # the length field itself, "***@"s, "\n"

    def __missing__(self, size: int) -> bytes:
        if len(self) >= 4096:
            self.clear()  # rows of ever new sizes must not grow this without bound
        header = self[size] = b"d" + (size + self._extra).to_bytes(4, "big")
        return header


class CopyLayout:
    """Masks runs of rows of one COPY layout: `columns` fields, plain emails in `masked`."""

    __slots__ = ("_headers", "_pattern", "_stride", "codes", "columns", "masked")

    def __init__(self, columns: int, masked: tuple[int, ...]) -> None:
        self.columns = columns
        self.masked = masked
        # The same layout for the C masker of COPY rows (`_rows.mask_copy_rows`).
        self.codes = bytes(EMAIL if i in masked else PASS for i in range(columns))
        self._pattern = _row_pattern(columns, masked)
        self._stride = len(masked) + 1  # split pieces per matched row
        self._headers = _Headers(len(masked))

    def mask(self, rows: list[bytes], fallback: Fallback) -> tuple[bytes, int] | None:
        """The CopyData messages for `rows` (the payloads of consecutive CopyData messages) and
        how many cells were masked here, with each row not claimed given by `fallback` (which
        counts its own cells); or None when no row can be claimed, for the caller's row path to
        take the run as it is."""
        n = len(rows)
        text = b"".join((b"\n", *rows))
        pieces = self._pattern.split(text)
        if len(pieces) == 1:
            return None
        if text.count(b"\n") != n + 1 or not all(map(bytes.endswith, rows, repeat(b"\n"))):
            return None  # not one row per message
        stride = self._stride
        # Each matched row's pieces: the kept text before each masked email's "***@", then the
        # rest of the row (up to the next match, so with the rows between them, if any).
        parts = [pieces[1 + i :: stride] for i in range(stride)]
        # Every row matched, so has `columns` fields or more; with no tab to spare, exactly.
        if len(pieces) == 1 + n * stride and text.count(b"\t") == n * (self.columns - 1):
            parts[-1][-1] = parts[-1][-1][:-1]  # the run's last newline: each row gets its own
            return self._frame(parts, n), n * (stride - 1)
        return self._mask_mixed(rows, pieces[0], parts, fallback)

    def _frame(self, parts: list[list[bytes]], n: int) -> bytes:
        """The messages of `n` matched rows, with no Python per row: header, the pieces with
        "***@" between them, newline."""
        stride = len(parts)
        width = 2 * stride + 1
        out = [_MASKED_LOCAL] * (n * width)
        out[0::width] = map(self._headers.__getitem__, _sizes(parts))
        for i, column in enumerate(parts):
            out[1 + 2 * i :: width] = column
        out[width - 1 :: width] = [b"\n"] * n
        return b"".join(out)

    def _mask_mixed(
        self, rows: list[bytes], before: bytes, parts: list[list[bytes]], fallback: Fallback
    ) -> tuple[bytes, int] | None:
        """Rows claimed as in `_frame`, the others through `fallback`, in order; None if none is.

        Which row a match is in follows from the newlines around it: the text before the first
        match, and the rest after each, hold the newline before each row that did not match.
        """
        rests = parts[-1]
        matched_rows = accumulate(
            map(add, map(bytes.count, rests, repeat(b"\n")), repeat(1)),
            initial=before.count(b"\n"),
        )
        parts[-1] = list(map(itemgetter(0), map(bytes.partition, rests, repeat(b"\n"))))
        # Each matched row's message: header, first piece, "***@", ..., last piece, newline.
        fill: list[Iterable[bytes]] = [repeat(_MASKED_LOCAL)] * (2 * len(parts))
        fill[0::2] = parts
        fill[-1] = repeat(b"\n")
        headers = map(self._headers.__getitem__, _sizes(parts))
        messages = map(b"".join, zip(headers, *fill, strict=False))
        out: list[bytes | None] = [None] * len(rows)
        tabs = self.columns - 1
        for index, message in zip(matched_rows, messages, strict=False):
            if rows[index].count(b"\t") == tabs:  # the row has no more fields than matched
                out[index] = message
        claimed = len(rows) - out.count(None)
        if not claimed:
            return None
        return (
            b"".join([fallback(row) if m is None else m for row, m in zip(rows, out, strict=True)]),
            claimed * (len(parts) - 1),
        )


def _sizes(parts: list[list[bytes]]) -> Iterator[int]:
    """The size of each row's pieces (`parts` holds the first piece of every row, then the
    second...)."""
    if len(parts) == 2:
        return map(add, map(len, parts[0]), map(len, parts[1]))
    return map(sum, zip(*[map(len, column) for column in parts], strict=False))


@functools.lru_cache(maxsize=256)
def _layout(columns: int, masked: tuple[int, ...]) -> CopyLayout:
    return CopyLayout(columns, masked)


class CopyTextMasker:
    """Gives the `CopyLayout` for a text COPY's column actions, when one can mask its rows.

    `scanner` must be the one the row path masks cells with: emails get their shape before any
    detector runs only when it is None or includes the email detector.
    """

    __slots__ = ("_emails",)

    def __init__(self, scanner: Scanner | None) -> None:
        self._emails = masks.shapes_emails(scanner)

    def layout(self, actions: Sequence[ColumnAction | None]) -> CopyLayout | None:
        """The layout for rows of `actions` (one per field), or None: leave them to the row
        path (derived, JSON, detect or binary actions, or nothing to mask)."""
        if not self._emails:
            return None
        masked: list[int] = []
        for i, action in enumerate(actions):
            if action is None:
                continue
            if action.how != "column":
                return None
            masked.append(i)
        return _layout(len(actions), tuple(masked)) if masked else None
