"""Real Lockgate processes for integration tests: a control plane and nodes on free ports,
provisioned only through the public REST API, as a user or a script would.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.harness.postgres import PostgresTarget
from tests.harness.processes import Process, free_port, port_open, wait_until


class ControlPlane:
    def __init__(
        self,
        home: Path | None = None,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        admin_token: str = "",
    ) -> None:
        self.home = home or Path(tempfile.mkdtemp(prefix="lg-cp-"))
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.database_url = database_url
        self.env = env or {}
        self.process: Process | None = None
        self.admin_token = admin_token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> ControlPlane:
        env = {
            "LOCKGATE_HOME": str(self.home),
            "LOCKGATE_HTTP_PORT": str(self.http_port),
            "LOCKGATE_GRPC_PORT": str(self.grpc_port),
            "LOCKGATE_BIND": "127.0.0.1",
        }
        if self.database_url:
            env["LOCKGATE_DATABASE_URL"] = self.database_url
        env.update(self.env)
        self.process = Process(
            f"control-plane-{self.http_port}",
            [sys.executable, "-m", "lockgate", "control-plane"],
            self.home,
            env,
        ).start()
        try:
            wait_until(self._healthy, 60, "control plane /healthz")
        except TimeoutError:
            raise RuntimeError(f"control plane did not start:\n{self.process.log()}") from None
        token_file = self.home / "admin-token"
        if token_file.exists():
            self.admin_token = token_file.read_text().strip()
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if not self.process.running:
            raise RuntimeError(f"control plane exited:\n{self.process.log()}")
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        wait_until(lambda: not port_open(self.grpc_port), 10, "gRPC port to close")

    def api(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.request(
            method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kwargs
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json() if response.content else None


class Node:
    def __init__(
        self,
        control_plane: ControlPlane,
        name: str,
        labels: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.cp = control_plane
        self.name = name
        self.home = Path(tempfile.mkdtemp(prefix=f"lg-node-{name}-"))
        self.pg_port = free_port()
        self.http_port = free_port()
        self.labels = labels or {}
        self.extra_env = extra_env or {}
        self.token = ""
        self.process: Process | None = None

    def register(self) -> Node:
        created = self.cp.ok("POST", "/nodes", json={"name": self.name, "labels": self.labels})
        self.token = created["token"]
        return self

    def start(self, wait_for_bundle: bool = True) -> Node:
        if not self.token:
            self.register()
        env = {
            "LOCKGATE_HOME": str(self.home),
            "LOCKGATE_PG_PORT": str(self.pg_port),
            "LOCKGATE_NODE_HTTP_PORT": str(self.http_port),
            "LOCKGATE_BIND": "127.0.0.1",
            "LOCKGATE_CONTROL_PLANE": self.cp.grpc_target,
            "LOCKGATE_NODE_TOKEN": self.token,
            **self.extra_env,
        }
        self.process = Process(
            f"node-{self.name}-{self.pg_port}",
            [sys.executable, "-m", "lockgate", "node"],
            self.home,
            env,
        ).start()
        check = self._has_bundle if wait_for_bundle else self._listening
        try:
            wait_until(check, 60, f"node {self.name}")
        except TimeoutError:
            raise RuntimeError(f"node did not start:\n{self.process.log()}") from None
        return self

    def _listening(self) -> bool:
        return port_open(self.pg_port)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(
            f"http://127.0.0.1:{self.http_port}/healthz", timeout=1
        ).json()
        return result

    def _has_bundle(self) -> bool:
        assert self.process is not None
        if not self.process.running:
            raise RuntimeError(f"node exited:\n{self.process.log()}")
        return self.health()["status"] == "ok"

    def revision(self) -> int:
        return int(self.health()["revision"])

    def dsn(self, identity: str, token: str, connection: str, sslmode: str = "require") -> str:
        return (
            f"postgresql://{identity}:{token}@127.0.0.1:{self.pg_port}/{connection}"
            f"?sslmode={sslmode}"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def add_connection(
    cp: ControlPlane, target: PostgresTarget, name: str, role: str = "app", **extra: object
) -> None:
    """Register `target`'s database `appdb` as connection `name`, logging in as `role`."""
    cp.ok(
        "POST",
        "/connections",
        json={
            "name": name,
            "type": "postgres",
            "host": "127.0.0.1",
            "port": target.port,
            "database": "appdb",
            "username": role,
            "password": target.passwords[role],
            **extra,
        },
    )
