"""The relay's fast path, without sockets: which chunks it takes, and that what it spools and
forwards for them is what the Python path would (the same event bytes, the same order)."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_plane.audit.spool import frame
from data_plane.audit.statements import StatementPayloads
from data_plane.audit.trail import AuditTrail
from data_plane.protocols.postgres import codec
from data_plane.protocols.postgres._fastpath import FastPath
from lockgate.enforcement import StatementDecision
from lockgate.sql.classify import Classification
from protos.lockgate.v1 import node_pb2 as pb

READ = StatementDecision(True, "read", Classification("read"), ("bench-read",), "permit")
WRITE = StatementDecision(True, "write", Classification("write"), ("ops",), "permit")
LATER = time.time() + 3600
SESSION = "01890a5d-ac96-7abc-8def-0123456789ab"


class Transport:
    def __init__(self, trail: AuditTrail | None = None) -> None:
        self.written: list[bytes] = []
        self.trail = trail
        self.spooled_before: list[int] = []  # events in the spool at each write

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.trail is not None:
            self.spooled_before.append(len(self.trail.spool))

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        raise AssertionError("nothing here aborts")


class Session:
    """A FastPath wired as the adapter wires it, with the Python path recording its input."""

    def __init__(self, tmp: Path) -> None:
        self.trail = AuditTrail(tmp / "spool")
        self.audit = self.trail.session(SESSION)
        self.client, self.upstream = Transport(), Transport(self.trail)
        self.slow: list[bytes] = []
        self.prepared: dict[str, str] = {}
        self.payloads = StatementPayloads()
        self.fast = self.fast_path()

    def fast_path(self, bulk: object = None, busy: object = None) -> FastPath:
        """A FastPath on this session's transports, trail and Python path."""
        return FastPath(
            client=self.client,
            upstream=self.upstream,
            audit=self.audit,
            outbox=self.trail.outbox(),
            slow=self.slow.append,
            prepared=self.prepared,
            session_id=SESSION.encode(),
            bulk=bulk,  # type: ignore[arg-type]
            busy=busy,  # type: ignore[arg-type]
        )

    def learn(self, sql: str, decision: StatementDecision, by_shape: bool = False) -> bool:
        tail = self.payloads.tail(decision).encode()
        return bool(self.fast.learn(sql, tail, by_shape, LATER))

    def events(self) -> list[pb.AuditEvent]:
        self.trail.write_pending()
        return self.trail.spool.peek(1000)

    def records(self) -> bytes:
        """The spool's bytes, as written."""
        self.trail.write_pending()
        return b"".join(p.read_bytes() for p in sorted((self.trail.spool._dir).glob("*.seg")))


@pytest.fixture
def s(tmp_path: Path) -> Session:
    return Session(tmp_path)


