"""How each cell of a result is masked, as codes for the PostgreSQL relay's DataRow masker in C
(`data_plane/protocols/postgres/_rows.c`), which masks a run of rows in one call.

A code stands for what `masks.mask_cell` gives a cell of a column, by the column's action and
type, whatever the value, or for a plain email when it is one (the common masked column):

* PASS: no action; the cell as it is.
* EMAIL: a text column (`masks.TEXT_OIDS`) masked by name, with a scanner that shapes emails:
  a plain email gets its shape (`j***@example.com`); any other value sends its row to
  `mask_cell`, in its place in the run.
* STAR: a text column masked as derived from another: `****`.
* NULL: a column masked any way but `detect` whose type is neither text nor JSON: no mask is a
  valid value of it (an int4 `****` would not parse), so SQL NULL.
* DETECT: a non-JSON column the session's detectors scan: the cell as it is when none of the
  detectors' triggers occurs in it (`Scanner.segments_with_triggers`), as `mask_cell` then
  leaves it.
* MASKED: a text column masked by name, by a scanner that does not shape emails: `****` when
  no trigger occurs in the cell, as `mask_column_value` then gives.

Rows in which a DETECT or MASKED cell holds a trigger go to `mask_cell` (`triggered_rows`
finds them). NULL cells stay NULL in both paths. A result with anything else (a JSON column,
`json` masking) gets no layout: its rows go through `mask_cell` one at a time. The format
(text or binary) does not change a code: a text value's binary form is its text, and
`mask_cell` leaves a binary value of another type as it is, as DETECT does.
"""

from __future__ import annotations

from collections.abc import Sequence

from lockgate.masking import masks
from lockgate.masking.detectors import Scanner
from lockgate.masking.plan import ColumnAction

PASS, EMAIL, STAR, NULL, DETECT, MASKED = range(6)
SCANNED = frozenset({DETECT, MASKED})
_MASKED_HOWS = frozenset({"column", "derived", "json"})


class DataRowMasker:
    """Gives a result's layout for the C masker. `scanner` must be the one `mask_cell` is given
    for the session's cells."""

    __slots__ = ("_emails", "_scanner")

    def __init__(self, scanner: Scanner | None) -> None:
        self._scanner = scanner
        self._emails = masks.shapes_emails(scanner)

    def layout(self, actions: Sequence[ColumnAction | None], oids: Sequence[int]) -> bytes | None:
        """One code per column of a result, or None: leave its rows to `mask_cell`."""
        codes = bytearray()
        for i, action in enumerate(actions):
            if action is None:
                codes.append(PASS)
                continue
            if i >= len(oids):
                return None
            code = self._code(action.how, oids[i])
            if code is None:
                return None
            codes.append(code)
        return bytes(codes)

    def copy_layout(self, actions: Sequence[ColumnAction | None]) -> bytes | None:
        """One code per field of a text COPY's rows, or None: leave them to the row path.

        The row path gives `mask_cell` each field as it came (escaped, as a text value), and
        leaves `\\N` (NULL) alone: PASS, EMAIL (`copy_text`'s bulk masking), DETECT and MASKED
        mean there what they mean for a text column.
        """
        codes = bytearray()
        for action in actions:
            if action is None:
                codes.append(PASS)
                continue
            # The row path masks a field as text (oid 25); derived fields are not taken here.
            code = self._code(action.how, 25) if action.how != "derived" else None
            if code is None:
                return None
            codes.append(code)
        return bytes(codes) if any(codes) else None

    def triggered_rows(self, text: bytes, rows: bytes) -> list[int]:
        """The offsets of the rows whose scanned cells hold a trigger, in order, from what
        `_rows.scanned_cells` gives (cells each followed by NUL; int64 pairs of a row's offset
        and its first cell's in `text`)."""
        assert self._scanner is not None, "no scanned codes without a scanner"
        pairs = memoryview(rows).cast("q")
        row_at, text_at = pairs[0::2], pairs[1::2].tolist()
        return [row_at[i] for i in self._scanner.segments_with_triggers(text, text_at)]

    def _code(self, how: str, oid: int) -> int | None:
        if oid in (masks.JSON_OID, masks.JSONB_OID):
            return None  # JSON values: mask_cell parses them
        if how == "detect":
            return DETECT if self._scanner is not None else None
        if how not in _MASKED_HOWS:
            return None  # an unknown how: mask_cell refuses it
        if oid not in masks.TEXT_OIDS:
            return NULL
        if how == "derived":
            return STAR
        if how == "column":
            if self._emails:
                return EMAIL
            return MASKED if self._scanner is not None else None
        return None
