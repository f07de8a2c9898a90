import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.masking.detectors import ALL, Match, Scanner, bench, scanner_for

FUZZ = settings(max_examples=200, deadline=None)
SCANNER = Scanner(ALL)


def found(text: str, scanner: Scanner = SCANNER) -> list[tuple[str, str]]:
    return [(m.detector, text[m.start : m.end]) for m in scanner.scan(text)]


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


GOOD_JWT = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': '42'})}.c2lnbmF0dXJl"
NO_ALG_JWT = f"{b64url({'typ': 'JWT', 'kid': 'k1'})}.{b64url({'sub': '42'})}.c2lnbmF0dXJl"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)
BCRYPT = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
SCRAM = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVkS2V5c3RvcmVk:c2VydmVyS2V5c2VydmVy"
MD5 = "md5" + "0123456789abcdef" * 2
SHA512_CRYPT = "$6$saltsalt$" + "aB3./xYz9Q" * 8 + "aB3./x"


def test_unknown_detector_names_are_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"nope.*valid detectors: email, phone"):
        Scanner(["email", "nope"])


def test_a_set_of_detectors_gets_one_shared_scanner_whatever_the_order() -> None:
    shared = scanner_for(["us_ssn", "credit_card"])
    assert scanner_for(("credit_card", "us_ssn", "us_ssn")) is shared
    assert shared.names == ("credit_card", "us_ssn")
    assert scanner_for(["credit_card"]) is not shared
    text = "card 4242 4242 4242 4242, ssn 123-45-6789"
    assert found(text, shared) == found(text, Scanner(["credit_card", "us_ssn"]))
    with pytest.raises(ValueError, match="nope"):
        scanner_for(["email", "nope"])


def test_all_lists_every_detector() -> None:
    assert set(ALL) == {
        "email",
        "phone",
        "credit_card",
        "iban",
        "us_ssn",
        "ip_address",
        "aws_access_key",
        "api_key",
        "jwt",
        "private_key",
        "password_hash",
    }


def test_a_scanner_only_reports_its_own_detectors() -> None:
    text = "jane@example.com paid with 4242 4242 4242 4242"
    assert found(text, Scanner(["email"])) == [("email", "jane@example.com")]
    assert found(text, Scanner(["credit_card"])) == [("credit_card", "4242 4242 4242 4242")]
    assert Scanner([]).scan(text) == []
    assert not Scanner([]).has_any(text)


@pytest.mark.parametrize(
    "text",
    ["jane.doe@example.com", "j+tag@mail.example.co.uk", "JOHN_SMITH@EXAMPLE.ORG", "a1@b-c.io"],
)
def test_email_is_detected(text: str) -> None:
    assert found(f"contact: {text}.") == [("email", text)]


@pytest.mark.parametrize("text", ["jane@localhost", "@example.com", "user at example.com", "a@b.c"])
def test_email_needs_a_local_part_and_a_dotted_domain(text: str) -> None:
    assert not [d for d, _ in found(text) if d == "email"]


@pytest.mark.parametrize(
    "card",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4111-1111-1111-1111",
        "5555555555554444",
        "378282246310005",
        "3782 822463 10005",
        "4222222222222",
        "6011 1111 1111 1117",
    ],
)
def test_luhn_valid_card_numbers_are_detected(card: str) -> None:
    assert found(f"card {card} on file") == [("credit_card", card)]


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # Luhn fails
        "4242 4242 4242 4241",
        "0000 0000 0000 0000",  # passes Luhn, but no card is one repeated digit
        "424242424242",  # 12 digits
        "42424242424242424242",  # 20 digits
    ],
)
def test_card_like_numbers_failing_the_checks_are_not_cards(text: str) -> None:
    assert not [d for d, _ in found(text) if d == "credit_card"]


def test_a_trailing_number_group_does_not_hide_a_card() -> None:
    assert found("4242 4242 4242 4242 123") == [("credit_card", "4242 4242 4242 4242")]


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB82 WEST 1234 5698 7654 32",
        "NL91ABNA0417164300",
        "FR1420041010050500013M02606",
    ],
)
def test_iban_with_a_valid_mod97_check_is_detected(iban: str) -> None:
    assert found(f"pay to {iban} today") == [("iban", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89370400440532013001",  # one digit off
        "DE88 3704 0044 0532 0130 00",  # check digits off
        "GB82WEST1234569876543",  # a character short for GB
    ],
)
def test_iban_failing_mod97_or_length_is_not_an_iban(text: str) -> None:
    assert "iban" not in [d for d, _ in found(text)]


def test_an_uppercase_word_after_an_iban_is_not_swallowed() -> None:
    assert found("DE89 3704 0044 0532 0130 00 SEPA") == [("iban", "DE89 3704 0044 0532 0130 00")]


def test_us_ssn_is_detected() -> None:
    assert found("ssn 123-45-6789, 078-05-1120") == [
        ("us_ssn", "123-45-6789"),
        ("us_ssn", "078-05-1120"),
    ]


