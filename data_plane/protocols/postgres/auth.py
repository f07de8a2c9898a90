"""Sans-io PostgreSQL authentication: SCRAM-SHA-256 towards clients, any method upstream.

ScramServer checks a client's proof against several candidate tokens sharing one salt;
UpstreamAuth answers an upstream server's Authentication requests with the node's credentials,
through ScramClient for SCRAM, which keeps the keys derived from a password it has used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import scramp
from scramp.utils import saslprep

from data_plane.protocols.postgres import codec

SCRAM_SHA_256 = "SCRAM-SHA-256"

# PostgreSQL docs, 55.7 Message Formats: the Authentication request codes.
AUTH_OK = 0
AUTH_KERBEROS_V5 = 2
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_GSS = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI = 9
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

_UNSUPPORTED_METHODS = {
    AUTH_KERBEROS_V5: "Kerberos V5",
    AUTH_GSS: "GSSAPI",
    AUTH_GSS_CONTINUE: "GSSAPI",
    AUTH_SSPI: "SSPI",
}


class AuthFailed(Exception):
    """Authentication did not succeed; the message is safe to show to the client."""


# --- server side: SCRAM-SHA-256 against several candidate tokens ----------------------------


@dataclass(frozen=True)
class ScramCandidate:
    """One token the client may hold, as the SCRAM verifier PostgreSQL would store."""

    key_id: str
    stored_key: bytes
    server_key: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _is_attr(part: str) -> bool:
    return len(part) >= 2 and part[0].isascii() and part[0].isalpha() and part[1] == "="


def _malformed(which: str) -> AuthFailed:
    return AuthFailed(f"malformed SCRAM {which}")


class ScramServer:
    """SCRAM-SHA-256 server side (RFC 5802, RFC 7677) that finds which candidate signed.

    Stages: handle_client_first once, then handle_client_final once; any failure ends the
    exchange. With no candidates the exchange still runs and fails at the end, so a client
    cannot tell an unknown user from a wrong token (pass a stable fake salt in that case).
    """

    def __init__(self, salt: bytes, iterations: int, candidates: Sequence[ScramCandidate]) -> None:
        if iterations < 1:
            raise ValueError("iterations must be positive")
        self._salt = salt
        self._iterations = iterations
        self._candidates = tuple(candidates)
        self._stage = "client-first"
        self._gs2_header = ""
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""

    def handle_client_first(self, data: bytes) -> bytes:
        """Take the client-first-message, return the server-first-message."""
        self._advance("client-first", "client-final")
        try:
            return self._client_first(data)
        except AuthFailed:
            self._stage = "failed"
            raise

    def handle_client_final(self, data: bytes) -> tuple[str, bytes]:
        """Take the client-final-message, return (matched key_id, server-final-message)."""
        self._advance("client-final", "done")
        try:
            return self._client_final(data)
        except AuthFailed:
            self._stage = "failed"
            raise

    def _advance(self, expected: str, following: str) -> None:
        if self._stage != expected:
            self._stage = "failed"
            raise AuthFailed("unexpected SCRAM message")
        self._stage = following

    def _client_first(self, data: bytes) -> bytes:
        text = _decode(data, "client-first-message")
        # RFC 5802, 7. Formal Syntax: gs2-header = gs2-cbind-flag "," [ authzid ] ","
        flag, sep1, rest = text.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if flag.startswith("p="):
            raise AuthFailed("channel binding not supported")
        # "y": the client could bind but thinks we cannot. True while we never offer
        # SCRAM-SHA-256-PLUS; once we do, "y" signals a downgrade and must be refused.
        if flag not in ("n", "y") or not sep1 or not sep2:
            raise _malformed("client-first-message")
        if authzid:
            raise AuthFailed("SCRAM authorization identity is not supported")
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            raise AuthFailed("unsupported SCRAM extension")
        # PostgreSQL docs, 55.3.1 SCRAM-SHA-256 Authentication: the user name in
        # client-first is ignored (libpq sends "n="); the startup packet's user counts.
        if (
            len(attrs) < 2
            or not attrs[0].startswith("n=")
            or not attrs[1].startswith("r=")
            or not all(_is_attr(a) for a in attrs[2:])
        ):
            raise _malformed("client-first-message")
        client_nonce = attrs[1][2:]
        # RFC 5802, 7: c-nonce is printable, i.e. %x21-2B / %x2D-7E (split removed ",").
        if not client_nonce or not all(0x21 <= ord(c) <= 0x7E for c in client_nonce):
            raise _malformed("client-first-message")
        self._gs2_header = f"{flag},,"
        self._client_first_bare = bare
        self._nonce = client_nonce + _b64(secrets.token_bytes(18))
        self._server_first = f"r={self._nonce},s={_b64(self._salt)},i={self._iterations}"
        return self._server_first.encode("ascii")

    def _client_final(self, data: bytes) -> tuple[str, bytes]:
        text = _decode(data, "client-final-message")
        # RFC 5802, 7: client-final-message = client-final-message-without-proof "," proof
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        attrs = without_proof.split(",")
        if (
            not sep
            or len(attrs) < 2
            or not attrs[0].startswith("c=")
            or not attrs[1].startswith("r=")
            or not all(_is_attr(a) for a in attrs[2:])
        ):
            raise _malformed("client-final-message")
        # Without channel binding, c= is the base64 of the gs2 header sent in client-first.
        expected_cbind = _b64(self._gs2_header.encode("ascii")).encode("ascii")
        if not hmac.compare_digest(attrs[0][2:].encode(), expected_cbind):
            raise AuthFailed("SCRAM channel binding check failed")
        if not hmac.compare_digest(attrs[1][2:].encode(), self._nonce.encode()):
            raise AuthFailed("SCRAM nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise _malformed("client-final-message") from None
        if len(proof) != hashlib.sha256().digest_size:
            raise _malformed("client-final-message")

        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        auth_bytes = auth_message.encode("utf-8")
        matched: ScramCandidate | None = None
        # Check every candidate, so timing does not tell which one (or whether any) matched.
        for candidate in self._candidates:
            client_signature = _hmac(candidate.stored_key, auth_bytes)
            client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
            ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), candidate.stored_key)
            if ok and matched is None:
                matched = candidate
        if matched is None:
            raise AuthFailed("authentication failed")
        server_signature = _hmac(matched.server_key, auth_bytes)
        return matched.key_id, f"v={_b64(server_signature)}".encode("ascii")


def _decode(data: bytes, which: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(which) from None


# --- client side: the node authenticating to the upstream server ----------------------------

# SaltedPassword = PBKDF2(password, salt, i) is what makes a SCRAM log-in cost milliseconds, and a
# node logs in to the same target with the same password for session after session. So the keys
# derived from it are kept, in memory only, per (password, salt, iterations) as the server
# presents them: a changed password or a new verifier is another entry, never a wrong answer.
# Entries are found by an HMAC of the password under a key of this process, not the password.
# Sessions log in on the node's event loop, one step at a time: no lock.
_KEY_CACHE_SIZE = 256
_key_cache: OrderedDict[tuple[bytes, bytes, int], tuple[bytes, bytes]] = OrderedDict()
_key_cache_pepper = secrets.token_bytes(32)
# The most PBKDF2 rounds an upstream server may ask for (PostgreSQL's default is 4096).
MAX_ITERATIONS = 1_000_000


def _client_and_server_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """RFC 5802's ClientKey and ServerKey for this password, salt and iteration count."""
    entry = (_hmac(_key_cache_pepper, password.encode("utf-8")), salt, iterations)
    keys = _key_cache.get(entry)
    if keys is not None:
        _key_cache.move_to_end(entry)
        return keys
    salted = hashlib.pbkdf2_hmac("sha256", _saslprep(password), salt, iterations)
    keys = (_hmac(salted, b"Client Key"), _hmac(salted, b"Server Key"))
    _key_cache[entry] = keys
    while len(_key_cache) > _KEY_CACHE_SIZE:
        _key_cache.popitem(last=False)
    return keys