def message(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def execution(name: str, describe: bool = True) -> bytes:
    bind = message(b"B", b"\x00" + name.encode() + b"\x00" + b"\x00\x00\x00\x00\x00\x00")
    parts = [bind]
    if describe:
        parts.append(message(b"D", b"P\x00"))
    parts += [message(b"E", b"\x00\x00\x00\x00\x00"), message(b"S", b"")]
    return b"".join(parts)


def test_a_statement_not_learned_goes_to_the_python_path(s: Session) -> None:
    data = codec.query("SELECT 1")
    s.fast.client_data(data)
    assert s.slow == [data] and s.upstream.written == [] and s.events() == []


def test_a_learned_text_is_spooled_then_forwarded_as_the_python_path_would(s: Session) -> None:
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 7;"
    assert s.learn(sql, READ)
    data = codec.query(sql)
    s.fast.client_data(data)
    assert s.slow == []
    [event] = s.events()
    assert s.upstream.written == [data]
    assert s.upstream.spooled_before == [1]  # not before its event is in the spool
    assert (event.session_id, event.seq, event.kind) == (SESSION, 1, "statement")
    assert event.payload_json == s.payloads.encode(sql, "simple", "", READ)
    assert abs(event.time_ms - time.time() * 1000) < 5000
    assert s.audit.seq == 1 and s.fast.statements == 1 and s.fast.bytes_in == len(data)


def test_the_spooled_record_is_the_one_the_spool_frames(s: Session) -> None:
    sql = 'SELECT "a""b", \'it\'\'s\'\t\n\r\f FROM t WHERE x = "q"'
    s.learn(sql, WRITE)
    s.audit.seq = 41  # events the Python path recorded before
    s.fast.client_data(codec.query(sql))
    record = s.records()
    size, crc = struct.unpack("<II", record[:8])
    assert size == len(record) - 8 and crc == zlib.crc32(record[8:])
    event = pb.AuditEvent.FromString(record[8:])
    assert event.seq == 42 and s.audit.seq == 42
    expected = pb.AuditEvent(
        session_id=SESSION,
        seq=42,
        time_ms=event.time_ms,
        kind="statement",
        payload_json=s.payloads.encode(sql, "simple", "", WRITE),
    )
    assert record == frame(expected)


def test_a_read_learned_by_shape_takes_every_literal(s: Session) -> None:
    s.learn("SELECT * FROM t WHERE id = 1 AND name = 'a'", READ, by_shape=True)
    for sql in (
        "SELECT * FROM t WHERE id = 2 AND name = 'b'",
        "SELECT * FROM t WHERE id = 30 AND name = ''",
    ):
        s.fast.client_data(codec.query(sql))
    assert s.slow == []
    assert [e.payload_json for e in s.events()] == [
        s.payloads.encode("SELECT * FROM t WHERE id = 2 AND name = 'b'", "simple", "", READ),
        s.payloads.encode("SELECT * FROM t WHERE id = 30 AND name = ''", "simple", "", READ),
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE id = 2 -- AND name = 'b'",  # a comment: no shape key
        "SELECT * FROM u WHERE id = 2 AND name = 'b'",  # another table
        "SELECT * FROM t WHERE id = $1 AND name = 'b'",
        "SELECT * FROM t WHERE id = 2 AND name = 'é'",
    ],
)
def test_texts_of_another_shape_go_to_the_python_path(s: Session, sql: str) -> None:
    s.learn("SELECT * FROM t WHERE id = 1 AND name = 'a'", READ, by_shape=True)
    s.fast.client_data(codec.query(sql))
    assert len(s.slow) == 1 and s.events() == []


def test_a_text_learned_as_text_takes_only_that_text(s: Session) -> None:
    s.learn("UPDATE t SET a = 1 WHERE id = 1", WRITE)
    s.fast.client_data(codec.query("UPDATE t SET a = 1 WHERE id = 2"))
    s.fast.client_data(codec.query("UPDATE t SET a = 1 WHERE id = 1"))
    assert len(s.slow) == 1 and len(s.events()) == 1


def test_text_it_cannot_audit_as_the_python_path_does_is_not_learned(s: Session) -> None:
    assert not s.learn("SELECT 'naïve'", READ)  # JSON escapes of code points: Python's job
    assert not s.learn("SELECT " + "1, " * 10000 + "1", READ)  # long: Python may cut it
    assert s.fast.cached == 0
    assert s.learn("SELECT $$x$$ -- 1", READ, by_shape=True)  # no shape key: the text only
    assert s.fast.cached == 1
    s.fast.client_data(codec.query("SELECT $$x$$ -- 2"))
    s.fast.client_data(codec.query("SELECT $$x$$ -- 1"))
    assert len(s.slow) == 1 and len(s.events()) == 1


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(st.characters(max_codepoint=0x7F, exclude_characters="\x00"), max_size=60),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7F), max_size=8),
)
def test_any_ascii_text_is_audited_byte_for_byte_as_the_python_path_does(
    tmp_path_factory: pytest.TempPathFactory, sql: str, name: str
) -> None:
    s = Session(tmp_path_factory.mktemp("spool"))
    s.prepared[name] = sql
    assert s.learn(sql, WRITE)
    s.fast.client_data(codec.query(sql))
    if sql:
        s.fast.client_data(execution(name))
    assert s.slow == []
    expected = [s.payloads.encode(sql, "simple", "", WRITE)]
    if sql:
        expected.append(s.payloads.encode(sql, "execute", name, WRITE))
    assert [e.payload_json for e in s.events()] == expected
    s.trail.close()


