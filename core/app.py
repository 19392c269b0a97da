"""The composition root: `build_app(config)` wires every object and returns the Starlette app.

This is the only place that names plugins, and it names them by registry string, imported on
use (as uvicorn does with its protocol implementations), so `core` imports none of its sibling
packages and a deployment pays only for the parts its config asks for.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.access import Authenticator
from core.alerting import CircuitAlerts
from core.audit import AuditLog
from core.bus import ALL, KEYS, MODELS, ChangeFeed
from core.config import Config, ConfigError
from core.config import Provider as ProviderConfig
from core.config_reload import reload_on_sighup
from core.directory import Directory
from core.drain import InFlight, InFlightMiddleware
from core.filtering import Filter
from core.governor import Governor, build_governor
from core.keyring import Keyring, bootstrap_admin
from core.lockout import FailureLedger
from core.mcp import McpControl
from core.metering import PriceCatalog
from core.metrics import Metrics
from core.model_registry import ModelRegistry
from core.moderation_model import routed_classifier
from core.ops.circuits import refresh_circuit_gauge
from core.ops.reconciliation import ReconciliationStore
from core.ops.runtime import Operations, build_operations
from core.ops.sessions import ConsoleSessionStore
from core.pipeline import Pipeline
from core.provider import Provider
from core.redaction import RedactionStore, pii_secret, prune_redactions
from core.replication import (
    build_feed,
    follow_changes,
    shared_failure_ledger,
    shared_routing_state,
)
from core.reports import UsageStore
from core.routing import Router
from core.state import Store
from core.tracing import SpanWriter, new_request_id

logger = logging.getLogger("agentgw")

STORES = {
    "sqlite": "store.sqlite:SQLiteStore",
    "memory": "store.memory:MemoryStore",
    "postgresql": "store.postgres:PostgresStore",
}
PROVIDERS = {
    "openai": "adapters.egress.openai:OpenAIProvider",
    "anthropic": "adapters.egress.anthropic:AnthropicProvider",
    "sim": "adapters.egress.sim:create_sim_provider",
}
SHARED_HTTP = "adapters.egress.http:SharedHTTP"
INGRESSES = (
    "adapters.ingress.openai:OpenAIIngress",
    "adapters.ingress.anthropic:AnthropicIngress",
    "adapters.ingress.images:ImagesIngress",
)
# Video jobs are kept in the store and read back from the provider that made them.
VIDEO_INGRESS = "adapters.ingress.videos:VideosIngress"
# Voice ingresses take the whole config (privacy mode per model, voice options).
VOICE_INGRESSES = (
    "adapters.ingress.realtime:RealtimeIngress",
    "adapters.ingress.audio:AudioIngress",
)
ADMIN_API = "adapters.admin.api:AdminAPI"
CONSOLE = "adapters.admin.console:Console"
MCP_BRIDGE = "mcp_bridge:McpBridge"
# In the order requests meet them (replies meet them in reverse).
FILTERS = {
    "pii": "filters.pii:build_pii_filter",
    "moderation": "filters.moderation:build_moderation_filter",
    "injection": "filters.injection:InjectionFilter",
    "media": "filters.media:build_media_filter",
}
DEFAULT_RETENTION_DAYS = 90.0
DRAIN_UNWIND_SECONDS = 10.0


class Resource(Protocol):
    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


class Ingress(Protocol):
    def routes(self) -> list[BaseRoute]: ...


def load(target: str) -> Any:
    """Import `module:attribute` on use."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_store(url: str) -> Store:
    """The store backend for a config `store:` URL (not yet opened).

    Raises:
        ConfigError: the URL names a backend this build does not have.
    """
    if url.startswith("sqlite:///"):
        return cast(Store, load(STORES["sqlite"])(url.removeprefix("sqlite:///")))
    if url == "memory://":
        return cast(Store, load(STORES["memory"])())
    if url.startswith(("postgresql://", "postgres://")):
        try:
            return cast(Store, load(STORES["postgresql"])(url))
        except ValueError as exc:  # a bad option in the URL (schema, pool_size)
            raise ConfigError(f"store: {exc}") from exc
    raise ConfigError(f"store: '{url.split(':', 1)[0]}' is not available in this build yet")


