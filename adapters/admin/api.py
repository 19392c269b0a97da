"""The admin REST API under `/admin/`: keys, organization, audit, model routing, and its OpenAPI
document.

Every request is authenticated like a data-plane one (the same Authenticator, so the same key
cache, IP allowlist and brute-force policy), but must carry an admin-role key; a data-plane key
(role `user`) is refused here just as an admin-role key is refused on `/v1/*`. Authentication
comes before the body is read. Nothing is written unless the whole request is valid.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.admin.audit import audit_endpoints
from adapters.admin.governance import governance_endpoints
from adapters.admin.http import (
    AdminCall,
    Endpoint,
    Reply,
    check_query,
    error_response,
    read_json_body,
    render,
)
from adapters.admin.keys import key_endpoints
from adapters.admin.mcp import mcp_endpoints
from adapters.admin.models import model_endpoints
from adapters.admin.openapi import openapi_document
from adapters.admin.orgs import org_endpoints
from adapters.admin.reconciliations import reconciliation_endpoints
from adapters.admin.redactions import redaction_endpoints
from adapters.admin.reports import report_endpoints
from adapters.admin.schemas import WhoAmI
from adapters.admin.sessions import session_endpoints
from core.access import DATA_PLANE_ROLE, Authenticator, bearer_secret
from core.alerting import AlertFeed
from core.audit import Actor, AuditLog
from core.directory import Directory
from core.errors import GatewayError, Internal, PermissionDenied
from core.keyring import Keyring
from core.mcp import McpControl
from core.metering import PriceCatalog
from core.model_registry import ModelRegistry
from core.ops.prices import PriceBook
from core.ops.reconciliation import ReconciliationStore
from core.redaction import RedactionStore
from core.reports import UsageStore
from core.roles import GRANTS, require
from core.rulebook import RuleBook

logger = logging.getLogger("agentgw.admin")

DEFAULT_MAX_BODY = 1024 * 1024


class AdminAPI:
    """The admin API's routes, built from its endpoint declarations."""

    def __init__(
        self,
        *,
        keyring: Keyring,
        directory: Directory,
        audit: AuditLog,
        authenticator: Authenticator,
        models: ModelRegistry,
        rules: RuleBook | None = None,
        alerts: AlertFeed | None = None,
        redactions: RedactionStore | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        usage: UsageStore | None = None,
        prices: PriceCatalog | None = None,
        mcp: McpControl | None = None,
        price_book: PriceBook | None = None,
    ) -> None:
        self._auth = authenticator
        self._max_body = min(max_body_bytes, DEFAULT_MAX_BODY)
        self.endpoints: list[Endpoint] = [
            Endpoint("GET", "/admin/whoami", self._whoami, "The calling key's role and reach.",
                     "any admin-API role", response=WhoAmI, tags=("keys",)),
            *key_endpoints(keyring),
            *org_endpoints(directory),
            *audit_endpoints(audit),
            *model_endpoints(models),
        ]  # fmt: skip
        if rules is not None and alerts is not None:
            self.endpoints += governance_endpoints(rules, alerts)
        if redactions is not None:
            self.endpoints += redaction_endpoints(redactions)
        if usage is not None:
            self.endpoints += report_endpoints(usage, rules=rules, prices=prices, book=price_book)
            self.endpoints += session_endpoints(usage)
            imports = cast(ReconciliationStore, usage)  # every store backend keeps both
            self.endpoints += reconciliation_endpoints(usage, imports)
        if mcp is not None:
            self.endpoints += mcp_endpoints(mcp)
        self._document = openapi_document(self.endpoints, version=_version())

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/admin/openapi.json", self._openapi, methods=["GET"]),
        ]
        for endpoint in self.endpoints:
            routes.append(Route(endpoint.path, self._serve(endpoint), methods=[endpoint.method]))
        return routes

    async def _openapi(self, request: Request) -> Response:
        return JSONResponse(self._document)

    def _serve(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            try:
                actor = await self._actor(request)
                query = dict(request.query_params)
                check_query(query, endpoint)
                if endpoint.permission is not None:
                    require(actor, endpoint.permission)
                body = None
                if endpoint.read_body is not None:
                    body = await endpoint.read_body(request, self._max_body)
                elif endpoint.body is not None:
                    body = await read_json_body(request, endpoint.body, self._max_body)
                call = AdminCall(actor, dict(request.path_params), query, body)
                return render(await endpoint.handler(call), query)
            except GatewayError as exc:
                return error_response(exc)
            except Exception:  # the outermost boundary: a bug still answers in our shape
                logger.exception("admin %s %s failed", endpoint.method, endpoint.path)
                return error_response(Internal("The gateway failed to handle this request."))

        return serve

    async def _actor(self, request: Request) -> Actor:
        client = request.client.host if request.client else None
        principal = await self._auth.authenticate(bearer_secret(request.headers), client=client)
        if principal.role == DATA_PLANE_ROLE:
            raise PermissionDenied(
                "A data-plane key (role 'user') cannot use the admin API; use an admin-role key."
            )
        return Actor.of(principal, client)

    async def _whoami(self, call: AdminCall) -> Reply:
        granted = sorted(str(p) for p in GRANTS.get(call.actor.role, frozenset()))
        return Reply(
            {
                "key_id": call.actor.id,
                "role": call.actor.role,
                "org_path": call.actor.org_path,
                "permissions": granted,
            }
        )


def _version() -> str:
    try:
        return version("agentgw")
    except PackageNotFoundError:
        return "0"
