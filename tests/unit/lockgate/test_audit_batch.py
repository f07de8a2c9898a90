"""AuditBatch bytes built from serialized events are the bytes protobuf makes of the batch."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.audit_batch import batch_of
from protos.lockgate.v1 import node_pb2 as pb


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=20000), max_size=4))
def test_batch_of_serialized_events_is_the_batch_protobuf_makes(payloads: list[bytes]) -> None:
    events = [pb.AuditEvent(session_id="s", seq=n, payload_json=p) for n, p in enumerate(payloads)]
    serialized = [e.SerializeToString() for e in events]
    assert batch_of(serialized) == pb.AuditBatch(events=events).SerializeToString()
