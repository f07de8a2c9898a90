import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.masking.detectors import ALL, Scanner
from lockgate.masking.masks import (
    JSON_OID,
    JSONB_OID,
    MASK,
    TEXT_OIDS,
    mask_cell,
    mask_column_value,
    mask_derived_value,
    mask_error_fields,
    mask_json,
    mask_match,
    mask_text,
)
from tests.unit.lockgate.masking.test_detectors import BCRYPT, FRAGMENTS, GOOD_JWT, PEM, TEXTS

FUZZ = settings(max_examples=200, deadline=None)
SCANNER = Scanner(ALL)
INT4_OID = 23
INET_OID = 869
TEXT_ARRAY_OID = 1009


@pytest.mark.parametrize(
    ("detector", "value", "masked"),
    [
        ("email", "jane.doe@example.com", "j***@example.com"),
        ("credit_card", "4242 4242 4242 4242", "**** **** **** 4242"),
        ("credit_card", "4242-4242-4242-4242", "****-****-****-4242"),
        ("credit_card", "378282246310005", "***********0005"),
        ("phone", "+1 (555) 123-4567", "+* (***) ***-**67"),
        ("phone", "555.123.4567", "***.***.**67"),
        ("iban", "DE89 3704 0044 0532 0130 00", "DE** **** **** **** **30 00"),
        ("iban", "DE89370400440532013000", "DE****************3000"),
        ("us_ssn", "123-45-6789", "***-**-6789"),
        ("ip_address", "192.168.1.23", "192.168.*.*"),
        ("ip_address", "2001:db8::1", "2001:db8:****"),
        ("ip_address", "fe80::1", "fe80:****"),
        ("ip_address", "::1", "::****"),
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE", "AKIA****************"),
        ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED:api_key]"),
        ("jwt", GOOD_JWT, "[REDACTED:jwt]"),
        ("private_key", PEM, "[REDACTED:private_key]"),
        ("password_hash", BCRYPT, "[REDACTED:password_hash]"),
    ],
)
def test_each_detector_has_its_masked_shape(detector: str, value: str, masked: str) -> None:
    assert mask_match(detector, value) == masked


def test_mask_text_masks_every_match_and_counts_them() -> None:
    text = "Jane <jane@example.com> paid 4242 4242 4242 4242 from 10.1.2.3; ssn 123-45-6789"
    assert mask_text(text, SCANNER) == (
        "Jane <j***@example.com> paid **** **** **** 4242 from 10.1.*.*; ssn ***-**-6789",
        4,
    )


def test_mask_text_leaves_clean_text_alone() -> None:
    assert mask_text("order 42 shipped on 2024-01-15", SCANNER) == (
        "order 42 shipped on 2024-01-15",
        0,
    )


def test_mask_text_masks_a_match_that_masking_its_neighbour_uncovers() -> None:
    masked, count = mask_text("a@b.co@c.com", SCANNER)
    assert masked == "a***@b***@c.com"
    assert count == 2


def test_mask_text_reports_only_the_secret_of_a_key_value_pair() -> None:
    assert mask_text("curl -H 'Authorization: Bearer a1B2c3D4e5F6g7H8i9J0'", SCANNER) == (
        "curl -H 'Authorization: Bearer [REDACTED:api_key]'",
        1,
    )


def test_column_value_that_is_one_detector_match_keeps_its_shape() -> None:
    assert mask_column_value("jane@example.com", None) == "j***@example.com"
    assert mask_column_value(" 123-45-6789 ", None) == "***-**-6789"
    assert mask_column_value("4242424242424242", SCANNER) == "************4242"


def test_other_column_values_become_a_fixed_mask_that_hides_the_length() -> None:
    assert mask_column_value("Jane Doe", None) == MASK
    assert mask_column_value("a much longer secret value", None) == MASK
    assert mask_column_value("mail jane@example.com", None) == MASK  # not the whole value
    assert mask_column_value("", None) == MASK
    # A scanner without the email detector gives the fixed mask.
    assert mask_column_value("jane@example.com", Scanner(["credit_card"])) == MASK


def test_derived_values_are_fully_masked() -> None:
    assert mask_derived_value("jane@example.com, john@example.com") == MASK
    assert mask_derived_value("3") == MASK