def test_an_execution_of_a_prepared_statement(s: Session) -> None:
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    s.prepared["P0_1"] = sql
    s.learn(sql, READ)
    for describe in (True, False):
        s.fast.client_data(execution("P0_1", describe))
    assert s.slow == []
    events = s.events()
    assert [e.payload_json for e in events] == [s.payloads.encode(sql, "execute", "P0_1", READ)] * 2
    assert s.upstream.written == [execution("P0_1", True), execution("P0_1", False)]


@pytest.mark.parametrize(
    "data",
    [
        execution("unknown"),  # never prepared: the Python path decides `EXECUTE "unknown"`
        execution("empty"),  # prepared as the empty query
        execution("P0_1")[:-5],  # no Sync: a group not complete
        execution("P0_1") + codec.query("SELECT 1"),  # two groups
        message(b"P", b"P0_1\x00SELECT 1\x00\x00\x00") + execution("P0_1"),
        message(b"B", b"\x00P0_1") + message(b"S", b""),  # a malformed Bind
    ],
)
def test_other_extended_groups_go_to_the_python_path(s: Session, data: bytes) -> None:
    s.prepared["P0_1"] = "SELECT 1"
    s.prepared["empty"] = ""
    s.learn("SELECT 1", READ)
    s.learn("", READ)
    s.fast.client_data(data)
    assert s.slow == [data] and s.events() == []


@pytest.mark.parametrize(
    "data",
    [
        codec.query("SELECT 1")[:-1],  # half a message
        codec.query("SELECT 1") + codec.query("SELECT 1"),  # two
        codec.query("SELECT 1")[:-1] + b"\x00\x00",  # a length that does not match
        b"Q\x00\x00\x00\x0eSELECT\x001\x00",  # a NUL inside
        message(b"X", b""),  # Terminate
    ],
)
def test_anything_but_one_whole_query_goes_to_the_python_path(s: Session, data: bytes) -> None:
    s.learn("SELECT 1", READ)
    s.fast.client_data(data)
    assert s.slow == [data] and s.events() == []


def test_nothing_takes_the_fast_path_while_the_python_path_is_busy(s: Session) -> None:
    s.learn("SELECT 1", READ)
    s.fast.enabled = False  # say, a statement held for approval
    s.fast.client_data(codec.query("SELECT 1"))
    assert len(s.slow) == 1
    s.fast.enabled = True
    s.fast.client_data(codec.query("SELECT 1"))
    assert len(s.slow) == 1 and len(s.events()) == 1


def test_forget_and_expiry_send_statements_back_to_the_enforcer(s: Session) -> None:
    s.learn("SELECT 1", READ)
    s.fast.forget()  # a new bundle
    s.fast.client_data(codec.query("SELECT 1"))
    assert len(s.slow) == 1
    s.fast.learn("SELECT 1", s.payloads.tail(READ).encode(), False, time.time() - 1)
    s.fast.client_data(codec.query("SELECT 1"))  # the hour (or a grant) ran out
    assert len(s.slow) == 2 and s.fast.cached == 0 and s.events() == []


def test_learning_under_a_new_expiry_drops_what_was_learned_before(s: Session) -> None:
    s.learn("SELECT 1", READ)
    s.fast.learn("SELECT 2", s.payloads.tail(READ).encode(), False, LATER + 60)
    s.fast.client_data(codec.query("SELECT 1"))
    assert len(s.slow) == 1 and s.fast.cached == 1  # "SELECT 2", by its text


def test_target_bytes_go_to_the_client_as_they_are(s: Session) -> None:
    s.fast.upstream_data(b"Z\x00\x00\x00\x05I")
    assert s.client.written == [b"Z\x00\x00\x00\x05I"] and s.fast.bytes_out == 6


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=80), st.sampled_from([b"", b"Q", b"B", b"D", b"E", b"S"]))
def test_any_chunk_is_forwarded_unchanged_or_left_to_the_python_path(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, head: bytes
) -> None:
    s = Session(tmp_path_factory.mktemp("spool"))
    s.prepared[""] = "SELECT 1"
    s.learn("SELECT 1", READ)
    chunk = head + data
    s.fast.client_data(chunk)
    events = s.events()
    assert (s.slow, s.upstream.written) in (([chunk], []), ([], [chunk]))
    assert len(events) == len(s.upstream.written)
    s.trail.close()


