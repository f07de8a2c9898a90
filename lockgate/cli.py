"""The `lockgate` command: run the planes (`up`, `control-plane`, `node`, `migrate`) and manage
them over the REST API (`connections`, `identities`, `token`, `policies`, `sessions`, `nodes`,
`approvals`).

The planes are imported lazily, so this module (part of the shared kernel) imports neither.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from lockgate.settings import ADMIN_TOKEN_FILE, Settings, parse_labels

PORT_FLAGS = {
    "http_port": "--http-port",
    "grpc_port": "--grpc-port",
    "pg_port": "--pg-port",
    "node_http_port": "--node-http-port",
}


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings from the environment, with the flags that were given taking precedence."""
    given = {
        key: getattr(args, key)
        for key in ("home", "bind", "database_url", *PORT_FLAGS)
        if getattr(args, key, None) is not None
    }
    return Settings(**given, **extra)


def _common(parser: argparse.ArgumentParser, *ports: str) -> None:
    parser.add_argument("--home", type=Path, help="state directory (LOCKGATE_HOME)")
    parser.add_argument("--bind", help="listen address (LOCKGATE_BIND)")
    for key in ports:
        parser.add_argument(PORT_FLAGS[key], dest=key, type=int)


def cmd_up(args: argparse.Namespace) -> int:
    from lockgate.up import up

    return up(_settings(args))


def cmd_control_plane(args: argparse.Namespace) -> int:
    from control_plane.server import run

    return run(_settings(args))


def cmd_node(args: argparse.Namespace) -> int:
    from data_plane.node import run

    extra: dict[str, Any] = {}
    if args.control_plane:
        extra["control_plane"] = args.control_plane
    if args.token:
        extra["node_token"] = args.token
    if args.label:
        extra["node_labels"] = parse_labels(args.label)
    return run(_settings(args, **extra))


def cmd_migrate(args: argparse.Namespace) -> int:
    from control_plane.migrate import upgrade

    settings = _settings(args)
    settings.ensure_home()
    upgrade(settings.db_url)
    print("migrations applied")
    return 0


# REST client commands --------------------------------------------------------------------