def test_mask_json_masks_keys_at_any_depth_case_insensitively() -> None:
    doc = {
        "Email": "jane@example.com",
        "name": "Jane",
        "profile": {"SSN": "123-45-6789", "age": 41, "tags": ["x"]},
        "items": [{"EMAIL": "john@example.com"}, {"email": None}],
    }
    out = json.loads(mask_json(json.dumps(doc), ["email", "ssn"], None))
    assert out == {
        "Email": "j***@example.com",
        "name": "Jane",
        "profile": {"SSN": "***-**-6789", "age": 41, "tags": ["x"]},
        "items": [{"EMAIL": "j***@example.com"}, {"email": None}],
    }


def test_mask_json_turns_masked_numbers_and_booleans_into_null() -> None:
    out = json.loads(
        mask_json(
            '{"salary": 120000.5, "ssn": 123456789, "vip": true}', ["salary", "ssn", "vip"], None
        )
    )
    assert out == {"salary": None, "ssn": None, "vip": None}


def test_mask_json_masks_everything_under_a_masked_key() -> None:
    out = json.loads(
        mask_json('{"card": {"number": "x", "cvv": 123, "n": ["a", 1]}}', ["card"], None)
    )
    assert out == {"card": {"number": MASK, "cvv": None, "n": [MASK, None]}}


def test_mask_json_runs_detectors_over_the_other_strings_and_keys() -> None:
    text = '{"note": "call +1 555 123 4567", "jane@example.com": [1.10, "ok"]}'
    assert mask_json(text, [], SCANNER) == (
        '{"note": "call +* *** *** **67", "j***@example.com": [1.10, "ok"]}'
    )


def test_mask_json_keeps_numbers_it_does_not_mask_exactly() -> None:
    text = "[12345678901234567890123.4500, 1e400, -0.0, 7]"
    assert mask_json(text, ["x"], SCANNER) == "[12345678901234567890123.4500, 1e400, -0.0, 7]"


@pytest.mark.parametrize("text", ["", "{", "not json", "{'a': 1}", "[NaN]", '{"a": Infinity}'])
def test_mask_json_of_invalid_json_is_the_fixed_mask(text: str) -> None:
    assert mask_json(text, ["a"], SCANNER) == MASK


def test_mask_json_of_a_scalar_document() -> None:
    assert mask_json('"jane@example.com"', [], SCANNER) == '"j***@example.com"'
    assert mask_json("42", ["a"], None) == "42"


def test_unique_violation_detail_masks_the_masked_column_value() -> None:
    fields = {
        "S": "ERROR",
        "C": "23505",
        "M": 'duplicate key value violates unique constraint "users_email_key"',
        "D": "Key (email)=(jane@example.com) already exists.",
    }
    out = mask_error_fields(fields, ["Email"], None)
    assert out["D"] == "Key (email)=(j***@example.com) already exists."
    assert out["M"] == fields["M"]
    assert out["C"] == "23505"
    assert fields["D"] == "Key (email)=(jane@example.com) already exists."  # input untouched


def test_multi_column_key_masks_only_the_masked_columns() -> None:
    fields = {"D": 'Key (tenant_id, "SSN")=(7, 123-45-6789) already exists.'}
    out = mask_error_fields(fields, ["ssn"], None)
    assert out["D"] == 'Key (tenant_id, "SSN")=(7, ***-**-6789) already exists.'
    assert mask_error_fields({"D": "Key (a, b)=(x, y) already exists."}, ["b"], None) == {
        "D": "Key (a, b)=(x, ****) already exists."
    }


def test_key_values_holding_the_separator_are_all_masked() -> None:
    fields = {"D": "Key (name, secret)=(Doe, Jane, hunter2) already exists."}
    out = mask_error_fields(fields, ["secret"], None)
    assert out["D"] == "Key (name, secret)=(****, ****) already exists."


def test_foreign_key_and_exclusion_details_are_masked() -> None:
    fk = {"D": 'Key (email)=(jane@example.com) is not present in table "users".'}
    assert mask_error_fields(fk, ["email"], None)["D"] == (
        'Key (email)=(j***@example.com) is not present in table "users".'
    )
    excl = {"D": "Key (room)=(A1) conflicts with existing key (room)=(B2)."}
    assert mask_error_fields(excl, ["room"], None)["D"] == (
        "Key (room)=(****) conflicts with existing key (room)=(****)."
    )


def test_expression_index_key_naming_a_masked_column_is_masked() -> None:
    fields = {"D": "Key (lower((email)::text))=(jane@example.com) already exists."}
    assert mask_error_fields(fields, ["email"], None)["D"] == (
        "Key (lower((email)::text))=(j***@example.com) already exists."
    )


