"""A stock PgBouncer in front of the benchmark target: the baseline a connection pooler costs.

Debian's `pgbouncer` in session mode on a free loopback port, run as the `postgres` OS user
(PgBouncer refuses to run as root). Its `auth_file` holds the `app` role's SCRAM secret copied
from `pg_authid`, so clients authenticate to PgBouncer by SCRAM and PgBouncer logs in to the
server by SCRAM with the client's proof keys (PgBouncer's SCRAM pass-through).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.harness.postgres import PostgresTarget
from tests.harness.processes import Process, free_port, port_open, wait_until

# PgBouncer's default pool (20 server connections per user and database) would leave twelve of
# pgbench's 32 session-mode clients waiting for a server for the whole run; every other
# setting is PgBouncer's default.
POOL_SIZE = 64


def binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if not found:
        raise FileNotFoundError("pgbouncer not found; run `make system-deps`")
    return found


def version() -> str:
    try:
        out = subprocess.run([binary(), "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "not found"
    return out.splitlines()[0].strip() if out else "unknown"


class PgBouncer:
    """Session-mode PgBouncer for the target's `appdb` database and `app` role."""

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        self.dir = Path(tempfile.mkdtemp(prefix="lg-pgbouncer-"))
        self.port = free_port()
        self.process: Process | None = None

    def dsn(self, sslmode: str = "disable") -> str:
        return self.target.dsn(sslmode, port=self.port)

    def start(self) -> PgBouncer:
        secret = self.target.psql_admin(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'"
        ).strip()
        if not secret.startswith("SCRAM-SHA-256$"):
            raise RuntimeError(f"the app role has no SCRAM secret: {secret[:20]!r}")
        (self.dir / "userlist.txt").write_text(f'"app" "{secret}"\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"appdb = host=127.0.0.1 port={self.target.port} dbname=appdb\n"
            "\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = session\n"
            f"default_pool_size = {POOL_SIZE}\n"
        )
        run_as: list[str] = []
        if os.geteuid() == 0:
            for path in [self.dir, *self.dir.iterdir()]:
                shutil.chown(path, "postgres", "postgres")
            os.chmod(self.dir / "userlist.txt", 0o600)
            run_as = ["runuser", "-u", "postgres", "--"]
        self.process = Process(
            f"pgbouncer-{self.port}",
            [*run_as, binary(), str(self.dir / "pgbouncer.ini")],
            self.dir,
        ).start()
        try:
            wait_until(self._ready, 30, "PgBouncer")
        except BaseException as exc:
            log = self.log()
            self.stop()
            raise RuntimeError(f"PgBouncer did not start:\n{log}") from exc
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.running:
            raise RuntimeError(f"PgBouncer exited:\n{self.log()}")
        if not port_open(self.port):
            return False
        with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def log(self) -> str:
        return self.process.log() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)
