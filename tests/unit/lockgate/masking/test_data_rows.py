"""`DataRowMasker.layout`: every code it gives is what `masks.mask_cell` does to any value of
that column (the email code: to any plain email), and it gives none where that is not so."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.masking import masks
from lockgate.masking.data_rows import EMAIL, NULL, PASS, STAR, DataRowMasker
from lockgate.masking.detectors import ALL, Scanner
from lockgate.masking.plan import ColumnAction
from tests.unit.lockgate.masking.test_copy_text import FIELDS, PLAIN_EMAILS

SCANNERS: list[Scanner | None] = [None, Scanner(["email"]), Scanner(["phone"]), Scanner(ALL)]
HOWS = ["column", "derived", "json", "detect", "binary"]
OIDS = [25, 1043, 1042, 19, 705, 23, 20, 114, 3802, 1009, 869, 17]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(HOWS),
    st.sampled_from(OIDS),
    st.booleans(),
    st.sampled_from(SCANNERS),
    st.one_of(FIELDS, PLAIN_EMAILS.map(str.encode)),
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
    assert masker.layout([ColumnAction("detect")], [25]) is None
    assert masker.layout([ColumnAction("json", frozenset({"a"}))], [25]) is None
    assert masker.layout([None, column], [25]) is None  # fewer types than columns
    # Without email shaping, a text column masked by name needs the detectors.
    assert DataRowMasker(Scanner(["phone"])).layout([column], [25]) is None
    assert DataRowMasker(Scanner(["email", "phone"])).layout([column], [25]) == bytes([EMAIL])
