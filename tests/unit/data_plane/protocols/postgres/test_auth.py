"""Authentication without sockets: UpstreamAuth (client) talks to ScramServer (server) through
codec-framed messages; a hand-written SCRAM client covers what UpstreamAuth never sends, and
scramp's server checks ScramClient as an independent implementation."""

from __future__ import annotations

import base64
import hashlib
import hmac
from types import SimpleNamespace

import pytest
import scramp
from hypothesis import given, settings
from hypothesis import strategies as st

from data_plane.protocols.postgres import auth, codec
from data_plane.protocols.postgres.auth import (
    MAX_ITERATIONS,
    AuthFailed,
    ScramCandidate,
    ScramClient,
    ScramServer,
    UpstreamAuth,
)

FUZZ = settings(max_examples=300, deadline=None)
SALT = b"lockgate-salt-16"
ITERATIONS = 4096
TOKENS = {"key-a": "token-aaaa", "key-b": "token-bbbb", "key-c": "token-cccc"}


def candidate(key_id: str, password: str) -> ScramCandidate:
    salt, stored_key, server_key, iterations = scramp.ScramMechanism(
        "SCRAM-SHA-256"
    ).make_auth_info(password, iteration_count=ITERATIONS, salt=SALT)
    assert (salt, iterations) == (SALT, ITERATIONS)
    return ScramCandidate(key_id=key_id, stored_key=stored_key, server_key=server_key)


CANDIDATES = [candidate(k, v) for k, v in TOKENS.items()]


def new_server(candidates: list[ScramCandidate] = CANDIDATES) -> ScramServer:
    return ScramServer(SALT, ITERATIONS, candidates)


def unframe(data: bytes | None) -> tuple[str, bytes]:
    assert data is not None
    reader = codec.MessageReader()
    reader.feed(data)
    msg = reader.next_message()
    assert msg is not None and reader.pending() == b""
    return chr(msg[0]), msg[1]


def authentication(data: bytes) -> tuple[int, bytes]:
    kind, body = unframe(data)
    assert kind == "R"
    return codec.parse_authentication(body)


def run_exchange(client: UpstreamAuth, server: ScramServer) -> str:
    """Drive a whole SASL exchange as a PostgreSQL server would; return the matched key."""
    reply = client.respond(*authentication(codec.authentication_sasl(["SCRAM-SHA-256"])))
    kind, body = unframe(reply)
    assert kind == "p"
    mechanism, client_first = codec.parse_sasl_initial_response(body)
    assert mechanism == "SCRAM-SHA-256"
    server_first = server.handle_client_first(client_first)

    reply = client.respond(*authentication(codec.authentication_sasl_continue(server_first)))
    kind, client_final = unframe(reply)
    assert kind == "p"
    key_id, server_final = server.handle_client_final(client_final)

    assert client.respond(*authentication(codec.authentication_sasl_final(server_final))) is None
    assert not client.done
    assert client.respond(*authentication(codec.authentication_ok())) is None
    assert client.done
    return key_id


# A minimal SCRAM-SHA-256 client written from RFC 5802, independent of the code under test,
# so the tests can send what libpq sends (empty user name) and what it never sends.


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_final(
    password: str, client_first_bare: str, server_first: bytes, gs2_header: str = "n,,"
) -> tuple[str, str, bytes]:
    """Return (client-final-without-proof, proof, expected server signature)."""
    attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    without_proof = f"c={b64(gs2_header.encode())},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    return without_proof, b64(proof), server_signature


def libpq_style_login(server: ScramServer, password: str, gs2_header: str = "n,,") -> str:
    bare = "n=,r=rOprNGfwEbeRWgbNEkqO"
    server_first = server.handle_client_first(f"{gs2_header}{bare}".encode())
    without_proof, proof, server_signature = scram_final(password, bare, server_first, gs2_header)
    key_id, server_final = server.handle_client_final(f"{without_proof},p={proof}".encode())
    assert server_final == f"v={b64(server_signature)}".encode()
    return key_id


# --- ScramServer ---------------------------------------------------------------------------


def test_correct_token_among_three_candidates_picks_its_key_id() -> None:
    assert run_exchange(UpstreamAuth("app", "token-bbbb"), new_server()) == "key-b"
    assert run_exchange(UpstreamAuth("app", "token-cccc"), new_server()) == "key-c"


def test_wrong_token_is_refused() -> None:
    with pytest.raises(AuthFailed, match="authentication failed"):
        run_exchange(UpstreamAuth("app", "token-zzzz"), new_server())