@pytest.mark.parametrize(
    "text",
    ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"],
)
def test_ssn_numbers_never_issued_are_not_ssns(text: str) -> None:
    assert found(text) == []


def test_ssn_inside_a_longer_dashed_number_is_not_an_ssn() -> None:
    assert found("1-123-45-6789-2") == []


@pytest.mark.parametrize(
    "phone",
    [
        "+1 (555) 123-4567",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+15551234567",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
    ],
)
def test_phone_numbers_are_detected(phone: str) -> None:
    assert found(f"call {phone} now") == [("phone", phone)]


@pytest.mark.parametrize(
    "text", ["+12", "2024-01-15", "1+2=3", "055-123-4567", "+1234567890123456"]
)
def test_short_or_malformed_numbers_are_not_phones(text: str) -> None:
    assert "phone" not in [d for d, _ in found(text)]


@pytest.mark.parametrize(
    "ip",
    [
        "192.168.1.23",
        "10.0.0.255",
        "0.0.0.0",
        "255.255.255.255",
        "2001:db8::1",
        "::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::ffff:192.0.2.1",
    ],
)
def test_ip_addresses_are_detected(ip: str) -> None:
    assert found(f"from {ip}, twice") == [("ip_address", ip)]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "12:30:45",
        "00:1a:2b:3c:4d:5e",
        "a :: b",
        "std::vector",
        "2001:db8:::1",
    ],
)
def test_non_addresses_are_not_ip_addresses(text: str) -> None:
    assert found(text) == []


def test_aws_access_key_ids_are_detected() -> None:
    assert found("id AKIAIOSFODNN7EXAMPLE and ASIAY34FZKBOKMUTVV7A") == [
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "AKIAIOSFODNN7EXAMPL",
        "AKIAIOSFODNN7EXAMPLEX",
        "akiaiosfodnn7example",
        "AKIDIOSFODNN7EXAMPLE",
    ],
)
def test_near_aws_key_ids_are_not_detected(text: str) -> None:
    assert "aws_access_key" not in [d for d, _ in found(text)]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", None),
        ("sk-proj-Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7", None),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", None),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a", None),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", None),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", None),
        ("AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", None),
        ("lg_0123456789abcdef_Zm9vYmFyYmF6cXV4cXV1eA-_x", None),
        ("Authorization: Bearer a1B2c3D4e5F6g7H8i9J0", "a1B2c3D4e5F6g7H8i9J0"),
        ("api_key=Zk3Qp9Lm2Xv7Rt4Yw8Nb", "Zk3Qp9Lm2Xv7Rt4Yw8Nb"),
        ('{"client_secret": "Zk3Qp9Lm2Xv7Rt4Yw8Nb"}', "Zk3Qp9Lm2Xv7Rt4Yw8Nb"),
        ("TOKEN: Zk3Qp9Lm2Xv7Rt4Yw8Nb", "Zk3Qp9Lm2Xv7Rt4Yw8Nb"),
    ],
)
def test_api_keys_are_detected_and_only_the_secret_is_reported(
    text: str, secret: str | None
) -> None:
    assert found(text) == [("api_key", secret or text)]


@pytest.mark.parametrize(
    "text",
    [
        "token=aaaaaaaaaaaaaaaaaaaaaaaa",  # no entropy
        "secret=configured-elsewhere-today",  # words
        "sk-learn-is-a-great-library-for-ml",
        "Bearer authentication-schemes",
        "task-0123456789abcdefghij",  # "sk-" inside a word
        "ghp_short",
    ],
)
def test_key_lookalikes_are_not_api_keys(text: str) -> None:
    assert "api_key" not in [d for d, _ in found(text)]


def test_jwt_with_an_alg_header_is_detected() -> None:
    assert found(f"jwt {GOOD_JWT} end") == [("jwt", GOOD_JWT)]


def test_jwt_whose_header_lacks_alg_or_is_not_json_is_not_a_jwt() -> None:
    assert found(NO_ALG_JWT) == []
    not_json = "eyJub3QganNvbiBhdCBhbGw.eyJzdWIiOiI0MiJ9.c2ln"
    assert "jwt" not in [d for d, _ in found(not_json)]


def test_private_key_block_spanning_lines_is_one_match() -> None:
    text = f"key:\n{PEM}\ntrailer"
    assert found(text) == [("private_key", PEM)]


def test_private_key_cut_off_before_its_end_line_is_still_detected() -> None:
    truncated = PEM[:120]
    assert found(f"x {truncated}") == [("private_key", truncated)]


@pytest.mark.parametrize("hashed", [BCRYPT, ARGON2, SCRAM, MD5, SHA512_CRYPT])
def test_password_hashes_are_detected(hashed: str) -> None:
    assert found(f"hash {hashed} stored") == [("password_hash", hashed)]


