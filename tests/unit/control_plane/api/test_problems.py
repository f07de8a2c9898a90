"""Every error is an RFC 9457 problem document, and none echoes a submitted secret."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from control_plane.app import create_app
from control_plane.db import Database
from lockgate.settings import Settings
from tests.unit.control_plane.conftest import Api, assert_problem, bearer


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/nope"), 404)
    assert body["type"] == "about:blank" and body["title"] == "Not Found"


async def test_wrong_method_is_a_405_problem(api: Api) -> None:
    assert_problem(await api.put("/identities"), 405)


async def test_missing_resource_names_it(api: Api) -> None:
    body = assert_problem(await api.get("/connections/missing"), 404)
    assert "missing" in body["detail"]


async def test_validation_error_lists_errors_without_echoing_the_password(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Sup3r-Secret-Value-123"
    caplog.set_level(logging.DEBUG)
    response = await api.post(
        "/connections",
        {"name": "orders", "host": "db", "port": 99999, "password": secret, "bogus": secret},
    )
    body = assert_problem(response, 422)
    assert secret not in response.text
    assert secret not in caplog.text
    locs = [e["loc"] for e in body["errors"]]
    assert ["body", "port"] in locs and ["body", "bogus"] in locs
    assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])


async def test_malformed_json_is_a_422_problem(api: Api) -> None:
    response = await api.request(
        "POST", "/identities", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_duplicate_name_is_a_409_problem(api: Api) -> None:
    assert (await api.post("/groups", {"name": "dba"})).status_code == 201
    body = assert_problem(await api.post("/groups", {"name": "dba"}), 409)
    assert "dba" in body["detail"]


async def test_integrity_error_becomes_409(
    settings: Settings, db: Database, admin_token: str
) -> None:
    app = create_app(settings, db)

    @app.get("/boom-integrity")
    async def boom() -> None:
        raise IntegrityError("INSERT ...", {"password": "leaky"}, Exception("UNIQUE failed"))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/boom-integrity")
    body = assert_problem(response, 409)
    assert "leaky" not in response.text
    assert body["type"].endswith("/conflict")


async def test_unexpected_error_is_a_logged_500_problem(
    settings: Settings, db: Database, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, db)

    @app.post("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        with caplog.at_level(logging.ERROR, logger="lockgate.api"):
            response = await c.post("/boom", json={"password": "body-secret"}, headers=bearer("x"))
    body = assert_problem(response, 500)
    assert "kaput" not in body["detail"]
    assert "kaput" in caplog.text  # the traceback is logged
    assert "body-secret" not in caplog.text