def test_no_candidates_runs_the_exchange_then_fails_like_a_wrong_token() -> None:
    server = new_server([])
    bare = "n=,r=abc"
    server_first = server.handle_client_first(f"n,,{bare}".encode())
    assert server_first.startswith(b"r=abc") and b",s=" in server_first
    without_proof, proof, _ = scram_final("token-aaaa", bare, server_first)
    with pytest.raises(AuthFailed, match="authentication failed"):
        server.handle_client_final(f"{without_proof},p={proof}".encode())


def test_empty_user_name_sent_by_libpq_is_accepted() -> None:
    assert libpq_style_login(new_server(), "token-aaaa") == "key-a"


def test_y_header_from_a_client_that_could_bind_is_accepted() -> None:
    assert libpq_style_login(new_server(), "token-aaaa", gs2_header="y,,") == "key-a"


def test_server_first_carries_salt_iterations_and_extended_nonce() -> None:
    server_first = new_server().handle_client_first(b"n,,n=,r=clientnonce")
    attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
    assert attrs["r"].startswith("clientnonce") and len(attrs["r"]) == len("clientnonce") + 24
    assert base64.b64decode(attrs["s"]) == SALT
    assert attrs["i"] == "4096"


def test_channel_binding_request_is_refused() -> None:
    with pytest.raises(AuthFailed, match="channel binding not supported"):
        new_server().handle_client_first(b"p=tls-server-end-point,,n=,r=abc")


def test_authorization_identity_is_refused() -> None:
    with pytest.raises(AuthFailed):
        new_server().handle_client_first(b"n,a=admin,n=,r=abc")


def test_tampered_nonce_is_refused() -> None:
    server = new_server()
    bare = "n=,r=abc"
    server_first = server.handle_client_first(f"n,,{bare}".encode())
    without_proof, proof, _ = scram_final("token-aaaa", bare, server_first)
    tampered = without_proof.replace(",r=abc", ",r=abd")
    with pytest.raises(AuthFailed, match="nonce"):
        server.handle_client_final(f"{tampered},p={proof}".encode())


def test_channel_binding_attribute_must_match_the_first_header() -> None:
    server = new_server()
    bare = "n=,r=abc"
    server_first = server.handle_client_first(f"y,,{bare}".encode())
    # The proof is computed over c=biws ("n,,") although the client said "y,,".
    without_proof, proof, _ = scram_final("token-aaaa", bare, server_first, gs2_header="n,,")
    with pytest.raises(AuthFailed, match="channel binding"):
        server.handle_client_final(f"{without_proof},p={proof}".encode())


def test_messages_out_of_order_are_refused() -> None:
    with pytest.raises(AuthFailed):
        new_server().handle_client_final(b"c=biws,r=abc,p=AAAA")
    server = new_server()
    libpq_style_login(server, "token-aaaa")
    with pytest.raises(AuthFailed):
        server.handle_client_final(b"c=biws,r=abc,p=AAAA")


def test_a_failed_exchange_cannot_be_retried_on_the_same_server() -> None:
    server = new_server()
    bare = "n=,r=abc"
    server_first = server.handle_client_first(f"n,,{bare}".encode())
    wrong, proof, _ = scram_final("token-zzzz", bare, server_first)
    with pytest.raises(AuthFailed):
        server.handle_client_final(f"{wrong},p={proof}".encode())
    right, proof, _ = scram_final("token-aaaa", bare, server_first)
    with pytest.raises(AuthFailed):
        server.handle_client_final(f"{right},p={proof}".encode())


@FUZZ
@given(st.binary(max_size=120))
def test_client_first_raises_only_auth_failed_on_any_bytes(data: bytes) -> None:
    try:
        new_server().handle_client_first(data)
    except AuthFailed:
        pass


SCRAM_PIECES = ["n", "y", "p=", "c=", "r=", "p=", "m=", "n=", ",", ",,", "=", "biws", "abc"]


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=120),
        st.lists(st.sampled_from(SCRAM_PIECES)).map(lambda p: "".join(p).encode()),
    )
)
def test_client_first_raises_only_auth_failed_on_scram_like_text(data: bytes) -> None:
    try:
        new_server().handle_client_first(data)
    except AuthFailed:
        pass


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=120),
        st.lists(st.sampled_from([*SCRAM_PIECES, "r=abc", "p=AAAA", "p=\xe9"])).map(
            lambda p: "".join(p).encode()
        ),
    )
)
def test_client_final_raises_only_auth_failed_on_any_bytes(data: bytes) -> None:
    server = new_server()
    server.handle_client_first(b"n,,n=,r=abc")
    try:
        server.handle_client_final(data)
    except AuthFailed:
        pass