def test_translated_key_detail_is_masked_to_its_last_parenthesis() -> None:
    fields = {"D": "Schlüssel (email)=(jane@example.com) existiert bereits."}
    assert mask_error_fields(fields, ["email"], None)["D"] == (
        "Schlüssel (email)=(j***@example.com) existiert bereits."
    )


def test_a_value_holding_a_parenthesis_is_masked_whole() -> None:
    fields = {"D": "Key (note)=(a) b) already exists."}
    assert mask_error_fields(fields, ["note"], None)["D"] == "Key (note)=(****) already exists."


def test_key_of_unmasked_columns_is_left_alone_without_a_scanner() -> None:
    fields = {"D": "Key (id)=(42) already exists."}
    assert mask_error_fields(fields, ["email"], None) == fields


def test_failing_row_is_hidden_when_any_column_is_masked() -> None:
    fields = {"D": "Failing row contains (1, jane@example.com, null)."}
    assert mask_error_fields(fields, ["email"], None)["D"] == "Failing row contains (****)."
    assert mask_error_fields(fields, [], SCANNER)["D"] == (
        "Failing row contains (1, j***@example.com, null)."
    )


def test_detectors_run_over_message_detail_hint_and_where() -> None:
    fields = {
        "M": 'invalid input syntax for type integer: "jane@example.com"',
        "H": "try 4242 4242 4242 4242",
        "W": "SQL statement \"SELECT '123-45-6789'\"",
        "s": "public",
    }
    out = mask_error_fields(fields, [], SCANNER)
    assert out == {
        "M": 'invalid input syntax for type integer: "j***@example.com"',
        "H": "try **** **** **** 4242",
        "W": "SQL statement \"SELECT '***-**-6789'\"",
        "s": "public",
    }


@pytest.mark.parametrize("oid", sorted(TEXT_OIDS))
@pytest.mark.parametrize("binary", [False, True])
def test_text_cells_are_masked_in_both_formats(oid: int, binary: bool) -> None:
    raw = b"jane@example.com"
    assert mask_cell(raw, oid=oid, binary=binary, how="column") == b"j***@example.com"
    assert mask_cell(raw, oid=oid, binary=binary, how="derived") == b"****"
    assert mask_cell(raw, oid=oid, binary=binary, how="detect", scanner=SCANNER) == (
        b"j***@example.com"
    )


def test_detect_returns_the_same_object_when_nothing_matched() -> None:
    raw = b"nothing here"
    assert mask_cell(raw, oid=25, binary=False, how="detect", scanner=SCANNER) is raw
    assert mask_cell(raw, oid=25, binary=False, how="detect", scanner=None) is raw
    doc = b'{"a":  "b"}'
    assert mask_cell(doc, oid=JSON_OID, binary=False, how="detect", scanner=SCANNER) is doc


def test_json_cells_are_masked_by_key_in_text_and_binary_format() -> None:
    doc = b'{"email": "jane@example.com", "n": 1}'
    assert mask_cell(doc, oid=JSON_OID, binary=False, how="json", keys=["EMAIL"]) == (
        b'{"email": "j***@example.com", "n": 1}'
    )
    assert mask_cell(doc, oid=JSON_OID, binary=True, how="json", keys=["email"]) == (
        b'{"email": "j***@example.com", "n": 1}'
    )
    assert mask_cell(b"\x01" + doc, oid=JSONB_OID, binary=True, how="json", keys=["email"]) == (
        b'\x01{"email": "j***@example.com", "n": 1}'
    )
    assert mask_cell(doc, oid=JSONB_OID, binary=False, how="json", keys=["email"]) == (
        b'{"email": "j***@example.com", "n": 1}'
    )


def test_jsonb_detect_keeps_the_version_byte() -> None:
    raw = b'\x01["jane@example.com"]'
    assert mask_cell(raw, oid=JSONB_OID, binary=True, how="detect", scanner=SCANNER) == (
        b'\x01["j***@example.com"]'
    )


def test_json_cells_masked_whole_stay_valid_json() -> None:
    for binary, raw, prefix in ((False, b'{"a": 1}', b""), (True, b'\x01{"a": 1}', b"\x01")):
        out = mask_cell(raw, oid=JSONB_OID, binary=binary, how="column")
        assert out == prefix + b'"****"'
    assert mask_cell(b'{"a": 1}', oid=JSON_OID, binary=False, how="derived") == b'"****"'


