"""Large result: N rows of about 100 bytes each, direct, through PgBouncer and through the
node, unmasked and (node only) with a masking rule on the `email` column, in two forms:

* COPY: psycopg `COPY (SELECT id, email, note FROM big_result) TO STDOUT` in text format; the
  clock runs from sending the COPY to its last row, on an open connection; the bytes are the
  COPY data the client received (row text, without the protocol's message framing).
* SELECT: `psql -At` running `SELECT id, email, note FROM big_result` (DataRow messages, one
  per row); the time is psql's own `\timing` of the statement (sending it to its last row,
  not the connection or the printing); the bytes are the rows as psql prints them, tab
  separated, which for this table is the COPY text.

MB is 10^6 bytes. The masked leg uses a second connection name on the same database with the
rule `*.email`, so the unmasked node leg has no masking rule; the detectors leg a third, with
the README's example rule (`*.email` and the `credit_card` and `us_ssn` detectors, which scan
every other text cell). Their output is checked to be masked, and the unmasked legs' output to
be exactly as many bytes as the direct one.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from bench.stack import Stack

MASKED_CONNECTION = "appdb-masked"
DETECT_CONNECTION = "appdb-detect"
MASKED_LEGS = ("node_masked", "node_detect")
RAW_EMAIL = re.compile(rb"user\d+@example\.com")
SELECT = "SELECT id, email, note FROM big_result"
QUERY = f"COPY ({SELECT}) TO STDOUT"
FORMS = ("copy", "select")
_TIMING = re.compile(rb"\nTime: ([\d.]+) ms[^\n]*\n\Z")


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


def add_detect_connection(stack: Stack) -> None:
    """A third connection whose `email` columns are masked and other text cells scanned."""
    stack.add_connection(DETECT_CONNECTION)
    stack.control_plane.ok(
        "POST",
        "/masking-rules",
        json={
            "name": "bench-detect",
            "connections": [DETECT_CONNECTION],
            "columns": ["*.email"],
            "detectors": ["credit_card", "us_ssn"],
        },
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


def select_out(dsn: str) -> dict[str, Any]:
    """Seconds, bytes and rows of one SELECT through psql, with its first row."""
    out = subprocess.run(
        ["psql", dsn, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"],
        input=f"\\timing on\n{SELECT};\n".encode(),
        capture_output=True,
        check=True,
        timeout=600,
    ).stdout
    timing = _TIMING.search(out)
    if timing is None:
        raise RuntimeError(f"no timing in psql's output: {out[-200:]!r}")
    rows = out[: timing.start() + 1]
    return {
        "seconds": float(timing.group(1)) / 1000,
        "bytes": len(rows),
        "rows": rows.count(b"\n"),
        "first": rows[: rows.find(b"\n")],
    }


def run(dsns: Mapping[str, str]) -> dict[str, dict[str, dict[str, float]]]:
    """One COPY and one SELECT per leg: {form: {leg: MB/s, rows/s and bytes}}; raises when a
    leg's output is not as expected."""
    return {
        "copy": _check({leg: copy_out(dsn) for leg, dsn in dsns.items()}),
        "select": _check({leg: select_out(dsn) for leg, dsn in dsns.items()}),
    }


def _check(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    direct = results["direct"]
    for leg, r in results.items():
        if r["rows"] != direct["rows"]:
            raise RuntimeError(f"{leg}: {r['rows']} rows, direct gave {direct['rows']}")
        email = r["first"].split(b"\t")[1]
        if leg in MASKED_LEGS:
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
