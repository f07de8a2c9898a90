"""Policy propagation: how long from a REST change until the node enforces it, seen by a real
client, for a new forbid policy and for a revoked token.

Forbid: a session of a permitted identity runs `SELECT 1` (simple protocol, asyncpg) in a loop
with 1 ms pauses; the clock starts just before `POST /api/v1/policies` is sent with
`forbid(principal == Identity::"...", action == Action::"read", resource);` and stops at the
first SQLSTATE 42501. Revocation: a fresh token that the node already accepts is revoked with
`DELETE /api/v1/tokens/{id}` and the client connects in a loop until SQLSTATE 28P01. Between
changes, untimed, the policy is deleted again and access comes back.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.stack import CONNECTION, Stack
from lockgate.runtime import run as run_loop

POLL_SECONDS = 0.001
GIVE_UP_SECONDS = 30.0
DENIED = "42501"
AUTH_FAILED = "28P01"


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until `check()` is true, polling every POLL_SECONDS."""
    began = time.perf_counter()
    while not await check():
        if time.perf_counter() - began > GIVE_UP_SECONDS:
            raise TimeoutError(f"no {what} after {GIVE_UP_SECONDS} s")
        await asyncio.sleep(POLL_SECONDS)
    return time.perf_counter() - began


async def _forbid(stack: Stack, identity: str, token: str, changes: int) -> list[float]:
    conn = await asyncpg.connect(stack.node.dsn(identity, token, CONNECTION, "disable"))
    cp = stack.control_plane
    cedar = f'forbid(principal == Identity::"{identity}", action == Action::"read", resource);'

    async def denied() -> bool:
        try:
            await conn.execute("SELECT 1")
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != DENIED:
                raise
            return True
        return False

    async def allowed() -> bool:
        return not await denied()

    seconds = []
    try:
        for n in range(changes):
            name = f"bench-forbid-{n}"
            began = time.perf_counter()
            request = asyncio.create_task(
                asyncio.to_thread(cp.ok, "POST", "/policies", json={"name": name, "cedar": cedar})
            )
            await _until(denied, "denial")
            seconds.append(time.perf_counter() - began)
            await request
            await asyncio.to_thread(cp.ok, "DELETE", f"/policies/{name}")
            await _until(allowed, "access after the forbid policy was deleted")
    finally:
        await conn.close()
    return seconds


async def _login_refused(dsn: str) -> bool:
    """Whether the node refuses this login with SQLSTATE 28P01 (any other error is raised)."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.PostgresError as exc:
        if exc.sqlstate != AUTH_FAILED:
            raise
        return True
    await conn.close()
    return False


async def _revoke(stack: Stack, identity: str, changes: int) -> list[float]:
    cp = stack.control_plane
    seconds = []
    for _ in range(changes):
        created = await asyncio.to_thread(cp.ok, "POST", "/tokens", json={"identity": identity})
        dsn = stack.node.dsn(identity, created["token"], CONNECTION, "disable")

        async def accepted(dsn: str = dsn) -> bool:
            return not await _login_refused(dsn)

        async def refused(dsn: str = dsn) -> bool:
            return await _login_refused(dsn)

        await _until(accepted, "login with a new token")
        began = time.perf_counter()
        request = asyncio.create_task(
            asyncio.to_thread(cp.ok, "DELETE", f"/tokens/{created['id']}")
        )
        await _until(refused, "refusal of a revoked token")
        seconds.append(time.perf_counter() - began)
        await request
    return seconds


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(stack: Stack, changes: int) -> dict[str, Any]:
    """p50, p99 and max milliseconds over `changes` forbid policies and `changes` revocations."""
    identity = "bench-propagation"
    cp = stack.control_plane
    if not cp.api("GET", f"/identities/{identity}").is_success:
        cp.ok(
            "POST", "/identities", json={"name": identity, "kind": "service", "groups": ["bench"]}
        )
    token = cp.ok("POST", "/tokens", json={"identity": identity})["token"]
    stack.wait_for_bundle()
    forbid = run_loop(_forbid(stack, identity, token, changes))
    revoke = run_loop(_revoke(stack, identity, changes))
    figures: dict[str, Any] = {}
    for kind, seconds in (("forbid", forbid), ("revoke", revoke)):
        ms = [s * 1000 for s in seconds]
        figures[f"{kind}_p50_ms"] = _quantile(ms, 50)
        figures[f"{kind}_p99_ms"] = _quantile(ms, 99)
        figures[f"{kind}_max_ms"] = max(ms)
    return figures
