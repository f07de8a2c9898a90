"""One validated settings object for every Lockgate process, read from `LOCKGATE_*` variables.

Flags on the command line override the environment by being passed as keyword arguments to
`Settings(...)`. Outside development mode the settings refuse to run without a master key.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MASTER_KEY_FILE = "master.key"
ADMIN_TOKEN_FILE = "admin-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    home: Path = Path(".lockgate")
    bind: str = "127.0.0.1"
    database_url: str = ""
    master_key: str = Field(default="", repr=False)
    log_level: str = "info"

    # control plane
    http_port: int = 8700
    grpc_port: int = 8701
    public_url: str = ""

    # data-plane node
    control_plane: str = ""
    node_token: str = Field(default="", repr=False)
    node_labels: dict[str, str] = Field(default_factory=dict)
    pg_port: int = 15432
    mysql_port: int = 13306
    ssh_port: int = 12222
    proxy_port: int = 18080
    node_http_port: int = 8702
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # `auto`: cleartext token over TLS, SCRAM-SHA-256 otherwise; `scram`: always SCRAM.
    pg_auth: Literal["auto", "scram"] = "auto"
    # Seconds a PostgreSQL client has for its whole start-up (TLS, authentication and the
    # target's log-in) before the node drops it, as PgBouncer's `client_login_timeout`.
    pg_login_timeout: float = Field(default=30.0, gt=0)
    # Audit events per upload to the control plane; a batch not full waits up to
    # `audit_linger` seconds for more (fewer, larger uploads cost the control plane less).
    audit_batch_size: int = 5000
    audit_linger: float = 0.2
    # Statements a PostgreSQL session has already decided are audited and forwarded in C
    # (data_plane/protocols/postgres/_fastpath.c); off, every statement takes the Python path.
    pg_fast_path: bool = True
    # Once a target has sent 1 MiB of an unmasked reply since the client last sent, its socket
    # is read up to a MiB at a time rather than as each piece arrives (data_plane/bulk.py).
    bulk_reads: bool = True
    # Microseconds the node's event loop keeps polling its sockets after forwarding something,
    # instead of sleeping until the answer or the next statement wakes it
    # (data_plane/busy_poll.py); 0 turns it off.
    busy_poll_us: int = Field(default=50, ge=0, le=10_000)
    # Polling pauses while runnable tasks wait for a CPU more than this share (percent) of the
    # time (Linux's CPU pressure, /proc/pressure/cpu; data_plane/busy_poll.py); 100 never pauses.
    busy_poll_max_stall: int = Field(default=30, ge=0, le=100)
    # Node processes (data_plane/workers.py). With more than one, `lockgate node` supervises
    # that many workers: it accepts on the node's ports and hands each connection to the least
    # loaded one, and serves their health and metrics on `node_http_port`; `node_worker` is the
    # index the supervisor gives each one.
    node_workers: int = Field(default=1, ge=1, le=64)
    node_worker: int | None = Field(default=None, ge=0)

    @field_validator("node_labels", mode="before")
    @classmethod
    def _labels_from_text(cls, value: object) -> object:
        # `LOCKGATE_NODE_LABELS=region=eu-west,env=prod` as well as JSON.
        if isinstance(value, str) and not value.lstrip().startswith("{"):
            return parse_labels(value.split(",")) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.env == "production" and not self.master_key:
            raise ValueError("LOCKGATE_MASTER_KEY is required outside development mode")
        return self

    @property
    def db_url(self) -> str:
        """The async SQLAlchemy URL of the control plane's store."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'lockgate.db').resolve()}"

    @property
    def http_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind
        return f"http://{host}:{self.http_port}"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home

    def master_key_bytes(self) -> bytes:
        """The 32-byte key that encrypts target credentials at rest.

        From LOCKGATE_MASTER_KEY (base64) or, in development mode only, a key file generated
        once in the home directory.
        """
        if self.master_key:
            key = base64.urlsafe_b64decode(self.master_key + "=" * (-len(self.master_key) % 4))
            if len(key) != 32:
                raise ValueError("LOCKGATE_MASTER_KEY must be 32 bytes, base64-encoded")
            return key
        path = self.ensure_home() / MASTER_KEY_FILE
        if not path.exists():
            write_private(path, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        return base64.urlsafe_b64decode(path.read_text().strip())


def parse_labels(items: list[str]) -> dict[str, str]:
    """`["region=eu-west", "env=prod"]` -> `{"region": "eu-west", "env": "prod"}`."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value")
        labels[key] = value
    return labels


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only (mode 0600), created that way."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