@dataclass(frozen=True)
class Access:
    """The access layer: key lookups on the request path, audited changes on the admin path."""

    authenticator: Authenticator
    audit: AuditLog
    keyring: Keyring
    directory: Directory


@dataclass
class Gateway:
    """Every long-lived object of one running gateway."""

    config: Config
    store: Store
    http: Resource
    providers: dict[str, Provider]
    spans: SpanWriter
    metrics: Metrics
    pipeline: Pipeline
    access: Access
    models: ModelRegistry
    governor: Governor
    ready: bool = False
    closers: list[Callable[[], Any]] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    # The MCP bridge (`core.mcp.McpControl`, started in the lifespan), when mcp_servers is set.
    mcp: Any = None
    ops: Operations | None = None
    catalog: PriceCatalog = field(default_factory=lambda: PriceCatalog(()))
    # Changes to and from the other replicas (`core.bus`); local-only without `redis:`.
    feed: ChangeFeed = field(default_factory=lambda: ChangeFeed(None))
    inflight: InFlight = field(default_factory=InFlight)


def build_gateway(config: Config, *, clock: Callable[[], float] = time.time) -> Gateway:
    """Construct every object; nothing is opened until the lifespan starts.

    `clock` is the wall clock of the access layer (key expiry, rotation grace, brute-force
    waits, audit times); tests pass their own so they never sleep.

    Raises:
        ConfigError: the config asks for something this build cannot provide.
    """
    _refuse_unbuilt(config)
    store = open_store(config.store)
    http = cast(Resource, load(SHARED_HTTP)())
    providers = {p.name: _provider(p, http) for p in config.providers}
    metrics = Metrics()
    spans = SpanWriter(store, max_queue=config.spans.queue_size, batch_size=config.spans.batch_size)
    metrics.watch_queue(lambda: spans.depth)
    shared = shared_routing_state(config, load)  # circuits and cache in Redis, if configured
    catalog = PriceCatalog(config.prices)  # one catalog: versions added at run time apply to all
    router = Router(
        config.models,
        providers,
        {p.name: p.network for p in config.providers},
        prices=catalog,
        dropped={p.name: frozenset(p.quirks.drop_params) for p in config.providers},
        **shared,
    )
    feed = build_feed(config, load)
    failures = shared_failure_ledger(config, load)
    access = _access(store, metrics, clock, announce=feed.announcer(KEYS), failures=failures)
    governor = build_governor(config, store, access.audit, load, clock=clock)
    router.circuits = CircuitAlerts(router.circuits, governor.alerts)  # trips become alerts
    governor.alerts.watch(
        lambda kind, severity: metrics.alerts.labels(kind, severity).inc(),
        lambda outcome: metrics.alert_deliveries.labels(outcome).inc(),
    )
    pipeline = Pipeline(
        authenticator=access.authenticator,
        router=router,
        quota=governor.gate,
        filters=[],
        prices=catalog,
        spans=spans,
        metrics=metrics,
    )
    models = ModelRegistry(store, access.audit, router, config.models, providers, clock=clock,
                           on_change=feed.announcer(MODELS))  # fmt: skip
    follow_changes(feed, access.authenticator, models, governor.rules)
    gw = Gateway(config, store, http, providers, spans, metrics, pipeline, access, models, governor)
    gw.feed = feed
    gw.catalog = catalog
    gw.closers.extend(part.aclose for part in shared.values())
    if failures is not None:
        gw.closers.append(cast(Resource, failures).aclose)
    return gw


def _access(
    store: Store,
    metrics: Metrics,
    clock: Callable[[], float],
    announce: Callable[[str], None] = lambda subject: None,
    failures: FailureLedger | None = None,
) -> Access:
    authenticator = Authenticator(store, metrics=metrics, clock=clock, failures=failures)
    audit = AuditLog(store, clock=clock)

    # A change through this process drops the key cache, so it holds from the very next request
    # here; the other replicas drop theirs when the change feed tells them.
    def changed() -> None:
        authenticator.forget()
        announce(ALL)

    keyring = Keyring(store, audit, clock=clock, on_change=changed)
    return Access(authenticator, audit, keyring, Directory(store, audit, clock=clock))