def test_an_uninitialized_fast_path_raises_instead_of_crashing() -> None:
    fast = FastPath.__new__(FastPath)
    with pytest.raises(RuntimeError):
        fast.client_data(b"Q")
    with pytest.raises(RuntimeError):
        fast.learn("SELECT 1", b"", False, LATER)


class Reads:
    """Records what the fast path tells a `data_plane.bulk.BulkReads`."""

    after = 100

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.calls: list[object] = []

    def read(self, n: int) -> bool:
        self.calls.append(n)
        return self.keep

    def reset(self) -> None:
        self.calls.append("reset")


def test_reads_past_the_bulk_threshold_are_reported_and_client_bytes_reset_it(
    s: Session,
) -> None:
    reads = Reads()
    fast = s.fast_path(reads)
    for _ in range(4):
        fast.upstream_data(b"x" * 30)  # 30, 60, 90, 120 bytes since the client sent
    assert reads.calls == [30]
    fast.upstream_data(b"y" * 7)
    assert reads.calls == [30, 7]
    fast.client_data(message(b"Q", b"SELECT 1\x00"))
    assert reads.calls == [30, 7, "reset"] and s.slow  # the bytes went on as before
    fast.upstream_data(b"z" * 99)  # counted from zero again
    fast.client_data(message(b"Q", b"SELECT 2\x00"))  # under the threshold: nothing to reset
    assert reads.calls == [30, 7, "reset"]
    assert b"".join(s.client.written) == b"x" * 120 + b"y" * 7 + b"z" * 99


def test_a_reply_that_slowed_down_is_counted_again_from_zero(s: Session) -> None:
    reads = Reads(keep=False)
    fast = s.fast_path(reads)
    fast.upstream_data(b"x" * 150)
    fast.upstream_data(b"x" * 60)  # 60 since the count restarted
    fast.upstream_data(b"x" * 40)
    assert reads.calls == [150, 40]


def test_without_bulk_reads_nothing_is_counted(s: Session) -> None:
    s.fast.upstream_data(b"x" * 10_000_000)
    s.fast.client_data(message(b"Q", b"SELECT 1\x00"))
    assert len(s.client.written[0]) == 10_000_000 and s.slow


def test_a_negative_bulk_threshold_is_refused(s: Session) -> None:
    reads = Reads()
    reads.after = -1
    with pytest.raises(ValueError):
        s.fast_path(reads)


class Arms:
    """Counts what the fast path tells the node's `data_plane.busy_poll.BusyPoll`."""

    def __init__(self, fail: bool = False) -> None:
        self.count = 0
        self.fail = fail

    def arm(self) -> None:
        self.count += 1
        if self.fail:
            raise OSError("the loop is closed")


def test_every_chunk_either_way_arms_the_busy_poll(s: Session) -> None:
    arms = Arms()
    fast = s.fast_path(busy=arms)
    s.fast = fast
    assert s.learn("SELECT 1", READ)
    fast.client_data(message(b"Q", b"SELECT 1\x00"))  # taken by the fast path
    assert arms.count == 1 and not s.slow
    fast.client_data(message(b"Q", b"SELECT 2\x00"))  # handed to the Python path
    assert arms.count == 2 and s.slow
    fast.upstream_data(b"x" * 10)
    assert arms.count == 3 and s.client.written == [b"x" * 10]


def test_a_busy_poll_that_fails_fails_the_call_before_anything_moves(s: Session) -> None:
    fast = s.fast_path(busy=Arms(fail=True))
    with pytest.raises(OSError):
        fast.upstream_data(b"x" * 10)
    with pytest.raises(OSError):
        fast.client_data(message(b"Q", b"SELECT 1\x00"))
    assert s.client.written == [] and s.slow == []


def test_a_busy_poll_without_arm_is_refused(s: Session) -> None:
    with pytest.raises(AttributeError):
        s.fast_path(busy=object())