@pytest.mark.parametrize(
    "text", ["$2a$10$short", "md5" + "0" * 31, "md5" + "g" * 32, "$6$salt$tooshort", "$5 off"]
)
def test_hash_lookalikes_are_not_password_hashes(text: str) -> None:
    assert "password_hash" not in [d for d, _ in found(text)]


def test_several_matches_are_reported_left_to_right() -> None:
    text = (
        "jane@example.com 4242 4242 4242 4242 123-45-6789 10.1.2.3 "
        f"AKIAIOSFODNN7EXAMPLE {GOOD_JWT} {BCRYPT}"
    )
    assert [d for d, _ in found(text)] == [
        "email",
        "credit_card",
        "us_ssn",
        "ip_address",
        "aws_access_key",
        "jwt",
        "password_hash",
    ]


def test_a_rejected_candidate_lets_another_detector_match_at_the_same_place() -> None:
    # The JWT-shaped prefix fails the header check; the whole thing is an email address.
    text = f"{NO_ALG_JWT}@example.com"
    assert found(text) == [("email", text)]


def test_overlapping_candidates_yield_one_match() -> None:
    # A card number holds phone- and SSN-like digit groups; a bearer token holds a JWT.
    assert found("4242-4242-4242-4242") == [("credit_card", "4242-4242-4242-4242")]
    assert found(f"Bearer {GOOD_JWT}") == [("api_key", GOOD_JWT)]


def test_has_any_agrees_with_scan() -> None:
    assert SCANNER.has_any("mail me at jane@example.com")
    assert not SCANNER.has_any("nothing to see here, 2024-01-15, 42")
    assert not SCANNER.has_any("4242424242424241")


def test_bench_reports_cells_per_second_for_clean_and_dirty_cells() -> None:
    result = bench(20)
    assert set(result) == {"clean_cells_per_s", "dirty_cells_per_s"}
    assert all(v > 0 for v in result.values())


FRAGMENTS = [
    "jane@example.com",
    "4242 4242 4242 4242",
    "4242424242424241",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "+1 (555) 123-4567",
    "192.168.1.23",
    "2001:db8::1",
    "AKIAIOSFODNN7EXAMPLE",
    "token=Zk3Qp9Lm2Xv7Rt4Yw8Nb",
    GOOD_JWT,
    PEM,
    BCRYPT,
    "@",
    ".",
    "-",
    ":",
    " ",
    "$",
    "=",
]
TEXTS = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=8).map("".join),
)


@FUZZ
@given(TEXTS)
def test_scan_returns_ordered_non_overlapping_matches_within_the_text(text: str) -> None:
    matches = SCANNER.scan(text)
    end = 0
    for m in matches:
        assert isinstance(m, Match)
        assert m.detector in ALL
        assert end <= m.start < m.end <= len(text)
        end = m.end
    assert SCANNER.has_any(text) == bool(matches)


SCANNERS = [SCANNER, Scanner(["credit_card", "us_ssn"]), Scanner(["email"]), Scanner(["api_key"])]


def has_trigger(scanner: Scanner, raw: bytes) -> bool:
    return scanner.segments_with_triggers(raw + b"\x00", [0]) == [0]


@FUZZ
@given(st.sampled_from(SCANNERS), st.one_of(TEXTS.map(str.encode), st.binary()))
def test_a_trigger_is_found_in_the_bytes_exactly_when_the_text_may_match(
    scanner: Scanner, raw: bytes
) -> None:
    # As mask_cell decodes a cell; the search reads the bytes as they are.
    text = raw.decode("utf-8", errors="replace")
    assert has_trigger(scanner, raw) == scanner._may_match(text)
    if not has_trigger(scanner, raw):
        assert scanner.scan(text) == []


@FUZZ
@given(
    st.sampled_from(SCANNERS),
    st.lists(
        st.lists(
            st.one_of(TEXTS.map(str.encode), st.binary()).map(lambda b: b.replace(b"\x00", b"")),
            max_size=3,
        ),
        max_size=6,
    ),
)
def test_segments_of_cells_joined_by_nul_have_the_triggers_their_cells_have(
    scanner: Scanner, segments: list[list[bytes]]
) -> None:
    text, starts = b"", []
    for cells in segments:
        starts.append(len(text))
        text += b"".join(c + b"\x00" for c in cells)
    expected = [
        i for i, cells in enumerate(segments) if any(has_trigger(scanner, c) for c in cells)
    ]
    assert scanner.segments_with_triggers(text, starts) == expected


def test_segments_with_triggers() -> None:
    scanner = Scanner(["credit_card", "us_ssn"])
    text = b"plain\x00card 4242 4242 4242 4242\x00a@b.com\x00123-45-6789\x00"
    assert scanner.segments_with_triggers(text, [0, 6, 31, 39]) == [1, 3]
    assert scanner.segments_with_triggers(text, [0]) == [0]
    assert scanner.segments_with_triggers(b"", []) == []
    assert Scanner(["email"]).segments_with_triggers(text, [0, 6, 31, 39]) == [2]