async def _trust_bootstrap_admin(gw: Gateway) -> None:
    access = gw.access
    secret_hash, generated = await bootstrap_admin(
        gw.store, access.audit, gw.config.admin_key, clock=access.keyring.now
    )
    access.authenticator.trust_root(secret_hash)
    if generated is not None:
        # The one place a secret is printed: the operator has no other way to learn it.
        print(
            f"agentgw: generated the bootstrap admin key (shown only this once): {generated}\n"
            "agentgw: set AGENTGW_ADMIN_KEY to choose it yourself.",
            file=sys.stderr,
            flush=True,
        )


def _admin_routes(gw: Gateway) -> list[BaseRoute]:
    api = load(ADMIN_API)(
        keyring=gw.access.keyring,
        directory=gw.access.directory,
        audit=gw.access.audit,
        authenticator=gw.access.authenticator,
        models=gw.models,
        rules=gw.governor.rules,
        alerts=gw.governor.alerts,
        redactions=cast(RedactionStore, gw.store),
        usage=cast(UsageStore, gw.store),
        prices=gw.catalog,
        price_book=gw.ops.prices if gw.ops is not None else None,
        max_body_bytes=gw.config.listen.max_body_bytes,
        mcp=gw.mcp,
    )
    return cast(Ingress, api).routes()


def _console_routes(gw: Gateway, clock: Callable[[], float]) -> list[BaseRoute]:
    console = load(CONSOLE)(
        authenticator=gw.access.authenticator,
        keys=gw.store,
        usage=cast(UsageStore, gw.store),
        redactions=cast(RedactionStore, gw.store),
        audit=gw.access.audit,
        rules=gw.governor.rules,
        alerts=gw.governor.alerts,
        clock=clock,
        imports=cast(ReconciliationStore, gw.store),
        sessions=cast(ConsoleSessionStore, gw.store),
    )
    return cast(Ingress, console).routes()


async def _install_filters(gw: Gateway, clock: Callable[[], float]) -> None:
    """Build the configured content filters (pii → moderation → injection) and hand them to
    the pipeline; the PII analyzer is loaded here, so the first request does not pay for it.

    Raises:
        ConfigError: a filter's options are invalid (unknown entity, NER without its model).
    """
    cfg = gw.config.filters
    built: list[Filter] = []
    if cfg.pii is not None:
        # The secret may live in the store, which is open only now.
        secret = await pii_secret(gw.store, gw.access.audit, cfg.pii.secret, clock=clock)
        pii = load(FILTERS["pii"])(cfg.pii, secret=secret, count=gw.metrics.pii_analyses.inc)
        gw.closers.append(pii.aclose)  # its worker processes, if any
        await pii.warm()
        built.append(cast(Filter, pii))
    if cfg.moderation is not None:
        model = cfg.moderation.model
        # The model is reached through our own routing (failover, circuits), never directly;
        # each check is recorded as a child span of the call it checked.
        classify = routed_classifier(gw.pipeline, model) if model else None
        built.append(cast(Filter, load(FILTERS["moderation"])(cfg.moderation, classify=classify)))
    if cfg.injection is not None:
        built.append(cast(Filter, load(FILTERS["injection"])(action=cfg.injection.action)))
    if cfg.media is not None:
        media = load(FILTERS["media"])(cfg.media, metrics=gw.metrics.media)
        await media.warm()
        built.append(cast(Filter, media))
    gw.filters = built
    gw.pipeline.use_filters(built)


async def _prune_redactions(gw: Gateway, clock: Callable[[], float]) -> None:
    pii = gw.config.filters.pii
    days = pii.retention_days if pii is not None else DEFAULT_RETENTION_DAYS
    await prune_redactions(cast(RedactionStore, gw.store), days, clock=clock)


