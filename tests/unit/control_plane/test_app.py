"""The app around the API: health with the revision, metrics, docs, the console placeholder,
and a revision bump for every change a bundle would carry."""

from __future__ import annotations

from pathlib import Path

import httpx

from control_plane.app import create_app
from control_plane.db import Database
from lockgate.settings import Settings
from tests.unit.control_plane.conftest import Api, assert_problem


async def test_healthz_reports_ok_and_revision(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "revision": 1}


async def test_openapi_and_docs_live_under_api_v1(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert spec["info"]["title"] == "Lockgate"
    assert "/api/v1/identities/{name}" in spec["paths"]
    assert "/api/v1/sessions/{session_id}/events" in spec["paths"]
    assert (await client.get("/api/v1/docs")).status_code == 200


async def test_root_is_a_console_placeholder_linking_the_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/api/v1/docs" in response.text and "console" in response.text


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    await api.get("/identities/admin")
    await api.get("/identities/nobody")
    text = (await api.http.get("/metrics")).text
    route = 'route="/api/v1/identities/{name}"'
    assert f'lockgate_http_requests_total{{method="GET",{route},status="200"}} 1.0' in text
    assert f'lockgate_http_requests_total{{method="GET",{route},status="404"}} 1.0' in text
    assert "lockgate_bundle_revision 1.0" in text
    assert "/identities/admin" not in text  # raw paths never become labels


async def test_every_bundle_change_bumps_the_revision(api: Api) -> None:
    steps = [
        ("POST", "/identities", {"name": "bob", "groups": ["dev"]}),
        ("PATCH", "/identities/bob", {"role": "auditor"}),
        ("POST", "/groups", {"name": "ops"}),
        ("POST", "/tokens", {"identity": "bob"}),
        (
            "POST",
            "/connections",
            {"name": "db", "host": "h", "port": 5432, "database": "d", "username": "u"},
        ),
        ("PATCH", "/connections/db", {"password": "x"}),
        ("POST", "/policies", {"name": "p", "cedar": "permit(principal, action, resource);"}),
        ("PUT", "/policies/p", {"cedar": "forbid(principal, action, resource);"}),
        ("PATCH", "/policies/p", {"description": "d"}),
        ("POST", "/nodes", {"name": "n1"}),
        ("DELETE", "/nodes/n1", None),
        ("DELETE", "/policies/p", None),
        ("DELETE", "/connections/db", None),
        ("DELETE", "/groups/ops", None),
        ("DELETE", "/identities/bob", None),
    ]
    revision = await api.revision()
    for method, path, body in steps:
        response = await api.request(method, path, json=body)
        assert response.status_code < 300, (method, path, response.text)
        if path == "/tokens":
            revoked = await api.delete(f"/tokens/{response.json()['id']}")
            assert revoked.status_code == 204
            revision += 1
        new_revision = await api.revision()
        assert new_revision == revision + 1, (method, path)
        revision = new_revision


async def test_reads_and_rejected_writes_do_not_bump(api: Api) -> None:
    revision = await api.revision()
    await api.get("/identities")
    await api.post("/identities", {"name": "admin"})  # conflict
    await api.post("/policies", {"name": "bad", "cedar": "permit("})  # invalid
    assert await api.revision() == revision


async def test_healthz_is_a_503_problem_when_the_database_is_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    app = create_app(settings, db)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            assert_problem(await client.get("/healthz"), 503)
    finally:
        await db.dispose()
