"""The composition root: `build_app(config)` wires every object and returns the Starlette app.

This is the only place that names plugins, and it names them by registry string, imported on
use (as uvicorn does with its protocol implementations), so `core` imports none of its sibling
packages and a deployment pays only for the parts its config asks for.
"""

from __future__ import annotations

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
from core.audit import AuditLog
from core.config import Config, ConfigError
from core.config import Provider as ProviderConfig
from core.config_reload import reload_on_sighup
from core.directory import Directory
from core.filtering import Filter
from core.governor import Governor, build_governor
from core.keyring import Keyring, bootstrap_admin
from core.metering import PriceCatalog
from core.metrics import Metrics
from core.model_registry import ModelRegistry
from core.pipeline import Pipeline
from core.provider import Provider
from core.redaction import RedactionStore, pii_secret, prune_redactions
from core.routing import Router
from core.state import Store
from core.tracing import SpanWriter, new_request_id

logger = logging.getLogger("agentgw")

STORES = {
    "sqlite": "store.sqlite:SQLiteStore",
    "memory": "store.memory:MemoryStore",
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
)
ADMIN_API = "adapters.admin.api:AdminAPI"
# In the order requests meet them (replies meet them in reverse).
FILTERS = {
    "pii": "filters.pii:build_pii_filter",
    "moderation": "filters.moderation:build_moderation_filter",
    "injection": "filters.injection:InjectionFilter",
}
DEFAULT_RETENTION_DAYS = 90.0


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
    router = Router(
        config.models,
        providers,
        {p.name: p.network for p in config.providers},
        prices=PriceCatalog(config.prices),
        dropped={p.name: frozenset(p.quirks.drop_params) for p in config.providers},
    )
    access = _access(store, metrics, clock)
    governor = build_governor(config, store, access.audit, load, clock=clock)
    pipeline = Pipeline(
        authenticator=access.authenticator,
        router=router,
        quota=governor.gate,
        filters=[],
        prices=PriceCatalog(config.prices),
        spans=spans,
        metrics=metrics,
    )
    models = ModelRegistry(store, access.audit, router, config.models, providers, clock=clock)
    return Gateway(
        config, store, http, providers, spans, metrics, pipeline, access, models, governor
    )


def _access(store: Store, metrics: Metrics, clock: Callable[[], float]) -> Access:
    authenticator = Authenticator(store, metrics=metrics, clock=clock)
    audit = AuditLog(store, clock=clock)
    # A change through this process drops the key cache, so it holds from the very next request.
    keyring = Keyring(store, audit, clock=clock, on_change=authenticator.forget)
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
        max_body_bytes=gw.config.listen.max_body_bytes,
    )
    return cast(Ingress, api).routes()


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
        await pii.warm()
        built.append(cast(Filter, pii))
    if cfg.moderation is not None:
        built.append(cast(Filter, load(FILTERS["moderation"])(cfg.moderation)))
    if cfg.injection is not None:
        built.append(cast(Filter, load(FILTERS["injection"])(action=cfg.injection.action)))
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
    moderation = config.filters.moderation
    unbuilt = [
        name
        for name, value in (
            ("filters.moderation.model", moderation is not None and moderation.model),
            ("filters.media", config.filters.media),
            ("mcp_servers", config.mcp_servers),
        )
        if value
    ]
    if unbuilt:
        raise ConfigError(f"{', '.join(unbuilt)}: not available in this build yet")


def build_app(
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    config_path: str | Path | None = None,
) -> Starlette:
    """The whole gateway as an ASGI app; the lifespan opens and closes every resource.

    With `config_path`, SIGHUP reloads that file's model routing (`core.config_reload`).

    Raises:
        ConfigError: the config asks for something this build cannot provide.
    """
    gw = build_gateway(config, clock=clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.store.open()
        await _trust_bootstrap_admin(gw)
        await _install_filters(gw, clock)
        await gw.models.open()
        await gw.governor.rules.open()
        await gw.http.open()
        try:
            async with anyio.create_task_group() as tg:
                gw.spans.start(tg)
                tg.start_soon(_prune_redactions, gw, clock)
                gw.governor.alerts.start(tg)
                if config_path is not None:
                    tg.start_soon(reload_on_sighup, config_path, config, gw.models)
                gw.ready = True
                try:
                    yield
                finally:
                    gw.ready = False
                    with anyio.CancelScope(shield=True):
                        await gw.spans.aclose()
                    tg.cancel_scope.cancel()  # the SIGHUP watcher runs until told to stop
        finally:
            with anyio.CancelScope(shield=True):
                for provider in gw.providers.values():
                    await provider.aclose()
                await gw.http.aclose()
                await gw.store.aclose()

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
    routes.extend(_admin_routes(gw))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestIdMiddleware)],
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
            return JSONResponse(body, status_code=503 if closed else 200)
        return JSONResponse({"status": "ready", "span_queue": gw.spans.depth})

    return readyz


def _metrics(gw: Gateway) -> Callable[[Request], Any]:
    async def metrics(request: Request) -> Response:
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    return metrics


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = {
        "error": {
            "message": exc.detail,
            "type": "invalid_request_error",
            "param": None,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


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
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