def _provider(cfg: ProviderConfig, http: Resource) -> Provider:
    target = PROVIDERS.get(cfg.type)
    if target is None:
        raise ConfigError(f"providers.{cfg.name}.type: '{cfg.type}' is not available yet")
    try:
        return cast(Provider, load(target)(cfg, http))
    except ValueError as exc:  # a provider's own option check (e.g. the sim's options)
        raise ConfigError(f"providers.{cfg.name}: {exc}") from exc


def _refuse_unbuilt(config: Config) -> None:
    # Protection that is configured but not built must stop the start: silently forwarding the
    # data it was meant to guard would be worse than not starting.
    checks: tuple[tuple[str, object], ...] = ()  # (config path, its value) of unbuilt parts
    unbuilt = [name for name, value in checks if value]
    if unbuilt:
        raise ConfigError(f"{', '.join(unbuilt)}: not available in this build yet")


def build_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    config_path: str | Path | None = None,
    settle_gc: bool = False,
) -> Starlette:
    """The whole gateway as an ASGI app; the lifespan opens and closes every resource.

    With `config_path`, SIGHUP reloads that file's model routing (`core.config_reload`).
    With `settle_gc` (the server process, not tests that build many apps in one process), the
    garbage collector is tuned once started (`settle_garbage_collector`).

    Raises:
        ConfigError: the config asks for something this build cannot provide.
    """
    gw = build_gateway(config, clock=clock)
    if config.mcp_servers:
        gw.mcp = load(MCP_BRIDGE)(
            config,
            gw.pipeline,
            store=gw.store,
            audit=gw.access.audit,
            alert=getattr(gw.governor.alerts, "raise_alert", None),
            clock=clock,
        )
    gw.ops = build_operations(
        config,
        gw.governor.alerts,
        load,
        usage=cast(UsageStore, gw.store),
        rules=gw.governor.rules,
        clock=clock,
        prices=gw.catalog,
        feed=gw.feed,
    )
    gw.ops.attach(gw.spans)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.store.open()
        await _trust_bootstrap_admin(gw)
        await _install_filters(gw, clock)
        await gw.models.open()
        await gw.governor.rules.open()
        if gw.ops is not None:
            await gw.ops.open()
        await gw.http.open()
        try:
            async with anyio.create_task_group() as tg:
                gw.spans.start(tg)
                tg.start_soon(_prune_redactions, gw, clock)
                tg.start_soon(gw.feed.run)
                gw.governor.alerts.start(tg)
                if gw.ops is not None:
                    gw.ops.start(tg)
                if config_path is not None:
                    tg.start_soon(reload_on_sighup, config_path, config, gw.models)
                if gw.mcp is not None:
                    await tg.start(gw.mcp.serve)
                if settle_gc:
                    settle_garbage_collector()
                gw.ready = True
                try:
                    yield
                finally:
                    gw.ready = False
                    with anyio.CancelScope(shield=True):
                        # Requests cancelled at the drain deadline record their spans as they
                        # unwind: wait for them, then flush (core.drain).
                        await gw.inflight.wait_idle(DRAIN_UNWIND_SECONDS)
                        await gw.spans.aclose()
                        if gw.ops is not None:
                            await gw.ops.aclose()
                    tg.cancel_scope.cancel()  # the SIGHUP watcher runs until told to stop
        finally:
            with anyio.CancelScope(shield=True):
                for provider in gw.providers.values():
                    await provider.aclose()
                await gw.http.aclose()
                await gw.store.aclose()
                for close in gw.closers:
                    await close()

    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(gw), methods=["GET"]),
        Route("/metrics", _metrics(gw), methods=["GET"]),
    ]
    for target in INGRESSES:
        ingress = cast(
            Ingress, load(target)(gw.pipeline, max_body_bytes=config.listen.max_body_bytes)
        )
        routes.extend(ingress.routes())
    for target in VOICE_INGRESSES:
        routes.extend(cast(Ingress, load(target)(gw.pipeline, config)).routes())
    videos = load(VIDEO_INGRESS)(
        gw.pipeline,
        jobs=gw.store,
        providers=gw.providers,
        max_body_bytes=config.listen.max_body_bytes,
    )
    routes.extend(cast(Ingress, videos).routes())
    routes.extend(_admin_routes(gw))
    routes.extend(_console_routes(gw, clock))
    if gw.mcp is not None:
        routes.extend(cast(Ingress, gw.mcp).routes())
    app = GatewayApp(
        inflight=gw.inflight,
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(InFlightMiddleware, inflight=gw.inflight),
            Middleware(RequestIdMiddleware),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.gateway = gw
    return app


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _readyz(gw: Gateway) -> Callable[[Request], Any]:
    async def readyz(request: Request) -> Response:
        if not gw.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        if not await gw.governor.available():
            # The counter store is down: fail closed refuses governed calls (503), fail open
            # admits them unchecked; either way the operator must see it.
            closed = gw.config.governance.fail == "closed"
            body = {"status": "degraded", "governance": f"{gw.governor.backend} unavailable"}
            if gw.feed.state != "local":
                body["replication"] = gw.feed.state
            return JSONResponse(body, status_code=503 if closed else 200)
        ready: dict[str, Any] = {"status": "ready", "span_queue": gw.spans.depth}
        if gw.mcp is not None:
            # A down upstream is reported, never fails readiness: the others keep serving.
            ready["mcp"] = {h.name: h.state for h in cast(McpControl, gw.mcp).health()}
        if gw.feed.state != "local":
            # "polling": the Redis bus is down; changes reach this replica by polling instead.
            ready["replication"] = gw.feed.state
        return JSONResponse(ready)

    return readyz


def _metrics(gw: Gateway) -> Callable[[Request], Any]:
    async def metrics(request: Request) -> Response:
        await refresh_circuit_gauge(gw.metrics.circuit_state, gw.pipeline.router)
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    return metrics


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if request.url.path.startswith("/v1/messages"):  # Anthropic clients parse their own shape
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        anthropic = {"type": "error", "error": {"type": kind, "message": exc.detail}}
        return JSONResponse(anthropic, status_code=exc.status_code, headers=exc.headers)
    body = {
        "error": {
            "message": exc.detail,
            "type": "invalid_request_error",
            "param": None,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


# Young objects the cyclic garbage collector lets accumulate before it runs (CPython: 700).
# Nearly everything a request allocates is freed by reference counting; at 700 the collector
# ran every ~10 requests and each run cost ~1 ms (~25 µs a request, measured), for garbage it
# then rarely found. The older generations keep their thresholds.
GC_YOUNG_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Once started: move everything loaded so far (modules, models, config, the NER pipeline)
    out of the collector's sight, and make young collections rarer (GC_YOUNG_THRESHOLD).

    Without the freeze, each full collection walked every object of the start-up (~60 ms
    with no filters, far more with NER loaded) for nothing: those live as long as the process.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class GatewayApp(Starlette):
    """Starlette, with the routes whose endpoint is marked `direct` dispatched ahead of it.

    A direct endpoint (`adapters.ingress.http.Direct`: the chat routes) is a plain ASGI app that
    sets its own request id and `x-request-id`; here it is only counted in flight (what
    `InFlightMiddleware` does for the rest) and called, without the middleware stack, the
    router's matching and the exception wrappers in between. Other methods on its path, and
    every other route, go through Starlette as usual.
    """

    def __init__(self, *, inflight: InFlight, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inflight = inflight
        self._direct: dict[tuple[str, str], ASGIApp] = {
            (method, route.path): route.app
            for route in self.routes
            if isinstance(route, Route) and getattr(route.app, "direct", False)
            for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            app = self._direct.get((scope["method"], scope["path"]))
            if app is not None:
                scope["app"] = self
                self._inflight.enter()
                try:
                    await app(scope, receive, send)
                finally:
                    self._inflight.leave()
                return
        await super().__call__(scope, receive, send)


class RequestIdMiddleware:
    """Gives every request an id and every reply (and WebSocket handshake) `x-request-id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = message.get("headers", [])
                if not any(name == b"x-request-id" for name, _ in headers):  # a Direct's own
                    message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