class ApiError(Exception):
    pass


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import httpx

    settings = Settings()
    url = args.url or os.environ.get("LOCKGATE_URL") or settings.http_url
    token = args.token or os.environ.get("LOCKGATE_TOKEN", "")
    if not token:
        token_file = settings.home / ADMIN_TOKEN_FILE
        if token_file.exists():
            token = token_file.read_text().strip()
    response = httpx.request(
        method,
        f"{url.rstrip('/')}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if response.status_code >= 400:
        try:
            problem = response.json()
            message = problem.get("detail") or problem.get("title")
        except ValueError:
            message = response.text
        raise ApiError(f"{response.status_code}: {message}")
    return response.json() if response.content else None


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_connections(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_api(args, "GET", "/connections"))
    elif args.action == "delete":
        _api(args, "DELETE", f"/connections/{args.name}")
    else:
        password = args.password
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        body = {
            "name": args.name,
            "type": args.type,
            "host": args.host,
            "port": args.port,
            "database": args.database,
            "username": args.username,
            "password": password or "",
            "node_labels": parse_labels(args.node_label or []),
        }
        _print(_api(args, "POST", "/connections", body))
    return 0


def cmd_identities(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_api(args, "GET", "/identities"))
    else:
        body = {"name": args.name, "kind": args.kind, "groups": args.group or [], "role": args.role}
        _print(_api(args, "POST", "/identities", body))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_api(args, "GET", "/tokens"))
    elif args.action == "revoke":
        _api(args, "DELETE", f"/tokens/{args.id}")
        print(f"token {args.id} revoked")
    else:
        body: dict[str, Any] = {"identity": args.identity}
        if args.ttl:
            body["ttl_seconds"] = args.ttl
        if args.description:
            body["description"] = args.description
        _print(_api(args, "POST", "/tokens", body))
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_api(args, "GET", "/policies"))
    else:
        cedar = Path(args.file).read_text() if args.file != "-" else sys.stdin.read()
        try:
            _print(_api(args, "PUT", f"/policies/{args.name}", {"name": args.name, "cedar": cedar}))
        except ApiError as exc:
            if not str(exc).startswith("404"):
                raise
            _print(_api(args, "POST", "/policies", {"name": args.name, "cedar": cedar}))
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_api(args, "GET", f"/sessions?limit={args.limit}"))
    else:
        _print(_api(args, "GET", f"/sessions/{args.id}/events"))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    if args.action == "list":
        _print(_api(args, "GET", "/nodes"))
    else:
        body = {"name": args.name, "labels": parse_labels(args.label or [])}
        _print(_api(args, "POST", "/nodes", body))
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    if args.action == "list":
        query = f"?state={args.state}" if args.state != "all" else ""
        _print(_api(args, "GET", f"/approvals{query}"))
        return 0
    if not args.id:
        raise ApiError(f"approvals {args.action} needs an approval id")
    if args.action == "get":
        _print(_api(args, "GET", f"/approvals/{args.id}"))
    else:
        body = {"comment": args.comment or ""}
        _print(_api(args, "POST", f"/approvals/{args.id}/{args.action}", body))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start a control plane and one node on embedded defaults")
    _common(p, *PORT_FLAGS)
    p.add_argument("--database-url", dest="database_url")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("control-plane", help="run the control plane (REST, console, gRPC)")
    _common(p, "http_port", "grpc_port")
    p.add_argument("--database-url", dest="database_url")
    p.set_defaults(func=cmd_control_plane)

    p = sub.add_parser("node", help="run a data-plane node")
    _common(p, "pg_port", "node_http_port")
    p.add_argument("--control-plane", help="HOST:PORT of the control plane's gRPC endpoint")
    p.add_argument("--token", help="node token (or LOCKGATE_NODE_TOKEN)")
    p.add_argument("--label", action="append", help="node label key=value (repeatable)")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("migrate", help="apply database migrations")
    _common(p)
    p.add_argument("--database-url", dest="database_url")
    p.set_defaults(func=cmd_migrate)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        cp = sub.add_parser(name, help=help_text)
        cp.add_argument("--url", help="control plane URL (LOCKGATE_URL)")
        cp.add_argument("--token", help="API token (LOCKGATE_TOKEN; default: the admin token)")
        return cp

    p = client("connections", "manage connections")
    p.add_argument("action", choices=["create", "list", "delete"])
    p.add_argument("name", nargs="?")
    p.add_argument("--type", default="postgres")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--database", default="")
    p.add_argument("--username", default="")
    p.add_argument("--password")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--node-label", action="append")
    p.set_defaults(func=cmd_connections)

    p = client("identities", "manage identities")
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("name", nargs="?")
    p.add_argument("--kind", default="user", choices=["user", "service"])
    p.add_argument("--role", default="member", choices=["admin", "auditor", "member"])
    p.add_argument("--group", action="append")
    p.set_defaults(func=cmd_identities)

    p = client("token", "issue, list and revoke access tokens")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("id", nargs="?", help="token id (revoke)")
    p.add_argument("--identity")
    p.add_argument("--ttl", type=int, help="seconds until the token expires")
    p.add_argument("--description")
    p.set_defaults(func=cmd_token)

    p = client("policies", "list or apply Cedar policies")
    p.add_argument("action", choices=["list", "apply"])
    p.add_argument("name", nargs="?")
    p.add_argument("--file", default="-", help="Cedar file (- for stdin)")
    p.set_defaults(func=cmd_policies)

    p = client("sessions", "audited sessions")
    p.add_argument("action", choices=["list", "events"])
    p.add_argument("id", nargs="?")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_sessions)

    p = client("nodes", "register and list data-plane nodes")
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("name", nargs="?")
    p.add_argument("--label", action="append")
    p.set_defaults(func=cmd_nodes)

    p = client("approvals", "list, approve and deny held requests")
    p.add_argument("action", choices=["list", "get", "approve", "deny"])
    p.add_argument("id", nargs="?", help="approval id (get, approve, deny)")
    p.add_argument(
        "--state",
        default="pending",
        choices=["pending", "approved", "denied", "expired", "all"],
        help="list: which approvals (default: pending)",
    )
    p.add_argument("--comment", help="approve/deny: a note for the requester and the audit")
    p.set_defaults(func=cmd_approvals)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ApiError as exc:
        print(f"lockgate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    raise SystemExit(main())
