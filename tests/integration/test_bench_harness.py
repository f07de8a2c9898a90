"""`make bench` keeps working: each scenario runs once at a tiny size (no figures asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.stack import WORKERS


def test_every_benchmark_scenario_runs_at_a_tiny_size(tmp_path: Path):
    out = tmp_path / "results.json"
    doc = tmp_path / "b.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--doc", str(doc)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())

    assert results["quick"] is True
    assert {"cpus", "postgres", "pgbouncer", "openssh"} <= set(results["machine"])
    assert results["kernel"]["decide_cached_select_per_s"]["median"] > 0

    latency = results["latency"]
    for leg in ("direct", "pgbouncer", "node", "node_workers"):
        assert latency[f"{leg}_median_us"]["median"] > 0
        assert f"{leg}_p99_us" in latency
    assert {
        "node_added_median_us",
        "node_workers_added_median_us",
        "pgbouncer_added_median_us",
    } <= set(latency)

    pgbench = results["pgbench"]
    assert {"simple/1", "simple/8", "prepared/1", "prepared/8"} <= set(pgbench)
    for key in ("simple/8", "prepared/8"):
        for leg in ("direct", "pgbouncer", "node", "node_workers"):
            assert pgbench[key][leg]["tps"]["median"] > 0
            assert "latency_ms" in pgbench[key][leg]
        assert pgbench[key]["node_over_pgbouncer"] > 0
        assert pgbench[key]["node_workers_over_pgbouncer"] > 0
        # The workers node's CPU is its supervisor's and its workers' together.
        assert pgbench[key]["node_workers"]["proxy_cpu_us_per_tx"]["median"] > 0

    connect = results["connect"]
    for clients in ("1", "8"):
        for leg in ("direct", "pgbouncer", "node"):
            assert connect[clients][leg]["tps"]["median"] > 0
            assert connect[clients][leg]["connect_ms"]["median"] > 0
        assert connect[clients]["node"]["control_plane_cpu_us_per_tx"]["median"] > 0
        assert connect[clients]["node_over_pgbouncer"] > 0

    for form in ("copy", "select"):
        large = results["large_result"][form]
        for leg in ("direct", "pgbouncer", "node", "node_masked", "node_detect"):
            assert large[leg]["mb_per_s"]["median"] > 0
            assert large[leg]["rows_per_s"]["median"] > 0
        assert large["node"]["bytes"]["median"] == large["direct"]["bytes"]["median"]
        # Masked e-mail addresses are shorter than the originals.
        assert large["node_masked"]["bytes"]["median"] < large["direct"]["bytes"]["median"]
        assert large["node_detect"]["bytes"]["median"] < large["direct"]["bytes"]["median"]
        assert {"node_over_direct", "node_masked_over_direct", "node_detect_over_direct"} <= set(
            large
        )

    sessions = results["sessions"]
    for leg in ("direct", "node"):
        assert sessions[leg]["statements"]["median"] > 0
        assert sessions[leg]["errors"]["max"] == 0
        assert "p99_ms" in sessions[leg]
    assert {"rss_mib", "hwm_mib", "cpu_percent"} <= set(sessions["node"])
    assert sessions["node"]["rss_mib"]["median"] > 0

    propagation = results["propagation"]
    for key in ("forbid_p50_ms", "forbid_p99_ms", "revoke_p50_ms", "revoke_p99_ms"):
        assert propagation[key]["median"] > 0

    compiled = results["compile"]
    for key in ("compile_s", "bundle_view_s", "compile_cold_s", "bundle_view_cold_s"):
        assert compiled[key]["median"] > 0

    scp = results["scp"]
    assert scp["direct_mb_per_s"]["median"] > 0
    assert scp["jump_mb_per_s"]["median"] > 0
    assert scp["node"] == {"status": "node has no SSH listener yet"}

    assert len(results["targets"]) == 15
    assert all(t["verdict"] in ("met", "not met") for t in results["targets"])
    report = doc.read_text()
    assert f"**node, {WORKERS} workers**" in report
    assert "Quick run" in report
    assert "node has no SSH listener yet" in report
    assert "A connection per statement (pgbench -S -C)" in report


def test_only_reruns_the_named_scenarios_and_keeps_the_others(tmp_path: Path):
    out = tmp_path / "results.json"
    kept = {"classify_cold_select_per_s": {"median": 1.0, "min": 1.0, "max": 1.0, "runs": 1}}
    out.write_text(json.dumps({"quick": True, "scenarios": {}, "kernel": kept}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "compile",
            "--out",
            str(out),
            "--doc",
            str(tmp_path / "b.md"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["kernel"] == kept
    assert results["compile"]["compile_s"]["median"] > 0
    assert "sessions" not in results
    verdicts = {t["target"]: t["verdict"] for t in results["targets"]}
    assert verdicts["sessions: p99 < 10 ms"] == "not run"
