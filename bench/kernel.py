"""Enforcement kernel throughput, no sockets: statements/s through classification and the full
decision (cold, and with the per-session cache by statement text), and cells/s through masking.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lockgate.bundle import BundleView
from lockgate.enforcement import Enforcer
from lockgate.masking import masks
from lockgate.masking.detectors import ALL, Scanner
from lockgate.sql.classify import classify
from protos.lockgate.v1 import node_pb2 as pb

STATEMENTS = [
    "SELECT id, email FROM users WHERE id = {}",
    "UPDATE orders SET total = total + {} WHERE id = 7",
    "SELECT u.name, count(o.id) FROM users u JOIN orders o ON o.user_id = u.id "
    "WHERE u.id > {} GROUP BY u.name ORDER BY 2 DESC LIMIT 10",
]


def _rate(count: int, fn: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def _bundle() -> BundleView:
    return BundleView(
        pb.Bundle(
            revision=1,
            identities=[pb.Identity(name="agent", groups=["agents"], kind="service")],
            connections=[
                pb.Connection(name="db", type="postgres", guardrails=["production-safety"])
            ],
            policies=[
                pb.Policy(name="p", cedar='permit(principal in Group::"agents", action, resource);')
            ],
            masking_rules=[
                pb.MaskingRule(
                    name="pii",
                    connections=["db"],
                    columns=["*.email"],
                    detectors=["credit_card", "us_ssn"],
                )
            ],
        )
    )


def run(count: int) -> dict[str, float]:
    view = _bundle()
    results: dict[str, float] = {}
    for n, template in enumerate(STATEMENTS):
        label = ("select", "update", "join")[n]
        results[f"classify_cold_{label}_per_s"] = _rate(
            count, lambda i, t=template: classify(t.format(i))
        )
        enforcer = Enforcer(view, "agent", "db")
        results[f"decide_cold_{label}_per_s"] = _rate(
            count, lambda i, t=template, e=enforcer: e._decide(t.format(i))
        )
        enforcer.decide(template.format(1))
        results[f"decide_cached_{label}_per_s"] = _rate(
            count * 10, lambda i, t=template.format(1), e=enforcer: e.decide(t)
        )
    scanner = Scanner(ALL)
    clean = [f"order {i} shipped to warehouse {i % 7}".encode() for i in range(1000)]
    dirty = [f"card 4242 4242 4242 4242 for jane{i}@example.com".encode() for i in range(1000)]
    results["detect_clean_cells_per_s"] = _rate(
        count * 5,
        lambda i: masks.mask_cell(
            clean[i % 1000], oid=25, binary=False, how="detect", scanner=scanner
        ),
    )
    results["detect_dirty_cells_per_s"] = _rate(
        count,
        lambda i: masks.mask_cell(
            dirty[i % 1000], oid=25, binary=False, how="detect", scanner=scanner
        ),
    )
    results["mask_column_cells_per_s"] = _rate(
        count * 5,
        lambda i: masks.mask_cell(
            b"jane.doe@example.com", oid=25, binary=False, how="column", scanner=scanner
        ),
    )
    return results
