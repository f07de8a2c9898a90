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

NULL cells stay NULL in both paths. A result with anything else (a JSON column, `json` or
`detect` masking, an email column without email shaping) gets no layout: its rows go through
`mask_cell` one at a time. The format (text or binary) does not change a code: a text value's
binary form is its text.
"""

from __future__ import annotations

from collections.abc import Sequence

from lockgate.masking import masks
from lockgate.masking.detectors import Scanner
from lockgate.masking.plan import ColumnAction

PASS, EMAIL, STAR, NULL = range(4)
_MASKED_HOWS = frozenset({"column", "derived", "json"})


class DataRowMasker:
    """Gives a result's layout for the C masker. `scanner` must be the one `mask_cell` is given
    for the session's cells."""

    __slots__ = ("_emails",)

    def __init__(self, scanner: Scanner | None) -> None:
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

    def _code(self, how: str, oid: int) -> int | None:
        if how not in _MASKED_HOWS or oid in (masks.JSON_OID, masks.JSONB_OID):
            return None  # detect, an unknown how (mask_cell refuses it), JSON values
        if oid not in masks.TEXT_OIDS:
            return NULL
        if how == "derived":
            return STAR
        if how == "column" and self._emails:
            return EMAIL
        return None
