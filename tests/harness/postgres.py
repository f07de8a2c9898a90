"""A throwaway PostgreSQL target with password authentication, started by the tests.

`initdb --auth-host=scram-sha-256` as the `postgres` OS user (PostgreSQL refuses to run as
root), on a free loopback port, with three roles that log in by SCRAM, MD5 and cleartext.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.harness.processes import Process, free_port, wait_until


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise FileNotFoundError(f"{name} not found; run `make system-deps`")
    return path


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresTarget:
    """Roles: `app` (SCRAM), `app_md5` (MD5), `app_plain` (cleartext); database `appdb`."""

    def __init__(self, max_connections: int = 300) -> None:
        self.max_connections = max_connections
        self.dir = Path(tempfile.mkdtemp(prefix="lg-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.port = free_port()
        self.passwords = {u: secrets.token_urlsafe(18) for u in ("app", "app_md5", "app_plain")}
        self.process: Process | None = None

    def start(self) -> PostgresTarget:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "host all app_md5 127.0.0.1/32 md5\n"
            "host all app_plain 127.0.0.1/32 password\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        self.process = Process(
            f"postgres-{self.port}",
            _as_postgres(
                [
                    pg_bin("postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    f"max_connections={self.max_connections}",
                ]
            ),
            self.dir,
        ).start()
        wait_until(self._ready, 30, "PostgreSQL target")
        p = self.passwords
        self.psql_admin(
            f"CREATE ROLE app LOGIN PASSWORD '{p['app']}';"
            "SET password_encryption = 'md5';"
            f"CREATE ROLE app_md5 LOGIN PASSWORD '{p['app_md5']}';"
            "SET password_encryption = 'scram-sha-256';"
            f"CREATE ROLE app_plain LOGIN PASSWORD '{p['app_plain']}';"
        )
        self.psql_admin("CREATE DATABASE appdb OWNER app")
        self.psql_admin(
            "GRANT ALL ON SCHEMA public TO app_md5, app_plain;"
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric);"
            "INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 100) g;"
            "ALTER TABLE items OWNER TO app;",
            database="appdb",
        )
        return self

    def dsn(self, sslmode: str = "disable", port: int | None = None) -> str:
        """`app`'s password DSN for `appdb`, straight to the target (or to `port`, a proxy
        that passes `app`'s credentials on, such as PgBouncer)."""
        pw = self.passwords["app"]
        return f"postgresql://app:{pw}@127.0.0.1:{port or self.port}/appdb?sslmode={sslmode}"

    def _ready(self) -> bool:
        result = subprocess.run(
            [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return result.returncode == 0

    def psql_admin(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket (trust), returning stdout."""
        result = subprocess.run(
            [
                "psql",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# The machine's own PostgreSQL (trust auth), where tests that need a PostgreSQL store for the
# control plane make a database of their own.
LOCAL_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh database on the local server, as an asyncpg URL; dropped after, even in use."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(LOCAL_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(LOCAL_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
