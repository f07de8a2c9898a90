"""The parts of the worker supervisor that need no process: cancel keys that name their worker,
the merged health and metrics, a worker's environment and where its things live."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from data_plane import workers
from lockgate.settings import Settings


@given(st.integers(1, 64), st.data())
def test_a_cancel_pid_names_its_worker_and_fits_a_backend_key(count: int, data: st.DataObject):
    worker = data.draw(st.integers(0, count - 1))
    pid = workers.cancel_pid(worker, count)
    assert 0 <= pid < 1 << 31  # BackendKeyData's process id is an Int32
    assert workers.owner(pid, count) == worker


def test_cancel_pids_of_one_worker_vary():
    assert len({workers.cancel_pid(1, 2) for _ in range(50)}) > 40


def exposition(sessions: float, terminated: int) -> str:
    registry = CollectorRegistry()
    Gauge("lockgate_node_sessions", "live sessions", registry=registry).set(sessions)
    Counter("lockgate_node_sessions_terminated", "ended", registry=registry).inc(terminated)
    return generate_latest(registry).decode()


def test_metrics_of_all_workers_are_one_family_each_labelled_by_worker():
    registry = CollectorRegistry()
    families = list(workers.merge_metrics([(0, exposition(3, 1)), (1, exposition(5, 0))]))
    registry.register(_Collector(families))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE lockgate_node_sessions gauge") == 1
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    sessions = {s.labels["worker"]: s.value for s in parsed["lockgate_node_sessions"].samples}
    assert sessions == {"0": 3.0, "1": 5.0}
    ended = [
        (s.labels["worker"], s.value)
        for s in parsed["lockgate_node_sessions_terminated"].samples
        if s.name.endswith("_total")
    ]
    assert sorted(ended) == [("0", 1.0), ("1", 0.0)]


def test_a_worker_missing_from_the_scrape_adds_nothing():
    families = list(workers.merge_metrics([(1, exposition(2, 0))]))
    gauge = next(f for f in families if f.name == "lockgate_node_sessions")
    assert [(s.labels, s.value) for s in gauge.samples] == [({"worker": "1"}, 2.0)]


class _Collector:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def healthy(worker: int, revision: int, sessions: int) -> dict[str, object]:
    return {
        "status": "ok",
        "node": "edge-1",
        "revision": revision,
        "control_plane": "connected",
        "sessions": sessions,
        "audit_pending": 1,
        "worker": worker,
        "pid": 100 + worker,
    }


def test_health_is_ok_at_the_revision_every_worker_enforces():
    body, status = workers.merge_health([healthy(0, 7, 2), healthy(1, 6, 3)])
    assert status == 200
    assert body["status"] == "ok"
    assert body["revision"] == 6
    assert body["sessions"] == 5
    assert body["audit_pending"] == 2
    assert body["node"] == "edge-1"
    assert [w["worker"] for w in body["workers"]] == [0, 1]  # type: ignore[index,union-attr]


def test_one_unreachable_worker_makes_the_node_unhealthy():
    down = {"status": "unreachable", "worker": 1, "pid": None, "restarts": 2}
    body, status = workers.merge_health([healthy(0, 7, 2), down])
    assert status == 503
    assert body["status"] == "degraded"
    assert body["revision"] == 0


def test_a_worker_reads_the_supervisors_settings_flags_included(tmp_path: Path):
    settings = Settings(
        home=tmp_path,
        pg_port=25432,
        node_token="lgn_secret",
        node_labels={"region": "eu-west"},
        node_workers=3,
        pg_fast_path=False,
        tls_cert=None,
    )
    env = workers.worker_env(settings, 2)
    assert env["LOCKGATE_NODE_WORKER"] == "2"
    assert env["LOCKGATE_NODE_LABELS"] == json.dumps({"region": "eu-west"})
    saved = {k: os.environ.get(k) for k in env if k.startswith("LOCKGATE_")}
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("LOCKGATE_")})
        again = Settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert again.model_dump() == {**settings.model_dump(), "node_worker": 2}


def test_a_single_node_and_worker_0_share_the_nodes_spool(tmp_path: Path):
    assert workers.spool_dir(tmp_path, None) == tmp_path / "spool"
    assert workers.spool_dir(tmp_path, 0) == tmp_path / "spool"
    assert workers.spool_dir(tmp_path, 2) == tmp_path / "workers" / "2" / "spool"


def test_spools_of_workers_beyond_the_count_are_orphans(tmp_path: Path):
    for i in (1, 2, 5):
        workers.spool_dir(tmp_path, i).mkdir(parents=True)
    (tmp_path / "workers" / "7").mkdir()  # no spool: nothing to upload
    assert workers.orphan_spools(tmp_path, 2) == [
        workers.spool_dir(tmp_path, 2),
        workers.spool_dir(tmp_path, 5),
    ]
    assert workers.orphan_spools(tmp_path / "none", 1) == []


def test_a_unix_listener_replaces_a_stale_socket_and_is_private(tmp_path: Path):
    path = tmp_path / "w" / "http.sock"
    first = workers.unix_listener(path)
    first.close()  # the file stays, as after a crash
    again = workers.unix_listener(path)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        client = socket.socket(socket.AF_UNIX)
        client.connect(os.fspath(path))
        client.close()
    finally:
        again.close()


def test_a_socket_path_too_long_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(workers.PortTaken, match="longer than"):
        workers.unix_listener(tmp_path / ("d" * 120) / "http.sock")


def test_a_new_connection_goes_to_the_least_loaded_running_worker():
    assert workers.least_loaded([3, 1, 2], start=0) == [1, 2, 0]
    assert workers.least_loaded([2, None, 2], start=0) == [0, 2]  # worker 1 is not running
    assert workers.least_loaded([None, None], start=1) == []


def test_ties_are_broken_in_turn():
    firsts = [workers.least_loaded([0, 0, 0], start=turn)[0] for turn in range(6)]
    assert firsts == [0, 1, 2, 0, 1, 2]


def test_a_worker_finds_its_handoff_socket_in_its_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(workers.HANDOFF_ENV, raising=False)
    assert workers.handoff_socket() is None
    ours, theirs = socket.socketpair()
    try:
        monkeypatch.setenv(workers.HANDOFF_ENV, str(os.dup(theirs.fileno())))
        sock = workers.handoff_socket()
        assert sock is not None and not sock.getblocking()
        socket.send_fds(ours, [b"c"], [ours.fileno()])
        data, fds, _, _ = socket.recv_fds(sock, 16, 4)
        assert data == b"c" and len(fds) == 1
        os.close(fds[0])
        sock.close()
    finally:
        ours.close()
        theirs.close()
