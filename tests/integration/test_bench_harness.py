"""`make bench` keeps working: each scenario runs once at a tiny size (no figures asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_every_benchmark_scenario_runs_at_a_tiny_size(tmp_path: Path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--out",
            str(out),
            "--doc",
            str(tmp_path / "b.md"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["latency"]["node_median_us"]["median"] > 0
    assert {"simple/1", "simple/8", "prepared/1", "prepared/8"} <= set(results["pgbench"])
