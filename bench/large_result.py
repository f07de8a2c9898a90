"""Large result: one COPY of N rows of about 100 bytes each, direct, through PgBouncer and
through the node, unmasked and (node only) with a masking rule on the `email` column.

Measured with psycopg `COPY (SELECT id, email, note FROM big_result) TO STDOUT` in text
format: the clock runs from sending the COPY to its last row, on an open connection; the bytes
are the COPY data the client received (row text, without the protocol's message framing); MB is
10^6 bytes. The masked leg uses a second connection name on the same database with the rule
`*.email`, so the unmasked node leg has no masking rule; its output is checked to be masked,
and the unmasked legs' output to be exactly as many bytes as the direct one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from bench.stack import Stack

MASKED_CONNECTION = "appdb-masked"
RAW_EMAIL = re.compile(rb"user\d+@example\.com")
QUERY = "COPY (SELECT id, email, note FROM big_result) TO STDOUT"


def create_table(stack: Stack, rows: int) -> None:
    """`big_result`: id, an email and a 68-character note, about 100 bytes a row as COPY text."""
    stack.target.psql_admin(
        "CREATE TABLE big_result (id int PRIMARY KEY, email text NOT NULL, note text NOT NULL);"
        "INSERT INTO big_result SELECT g, 'user' || g || '@example.com', "
        "left(md5(g::text) || md5((-g)::text), 68) "
        f"FROM generate_series(1, {rows}) g;"
        "ALTER TABLE big_result OWNER TO app;",
        database="appdb",
    )
    stack.target.psql_admin("VACUUM ANALYZE big_result", database="appdb")


def add_masked_connection(stack: Stack) -> None:
    """A second connection to the same database whose `email` columns are masked."""
    stack.add_connection(MASKED_CONNECTION)
    stack.control_plane.ok(
        "POST",
        "/masking-rules",
        json={"name": "bench-email", "connections": [MASKED_CONNECTION], "columns": ["*.email"]},
    )
    stack.wait_for_bundle()


def copy_out(dsn: str) -> dict[str, Any]:
    """Seconds, bytes and rows of one COPY, with its first row to check what arrived."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        received = rows = 0
        first = b""
        start = time.perf_counter()
        with cur.copy(QUERY) as copy:
            for data in copy:
                if not first:
                    first = bytes(data)
                received += len(data)
                rows += 1
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "bytes": received, "rows": rows, "first": first}


def run(dsns: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """One COPY per leg: MB/s, rows/s and bytes; raises when a leg's output is not as expected."""
    results = {leg: copy_out(dsn) for leg, dsn in dsns.items()}
    direct = results["direct"]
    for leg, r in results.items():
        if r["rows"] != direct["rows"]:
            raise RuntimeError(f"{leg}: {r['rows']} rows, direct gave {direct['rows']}")
        email = r["first"].split(b"\t")[1]
        if leg.endswith("masked"):
            if RAW_EMAIL.fullmatch(email):
                raise RuntimeError(f"{leg}: email column arrived unmasked: {r['first']!r}")
        elif r["bytes"] != direct["bytes"]:
            raise RuntimeError(f"{leg}: {r['bytes']} bytes, direct gave {direct['bytes']}")
    return {
        leg: {
            "mb_per_s": r["bytes"] / 1e6 / r["seconds"],
            "rows_per_s": r["rows"] / r["seconds"],
            "bytes": r["bytes"],
        }
        for leg, r in results.items()
    }