def _saslprep(password: str) -> bytes:
    """The password as PostgreSQL hashes it: SASLprep'd (RFC 4013), or as it is where SASLprep
    refuses it (the server and libpq both fall back to the raw bytes then)."""
    if password.isascii() and password.isprintable():
        return password.encode("ascii")  # nothing for SASLprep to map or refuse
    try:
        return str(saslprep(password)).encode("utf-8")
    except scramp.ScramException:
        return password.encode("utf-8")


class ScramClient:
    """SCRAM-SHA-256 client side (RFC 5802, RFC 7677) without channel binding, as libpq runs
    it against PostgreSQL, with the salted password's keys cached (scramp's client derives
    them afresh for every log-in and has no way to be handed them).

    client_first, then client_final with the server-first-message, then verify_server_final.
    """

    def __init__(self, password: str) -> None:
        self._password = password
        self._nonce = _b64(secrets.token_bytes(18))
        # PostgreSQL ignores the user name here (the startup packet's counts) and takes libpq's
        # empty one; RFC 5802 wants one character at least, so "*", as pgJDBC sends.
        self._client_first_bare = f"n=*,r={self._nonce}"
        self._server_signature = b""

    def client_first(self) -> bytes:
        return f"n,,{self._client_first_bare}".encode("ascii")

    def client_final(self, server_first: bytes) -> bytes:
        """Take the server-first-message, return the client-final-message."""
        text = _decode(server_first, "server-first-message")
        # RFC 5802, 7: server-first-message = [reserved-mext ","] nonce "," salt ","
        # iteration-count ["," extensions]
        attrs = text.split(",")
        if attrs[0].startswith("m="):
            raise AuthFailed("upstream server requires an unsupported SCRAM extension")
        if (
            len(attrs) < 3
            or not attrs[0].startswith("r=")
            or not attrs[1].startswith("s=")
            or not attrs[2].startswith("i=")
        ):
            raise _malformed("server-first-message")
        nonce = attrs[0][2:]
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthFailed("upstream server's SCRAM nonce does not extend ours")
        try:
            salt = base64.b64decode(attrs[1][2:], validate=True)
            iterations = int(attrs[2][2:])
        except ValueError:  # binascii.Error is one
            raise _malformed("server-first-message") from None
        if not salt or not 0 < iterations <= MAX_ITERATIONS:
            raise _malformed("server-first-message")
        client_key, server_key = _client_and_server_keys(self._password, salt, iterations)
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(server_key, auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify_server_final(self, server_final: bytes) -> None:
        """Check the server-final-message proves the server holds the password's verifier."""
        text = _decode(server_final, "server-final-message")
        # RFC 5802, 7: server-final-message = (server-error / verifier) ["," extensions]
        verifier = text.split(",")[0]
        if verifier.startswith("e="):
            raise AuthFailed(f"upstream server refused SCRAM: {verifier[2:]}")
        if not verifier.startswith("v="):
            raise _malformed("server-final-message")
        try:
            signature = base64.b64decode(verifier[2:], validate=True)
        except ValueError:
            raise _malformed("server-final-message") from None
        if not self._server_signature or not hmac.compare_digest(signature, self._server_signature):
            raise AuthFailed("upstream server failed SCRAM verification")


class UpstreamAuth:
    """Answers an upstream server's Authentication requests with the node's credentials."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user
        self._password = password
        self._scram: ScramClient | None = None
        self._scram_stage = 0  # 1 initial response sent, 2 final sent, 3 server verified
        self._done = False

    @property
    def done(self) -> bool:
        """True once the upstream server sent AuthenticationOk."""
        return self._done

    def respond(self, code: int, data: bytes) -> bytes | None:
        """Return the framed frontend message answering Authentication `code`, if any."""
        if self._done:
            raise AuthFailed("upstream server sent an authentication request after success")
        if code == AUTH_OK:
            # Like libpq, refuse a server that skips proving it knows the SCRAM secret.
            if self._scram is not None and self._scram_stage != 3:
                raise AuthFailed("upstream server ended SCRAM authentication early")
            self._done = True
            return None
        if code == AUTH_CLEARTEXT:
            return codec.password_message(self._password.encode("utf-8"))
        if code == AUTH_MD5:
            return codec.password_message(self._md5_response(data))
        if code == AUTH_SASL:
            return self._sasl_start(data)
        if code == AUTH_SASL_CONTINUE:
            return self._sasl_continue(data)
        if code == AUTH_SASL_FINAL:
            self._sasl_final(data)
            return None
        method = _UNSUPPORTED_METHODS.get(code, f"method {code}")
        raise AuthFailed(f"upstream server requested unsupported authentication {method}")

    def _md5_response(self, salt: bytes) -> bytes:
        # PostgreSQL docs, 55.2.2 Start-up (AuthenticationMD5Password):
        # concat('md5', md5(concat(md5(concat(password, username)), random-salt))), hex.
        if len(salt) != 4:
            raise AuthFailed("upstream server sent a malformed MD5 request")
        inner = hashlib.md5((self._password + self._user).encode("utf-8")).hexdigest()
        return b"md5" + hashlib.md5(inner.encode("ascii") + salt).hexdigest().encode("ascii")

    def _sasl_start(self, data: bytes) -> bytes:
        if self._scram is not None:
            raise AuthFailed("upstream server restarted SASL authentication")
        try:
            mechanisms = codec.parse_sasl_mechanisms(data)
        except codec.ProtocolError:
            raise AuthFailed("upstream server sent a malformed SASL request") from None
        if SCRAM_SHA_256 not in mechanisms:
            offered = ", ".join(mechanisms) or "none"
            raise AuthFailed(f"upstream server offers no supported SASL mechanism ({offered})")
        self._scram = ScramClient(self._password)
        self._scram_stage = 1
        return codec.sasl_initial_response(SCRAM_SHA_256, self._scram.client_first())

    def _sasl_continue(self, data: bytes) -> bytes:
        if self._scram is None or self._scram_stage != 1:
            raise AuthFailed("unexpected SASL continuation from upstream server")
        client_final = self._scram.client_final(data)
        self._scram_stage = 2
        return codec.sasl_response(client_final)

    def _sasl_final(self, data: bytes) -> None:
        if self._scram is None or self._scram_stage != 2:
            raise AuthFailed("unexpected SASL final message from upstream server")
        self._scram.verify_server_final(data)
        self._scram_stage = 3