def test_jsonb_with_an_unknown_version_is_null() -> None:
    assert mask_cell(b'\x02{"a": 1}', oid=JSONB_OID, binary=True, how="json") is None
    assert mask_cell(b"", oid=JSONB_OID, binary=True, how="detect", scanner=SCANNER) is None


def test_non_text_types_masked_by_column_become_null() -> None:
    assert mask_cell(b"42", oid=INT4_OID, binary=False, how="column") is None
    assert mask_cell(b"42", oid=INT4_OID, binary=False, how="derived") is None
    assert mask_cell(b"\x00\x00\x00\x2a", oid=INT4_OID, binary=True, how="column") is None
    assert mask_cell(b"\x00\x00\x00\x2a", oid=INT4_OID, binary=True, how="json") is None


def test_binary_non_text_types_pass_detection_unchanged() -> None:
    raw = b"\x00\x00\x00\x2a"
    assert mask_cell(raw, oid=INT4_OID, binary=True, how="detect", scanner=SCANNER) is raw


def test_detection_in_a_non_text_type_nulls_the_value_rather_than_break_its_syntax() -> None:
    assert (
        mask_cell(b"192.168.1.23", oid=INET_OID, binary=False, how="detect", scanner=SCANNER)
        is None
    )
    card = b"4242424242424242"
    assert mask_cell(card, oid=20, binary=False, how="detect", scanner=SCANNER) is None
    assert mask_cell(b"{1,2}", oid=1007, binary=False, how="detect", scanner=SCANNER) == b"{1,2}"


def test_detection_in_a_text_array_masks_the_elements() -> None:
    raw = b'{jane@example.com,"4242 4242 4242 4242"}'
    assert mask_cell(raw, oid=TEXT_ARRAY_OID, binary=False, how="detect", scanner=SCANNER) == (
        b'{j***@example.com,"**** **** **** 4242"}'
    )


def test_invalid_utf8_in_a_text_cell_does_not_raise() -> None:
    raw = b"\xff\xfejane@example.com"
    assert mask_cell(raw, oid=25, binary=False, how="detect", scanner=SCANNER) == (
        "\ufffd\ufffdj***@example.com".encode()
    )


def test_unknown_masking_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown masking"):
        mask_cell(b"x", oid=25, binary=False, how="hash")


# Masking must not leave (or create) a value these detectors still find.
SHAPED = {"email", "credit_card", "us_ssn", "iban", "aws_access_key"}


@FUZZ
@given(TEXTS)
def test_masked_text_holds_no_detectable_value(text: str) -> None:
    masked, count = mask_text(text, SCANNER)
    assert not [m for m in SCANNER.scan(masked) if m.detector in SHAPED]
    assert (count == 0) == (masked == text)


@FUZZ
@given(TEXTS, st.lists(st.sampled_from(["email", "ssn", "a", "Note"]), max_size=3))
def test_mask_json_never_raises(text: str, keys: list[str]) -> None:
    assert isinstance(mask_json(text, keys, SCANNER), str)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(FRAGMENTS)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["email", "EMAIL", "ssn", "x", "jane@example.com"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@FUZZ
@given(JSON_VALUES)
def test_mask_json_of_json_is_json_without_detectable_values(doc: object) -> None:
    out = mask_json(json.dumps(doc), ["email", "ssn"], SCANNER)
    parsed = json.loads(out)
    for s in _strings(parsed):
        assert not [m for m in SCANNER.scan(s) if m.detector in SHAPED]


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *_strings(v)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


@FUZZ
@given(
    st.dictionaries(st.sampled_from("SCMDHWPqs"), TEXTS, max_size=5),
    st.lists(st.sampled_from(["email", "a", "B"]), max_size=2),
)
def test_mask_error_fields_never_raises(fields: dict[str, str], columns: list[str]) -> None:
    out = mask_error_fields(fields, columns, SCANNER)
    assert out.keys() == fields.keys()


@FUZZ
@given(
    st.binary(max_size=64),
    st.one_of(
        st.sampled_from([*TEXT_OIDS, JSON_OID, JSONB_OID, INT4_OID, INET_OID]),
        st.integers(0, 2**32 - 1),
    ),
    st.sampled_from(["column", "derived", "json", "detect"]),
    st.booleans(),
)
def test_mask_cell_never_raises(raw: bytes, oid: int, how: str, binary: bool) -> None:
    out = mask_cell(raw, oid=oid, binary=binary, how=how, keys=["a"], scanner=SCANNER)
    assert out is None or isinstance(out, bytes)