# --- ScramClient ---------------------------------------------------------------------------


def scramp_login(password: str, server_password: str, iterations: int = ITERATIONS) -> None:
    """A whole exchange of ScramClient with scramp's server; raises what either side raises."""
    mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
    auth_info = mechanism.make_auth_info(server_password, iteration_count=iterations)
    server = mechanism.make_server(lambda _user: auth_info)
    client = ScramClient(password)
    server.set_client_first(client.client_first().decode())
    server.set_client_final(client.client_final(server.get_server_first().encode()).decode())
    client.verify_server_final(server.get_server_final().encode())


def server_first_for(client: ScramClient, rest: str = ",s=AAAAAAAA,i=4096") -> bytes:
    nonce = client.client_first().decode().split("r=", 1)[1]
    return f"r={nonce}more{rest}".encode()


@pytest.fixture
def pbkdf2_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Iteration counts of the PBKDF2 runs ScramClient makes, from an empty key cache."""
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        calls.append(iterations)
        return real(name, password, salt, iterations)

    # The auth module's hashlib only: scramp's server derives its verifiers with the real one.
    monkeypatch.setattr(
        auth, "hashlib", SimpleNamespace(**{**vars(hashlib), "pbkdf2_hmac": counting})
    )
    monkeypatch.setattr(auth, "_key_cache", type(auth._key_cache)())
    return calls


def test_scram_client_logs_in_to_scramps_server_and_checks_its_signature() -> None:
    scramp_login("s3cret", "s3cret")
    scramp_login("pässwörd ünïcode", "pässwörd ünïcode")


def test_scram_client_with_the_wrong_password_is_refused_by_scramps_server() -> None:
    with pytest.raises(scramp.ScramException):
        scramp_login("wrong", "s3cret")


def test_scram_client_derives_a_password_once_per_salt_and_iteration_count(
    pbkdf2_calls: list[int],
) -> None:
    for _ in range(3):
        run_exchange(UpstreamAuth("app", "token-aaaa"), new_server())
    assert pbkdf2_calls == [ITERATIONS]
    scramp_login("token-aaaa", "token-aaaa", iterations=5000)  # a new salt and count
    run_exchange(UpstreamAuth("app", "token-bbbb"), new_server())  # another password
    assert pbkdf2_calls == [ITERATIONS, 5000, ITERATIONS]
    with pytest.raises(AuthFailed):  # a cached key of another password is never used
        run_exchange(UpstreamAuth("app", "token-zzzz"), new_server())


def test_scram_key_cache_is_bounded(pbkdf2_calls: list[int]) -> None:
    for i in range(auth._KEY_CACHE_SIZE + 20):
        client = ScramClient(f"pw-{i}")
        client.client_final(server_first_for(client, ",s=AAAA,i=1"))
    assert len(auth._key_cache) == auth._KEY_CACHE_SIZE
    assert len(pbkdf2_calls) == auth._KEY_CACHE_SIZE + 20


def test_password_is_saslprepped_or_taken_as_is_where_saslprep_refuses_it() -> None:
    assert auth._saslprep("plain ascii") == b"plain ascii"
    assert auth._saslprep("no\u00a0break") == b"no break"  # mapped to a space
    assert auth._saslprep("bell\u0007") == "bell\u0007".encode()  # prohibited: raw bytes


@pytest.mark.parametrize(
    ("server_first", "message"),
    [
        (lambda c: b"r=someone-elses,s=AAAA,i=4096", "nonce"),
        (lambda c: server_first_for(c).replace(b"more", b""), "nonce"),  # not extended
        (lambda c: b"m=ext," + server_first_for(c), "extension"),
        (lambda c: server_first_for(c, ",s=AAAA,i=0"), "malformed"),
        (lambda c: server_first_for(c, f",s=AAAA,i={MAX_ITERATIONS + 1}"), "malformed"),
        (lambda c: server_first_for(c, ",s=!!!,i=4096"), "malformed"),
        (lambda c: server_first_for(c, ",i=4096,s=AAAA"), "malformed"),
    ],
)
def test_scram_client_refuses_a_bad_server_first_message(server_first, message: str) -> None:
    client = ScramClient("pw")
    with pytest.raises(AuthFailed, match=message):
        client.client_final(server_first(client))


def test_scram_client_reports_a_server_error_and_refuses_a_missing_verifier() -> None:
    client = ScramClient("pw")
    client.client_final(server_first_for(client))
    with pytest.raises(AuthFailed, match="other-error"):
        client.verify_server_final(b"e=other-error")
    with pytest.raises(AuthFailed, match="malformed"):
        client.verify_server_final(b"x=AAAA")
    with pytest.raises(AuthFailed, match="verification"):
        ScramClient("pw").verify_server_final(b"v=AAAA")  # before any challenge


@FUZZ
@given(st.binary(max_size=120), st.binary(max_size=80))
def test_scram_client_raises_only_auth_failed_on_any_server_messages(
    first: bytes, final: bytes
) -> None:
    client = ScramClient("pw")
    for data in (first, server_first_for(client, first.decode("latin-1"))):
        try:
            client.client_final(data)
        except AuthFailed:
            pass
    try:
        client.verify_server_final(final)
    except AuthFailed:
        pass


# --- UpstreamAuth --------------------------------------------------------------------------


def test_upstream_scram_refuses_a_server_with_the_wrong_signature() -> None:
    client = UpstreamAuth("app", "token-aaaa")
    server = new_server()
    _, body = unframe(client.respond(10, b"SCRAM-SHA-256\0\0"))
    _, client_first = codec.parse_sasl_initial_response(body)
    _, client_final = unframe(client.respond(11, server.handle_client_first(client_first)))
    _, server_final = server.handle_client_final(client_final)
    forged = b"v=" + base64.b64encode(bytes(32))
    assert server_final != forged
    with pytest.raises(AuthFailed, match="SCRAM verification"):
        client.respond(12, forged)


def test_upstream_scram_refuses_authentication_ok_before_the_server_proved_itself() -> None:
    client = UpstreamAuth("app", "token-aaaa")
    client.respond(10, b"SCRAM-SHA-256\0\0")
    with pytest.raises(AuthFailed, match="early"):
        client.respond(0, b"")
    assert not client.done


def test_upstream_scram_is_chosen_over_plus_when_both_are_offered() -> None:
    client = UpstreamAuth("app", "token-aaaa")
    _, body = unframe(client.respond(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"))
    mechanism, client_first = codec.parse_sasl_initial_response(body)
    assert mechanism == "SCRAM-SHA-256"
    assert client_first.startswith(b"n,,n=")


def test_upstream_plus_only_is_refused() -> None:
    with pytest.raises(AuthFailed, match="SASL mechanism"):
        UpstreamAuth("app", "pw").respond(10, b"SCRAM-SHA-256-PLUS\0\0")


@pytest.mark.parametrize(("code", "name"), [(2, "Kerberos"), (7, "GSSAPI"), (9, "SSPI")])
def test_upstream_unsupported_methods_are_refused_by_name(code: int, name: str) -> None:
    with pytest.raises(AuthFailed, match=name):
        UpstreamAuth("app", "pw").respond(code, b"")


def test_upstream_cleartext_password_is_sent_nul_terminated() -> None:
    client = UpstreamAuth("app", "s3cret")
    kind, body = unframe(client.respond(3, b""))
    assert (kind, codec.parse_password(body)) == ("p", b"s3cret")
    assert client.respond(0, b"") is None and client.done


def test_upstream_md5_response_matches_postgresql() -> None:
    salt = b"\x01\x02\x03\x04"
    inner = hashlib.md5(b"secret" + b"app").hexdigest().encode()
    expected = b"md5" + hashlib.md5(inner + salt).hexdigest().encode()
    kind, body = unframe(UpstreamAuth("app", "secret").respond(5, salt))
    assert (kind, codec.parse_password(body)) == ("p", expected)


def test_upstream_md5_response_matches_published_vector() -> None:
    # rust-postgres's postgres-protocol test vector for user md5_user, password "password".
    _, body = unframe(UpstreamAuth("md5_user", "password").respond(5, b"\x2a\x3d\x8f\xe0"))
    assert codec.parse_password(body) == b"md562af4dd09bbb41884907a838a3233294"


def test_upstream_requests_after_success_are_refused() -> None:
    client = UpstreamAuth("app", "pw")
    client.respond(0, b"")
    with pytest.raises(AuthFailed):
        client.respond(3, b"")


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 2, 3, 5, 7, 8, 9, 10, 11, 12, -1, 99]),
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from([b"SCRAM-SHA-256\0\0", b"r=x,s=AAAA,i=4096", b"v=AAAA"]),
            ),
        ),
        max_size=5,
    )
)
def test_upstream_auth_raises_only_auth_failed_on_any_requests(
    requests: list[tuple[int, bytes]],
) -> None:
    client = UpstreamAuth("app", "pw")
    try:
        for code, data in requests:
            client.respond(code, data)
    except AuthFailed:
        pass
