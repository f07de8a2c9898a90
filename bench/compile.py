"""Bundle compile time at scale: N identities (one token each, in 100 groups) and N
connections in a fresh SQLite store, then the control plane's `compile_bundle` and the node's
`BundleView(bundle)` timed separately.

Rows are inserted directly with SQLModel into a store created by `control_plane.migrate.upgrade`
(the REST API would take minutes for 20,000 rows and is not what is measured). Tokens share
one set of SCRAM keys (deriving 10,000 would take longer than the compile and change nothing
in it); every other column is filled as the API would. Each figure is the second of two runs in
the same process, as in a control plane and a node that have been up for a while; the first
(cold) run is recorded beside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, create_engine

from control_plane import compiler
from control_plane.db import Database, sync_url
from control_plane.migrate import upgrade
from control_plane.models import (
    BundleState,
    Connection,
    Group,
    Identity,
    IdentityGroup,
    MaskingRule,
    Policy,
    Token,
)
from lockgate import tokens
from lockgate.bundle import BundleView
from lockgate.runtime import run as run_loop
from protos.lockgate.v1 import node_pb2 as pb

GROUPS = 100


def fill(url: str, identities: int, connections: int) -> None:
    """Insert the configuration: groups, identities with a token each, connections, policies."""
    issued = tokens.issue(tokens.new_scram_salt())
    engine = create_engine(sync_url(url))
    with Session(engine) as session:
        groups = [Group(id=g + 1, name=f"group-{g}") for g in range(GROUPS)]
        session.add_all(groups)
        for i in range(identities):
            session.add(
                Identity(
                    id=i + 1,
                    name=f"identity-{i}",
                    kind="service" if i % 2 else "user",
                    scram_salt=tokens.new_scram_salt(),
                )
            )
        session.flush()
        for i in range(identities):
            session.add(IdentityGroup(identity_id=i + 1, group_id=i % GROUPS + 1))
            session.add(
                Token(
                    id=f"{i:016x}",
                    identity_id=i + 1,
                    secret_sha256=os.urandom(32),
                    scram_stored_key=issued.scram_stored_key,
                    scram_server_key=issued.scram_server_key,
                    scram_iterations=issued.scram_iterations,
                )
            )
        for i in range(connections):
            session.add(
                Connection(
                    name=f"connection-{i}",
                    host=f"db-{i}.internal",
                    port=5432,
                    database=f"db{i}",
                    username="app",
                    password_encrypted=os.urandom(48),
                    node_labels={"zone": f"zone-{i % 4}"},
                    guardrails=["production-safety"] if i % 10 == 0 else [],
                )
            )
        for g in range(GROUPS):
            session.add(
                Policy(
                    name=f"group-{g}-read",
                    cedar=f'permit(principal in Group::"group-{g}", '
                    'action in [Action::"connect", Action::"read"], resource);',
                )
            )
        session.add(MaskingRule(name="pii", connections=["*"], columns=["*.email"]))
        session.merge(BundleState(id=1, revision=1))
        session.commit()
    engine.dispose()


async def _compile(url: str) -> tuple[pb.Bundle, float, float]:
    """Two compiles in one session: the first (cold) warms SQLAlchemy's caches, as a
    long-running control plane's are for the second."""
    db = Database(url)
    try:
        async with db.session() as session:
            began = time.perf_counter()
            await compiler.compile_bundle(session)
            cold = time.perf_counter() - began
            began = time.perf_counter()
            bundle = await compiler.compile_bundle(session)
            return bundle, cold, time.perf_counter() - began
    finally:
        await db.dispose()


def run(identities: int, connections: int) -> dict[str, Any]:
    """Seconds to compile the bundle and to build the node's view of it, in a fresh store."""
    home = Path(tempfile.mkdtemp(prefix="lg-bench-compile-"))
    try:
        url = f"sqlite+aiosqlite:///{home / 'store.db'}"
        upgrade(url)
        fill(url, identities, connections)
        bundle, cold_s, compile_s = run_loop(_compile(url))
        if len(bundle.identities) != identities or len(bundle.connections) != connections:
            raise RuntimeError("the bundle does not hold every identity and connection")
        began = time.perf_counter()
        BundleView(bundle)
        view_cold_s = time.perf_counter() - began
        began = time.perf_counter()
        BundleView(bundle)
        view_s = time.perf_counter() - began
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {
        "compile_s": compile_s,
        "compile_cold_s": cold_s,
        "bundle_view_s": view_s,
        "bundle_view_cold_s": view_cold_s,
        "total_s": compile_s + view_s,
        "bundle_bytes": bundle.ByteSize(),
    }
