"""The control plane's HTTP application: REST under `/api/v1`, health, metrics, console stub.

`create_app` wires routers, problem+json error handlers and request metrics around a database
and settings the caller owns; starting servers (uvicorn, gRPC) is the process runner's job.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import lockgate
from control_plane import changes
from control_plane.api import problems
from control_plane.api.deps import SessionDep
from control_plane.api.routes import api_router
from control_plane.crypto import SecretBox
from control_plane.db import Database
from control_plane.schemas import Health
from lockgate.settings import Settings

try:  # FastAPI >= 0.16x keeps included routes unprefixed and exposes their contexts
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI copies routes with the full path into the app
    iter_route_contexts = None  # type: ignore[assignment]

API_PREFIX = "/api/v1"

log = logging.getLogger("lockgate.api")

CONSOLE_PLACEHOLDER = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Lockgate</title></head>
<body>
<h1>Lockgate</h1>
<p>The web console arrives in a later release. Until then, use the REST API:</p>
<ul>
<li><a href="/api/v1/docs">API documentation</a></li>
<li><a href="/api/v1/openapi.json">OpenAPI document</a></li>
<li><a href="/healthz">health</a> and <a href="/metrics">metrics</a></li>
</ul>
</body>
</html>
"""


class Metrics:
    """The app's Prometheus collectors, in a registry of its own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lockgate_http_requests_total",
            "HTTP requests handled, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lockgate_http_request_duration_seconds",
            "Time to handle HTTP requests, by method and route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.bundle_revision = Gauge(
            "lockgate_bundle_revision",
            "The configuration revision nodes should be running",
            registry=self.registry,
        )


class RouteTemplates:
    """The full path template (`/api/v1/identities/{name}`) of the route a request matched.

    Recent FastAPI keeps an included router's routes as they were declared (without the
    include prefix) in `scope["route"]`; the prefixed template comes from its route contexts.
    """

    def __init__(self) -> None:
        self._known: dict[int, str] = {}

    def of(self, scope: Scope) -> str:
        """The template of the matched route, or `unmatched`."""
        route = scope.get("route")
        if route is None:
            return "unmatched"
        template = self._known.get(id(route))
        if template is None:
            self._learn(scope)
            template = self._known.setdefault(id(route), str(getattr(route, "path", "unmatched")))
        return template

    def _learn(self, scope: Scope) -> None:
        app = scope.get("app")
        routes = getattr(app, "routes", None)
        if routes is None or iter_route_contexts is None:
            return
        for context in iter_route_contexts(routes):
            if context.path_format:
                self._known.setdefault(id(context.original_route), context.path_format)


class MetricsMiddleware:
    """Counts requests by route template (never the raw path, which would explode cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.templates.of(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def create_app(settings: Settings, db: Database) -> FastAPI:
    """Build the control plane's FastAPI app over `db`."""
    app = FastAPI(
        title="Lockgate",
        version=lockgate.__version__,
        description="Control plane of the Lockgate access gateway.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    metrics = Metrics()
    app.state.db = db
    app.state.settings = settings
    app.state.secret_box = SecretBox.from_settings(settings)
    app.state.metrics = metrics

    problems.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(api_router, prefix=API_PREFIX)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz(session: SessionDep) -> Health:
        """Liveness with a database round trip; the current configuration revision."""
        try:
            revision = await changes.current(session)
        except SQLAlchemyError:
            log.warning("health check: database unreachable", exc_info=True)
            raise problems.Problem(503, "the database is unreachable") from None
        return Health(status="ok", revision=revision)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(session: SessionDep) -> Response:
        """Prometheus text exposition."""
        try:
            metrics.bundle_revision.set(await changes.current(session))
        except SQLAlchemyError:
            log.warning("metrics: database unreachable; bundle revision not updated")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def console() -> str:
        """Placeholder for the web console."""
        return CONSOLE_PLACEHOLDER

    return app
