"""`lockgate approvals`: list, show, approve and deny over the REST API."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate import cli


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    seen: list[tuple[str, str, Any]] = []

    def fake_api(_args: object, method: str, path: str, body: Any = None) -> Any:
        seen.append((method, path, body))
        return {"ok": True}

    monkeypatch.setattr(cli, "_api", fake_api)
    return seen


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["approvals", "list"], ("GET", "/approvals?state=pending", None)),
        (["approvals", "list", "--state", "all"], ("GET", "/approvals", None)),
        (["approvals", "get", "abc"], ("GET", "/approvals/abc", None)),
        (
            ["approvals", "approve", "abc", "--comment", "ship it"],
            ("POST", "/approvals/abc/approve", {"comment": "ship it"}),
        ),
        (["approvals", "deny", "abc"], ("POST", "/approvals/abc/deny", {"comment": ""})),
    ],
)
def test_approvals_commands_call_the_api(
    calls: list[tuple[str, str, Any]], argv: list[str], expected: tuple[str, str, Any]
) -> None:
    assert cli.main(argv) == 0
    assert calls == [expected]


def test_deciding_needs_an_id(
    calls: list[tuple[str, str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["approvals", "approve"]) == 1
    assert "needs an approval id" in capsys.readouterr().err and calls == []
