"""The web console at `/console`: sign in with an admin, finance or security key.

Sign-in posts the key once; the reply sets an opaque session cookie (HttpOnly, SameSite=Strict,
path `/console`, Secure over HTTPS). Every state change (sign-in, sign-out) is a POST whose Origin,
when the browser sends one, must be this site, and sign-out also carries the session's CSRF token.
Every page is a GET that changes nothing. Each role sees only its pages: a page its role may not
open answers 403, and the navigation does not offer it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.admin.console import pages
from adapters.admin.console.html import e, page
from adapters.admin.console.sessions import (
    CONSOLE_ROLES,
    COOKIE,
    ConsoleSession,
    ConsoleSessions,
)
from core.access import Authenticator
from core.alerting import AlertFeed
from core.audit import Actor, AuditLog
from core.errors import GatewayError
from core.export import to_csv
from core.ops.reconciliation import ReconciliationStore
from core.ops.sessions import ConsoleSessionStore
from core.redaction import RedactionStore
from core.reports import UsageStore
from core.roles import GRANTS, Permission
from core.rulebook import RuleBook
from core.state import KeyRegistry

logger = logging.getLogger("agentgw.console")

MAX_FORM_BYTES = 4096
MAX_EXPORT_BYTES = 2 * 1024 * 1024
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
PageFn = Callable[[pages.Sources, Mapping[str, str]], Awaitable[pages.Page]]


@dataclass(frozen=True)
class ConsolePage:
    """A page, its navigation label, and the permissions any one of which opens it."""

    path: str
    label: str
    render: PageFn
    needs: frozenset[Permission]

    def allowed(self, role: str) -> bool:
        return bool(self.needs & GRANTS.get(role, frozenset()))


class Console:
    """The console's routes."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        keys: KeyRegistry,
        usage: UsageStore,
        redactions: RedactionStore,
        audit: AuditLog,
        rules: RuleBook | None = None,
        alerts: AlertFeed | None = None,
        clock: Callable[[], float] = time.time,
        imports: ReconciliationStore | None = None,
        sessions: ConsoleSessionStore | None = None,
    ) -> None:
        self._auth, self._keys, self._clock = authenticator, keys, clock
        # Every store backend keeps console sessions next to the keys.
        self._sessions = ConsoleSessions(sessions or cast(ConsoleSessionStore, keys))
        self._src = pages.Sources(usage, redactions, audit, rules, alerts, clock, imports)
        spend, audit_read = frozenset({Permission.SPEND_READ}), frozenset({Permission.AUDIT_READ})
        self.pages = [
            ConsolePage("/console/spend", "Spend", pages.spend, spend),
            ConsolePage("/console/explorer", "Explorer", self._explorer, spend),
            ConsolePage(
                "/console/budgets",
                "Budgets & alerts",
                pages.budgets,
                frozenset({Permission.GOVERNANCE_READ}),
            ),
            ConsolePage("/console/reconcile", "Reconcile", pages.reconcile_page, spend),
            ConsolePage("/console/sessions", "Call chains", pages.sessions, spend | audit_read),
            ConsolePage(
                "/console/redactions",
                "Redaction log",
                pages.redactions,
                frozenset({Permission.REDACTIONS_READ}),
            ),
            ConsolePage("/console/audit", "Keys & audit", pages.audit, audit_read),
        ]

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/console", self._home, methods=["GET"]),
            Route("/console/login", self._login_form, methods=["GET"]),
            Route("/console/login", self._login, methods=["POST"]),
            Route("/console/logout", self._logout, methods=["POST"]),
            Route("/console/explorer.csv", self._explorer_csv, methods=["GET"]),
            Route("/console/reconcile", self._reconcile, methods=["POST"]),
        ]
        routes += [Route(p.path, self._serve(p), methods=["GET"]) for p in self.pages]
        return routes

    # -- signing in and out ----------------------------------------------------------------

    async def _login_form(self, request: Request) -> Response:
        return self._login_page()

    def _login_page(self, message: str = "", status: int = 200) -> Response:
        note = f'<p class="bad">{e(message)}</p>' if message else ""
        body = (
            f'{note}<form method="post" action="/console/login" class="card">'
            '<label>Admin, finance or security key<br><input type="password" name="key" '
            'autocomplete="off" size="60" required></label> <button>Sign in</button></form>'
        )
        return _html(page("Sign in", body), status)

    async def _login(self, request: Request) -> Response:
        if not _same_origin(request):
            return self._login_page("Sign-in must come from this site.", 403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("", "application/x-www-form-urlencoded"):
            return self._login_page("Sign in with the form (a URL-encoded form body).", 415)
        form = await _form(request)
        if form is None:
            return self._login_page("The sign-in form was too large.", 413)
        client = request.client.host if request.client else None
        try:
            principal = await self._auth.authenticate(form.get("key") or None, client=client)
        except GatewayError as exc:  # wrong, revoked or throttled: the same answer as the API
            return self._login_page(exc.message, exc.status)
        if principal.role not in CONSOLE_ROLES:
            return self._login_page("Only admin, finance and security keys may sign in.", 403)
        actor = Actor.of(principal, client)
        token = await self._sessions.start(actor, self._clock())
        logger.info("console sign-in by key %s (%s)", actor.id, actor.role)
        reply = RedirectResponse(self._landing(actor.role), status_code=303)
        reply.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            path="/console",
            secure=request.url.scheme == "https",
        )
        return _secured(reply)

    async def _logout(self, request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        session = await self._sessions.find(token, self._clock())
        form = await _form(request)
        if session is None or form is None or not _same_origin(request):
            return _html(page("Forbidden", "<p>Not signed in.</p>"), 403)
        if not session.csrf_ok(form.get("csrf")):
            return _html(page("Forbidden", "<p>The form is stale; sign out again.</p>"), 403)
        await self._sessions.end(token)
        reply = RedirectResponse("/console/login", status_code=303)
        reply.delete_cookie(COOKIE, path="/console")
        return _secured(reply)

    # -- pages -----------------------------------------------------------------------------

    async def _home(self, request: Request) -> Response:
        session = await self._session(request)
        target = "/console/login" if session is None else self._landing(session.actor.role)
        return _secured(RedirectResponse(target, status_code=303))

    def _landing(self, role: str) -> str:
        return next((p.path for p in self.pages if p.allowed(role)), "/console/login")

    def _serve(self, console_page: ConsolePage) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                return _secured(RedirectResponse("/console/login", status_code=303))
            role = session.actor.role
            if not console_page.allowed(role):
                body = f"<p>The {e(role)} role may not open this page.</p>"
                return self._framed(session, "Forbidden", body, "", 403)
            try:
                # `_csrf` is the session's token for the page's own forms (never from the URL).
                query = {**request.query_params, "_csrf": session.csrf}
                title, body = await console_page.render(self._src, query)
            except GatewayError as exc:
                return self._framed(
                    session,
                    "Error",
                    f'<p class="bad">{e(exc.message)}</p>',
                    console_page.path,
                    exc.status,
                )
            return self._framed(session, title, body, console_page.path)

        return serve

    async def _reconcile(self, request: Request) -> Response:
        session = await self._session(request)
        page_ = next(p for p in self.pages if p.path == "/console/reconcile")
        if session is None or not page_.allowed(session.actor.role):
            return _html(page("Forbidden", "<p>Sign in with a finance or admin key.</p>"), 403)
        form = await _form(request, MAX_EXPORT_BYTES)
        if form is None:
            return self._framed(session, "Too large", "<p>The export is over 2 MiB.</p>", "", 413)
        if not _same_origin(request) or not session.csrf_ok(form.get("csrf")):
            return self._framed(session, "Forbidden", "<p>The form is stale.</p>", "", 403)
        try:
            filled = {**form, "_csrf": session.csrf}
            title, body = await pages.reconcile_result(self._src, filled, session.actor.id)
        except GatewayError as exc:
            form_again = await pages.reconcile_page(self._src, {**form, "_csrf": session.csrf})
            body = f'<p class="bad">{e(exc.message)}</p>' + form_again[1]
            return self._framed(session, "Reconciliation", body, page_.path, exc.status)
        return self._framed(session, title, body, page_.path)

    async def _explorer(self, src: pages.Sources, q: Mapping[str, str]) -> pages.Page:
        result, _ = await pages.explorer(src, q)
        return result

    async def _explorer_csv(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None or not self.pages[1].allowed(session.actor.role):
            return _html(page("Forbidden", "<p>Sign in with a finance or admin key.</p>"), 403)
        try:
            rows, columns = await pages.explorer_csv(self._src, dict(request.query_params))
        except GatewayError as exc:
            return _html(page("Error", f"<p>{e(exc.message)}</p>"), exc.status)
        disposition = {"content-disposition": "attachment; filename=spend.csv"}
        reply = Response(to_csv(rows, columns), media_type="text/csv", headers=disposition)
        return _secured(reply)

    def _framed(
        self, session: ConsoleSession, title: str, body: str, current: str, status: int = 200
    ) -> Response:
        role = session.actor.role
        nav = [(p.path, p.label) for p in self.pages if p.allowed(role)]
        who = f"{session.actor.id} ({role})"
        return _html(
            page(title, body, nav=nav, current=current, who=who, csrf=session.csrf), status
        )

    async def _session(self, request: Request) -> ConsoleSession | None:
        token = request.cookies.get(COOKIE)
        now = self._clock()
        session = await self._sessions.find(token, now)
        if session is None:
            return None
        # A key revoked or expired since sign-in ends its console session at once.
        record = await self._keys.get_key(session.actor.id)
        if record is not None and not record.usable_at(now):
            await self._sessions.end(token)
            return None
        return session


def _html(text: str, status: int = 200) -> Response:
    return _secured(HTMLResponse(text, status_code=status))


def _secured(reply: Response) -> Response:
    reply.headers.update(SECURITY_HEADERS)
    return reply


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site (login CSRF).

    Fetch metadata first (every current browser sends it), then Origin; a client that sends
    neither is not a browser, and a browser's cookie is SameSite=Strict anyway.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


async def _form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str] | None:
    """A URL-encoded form (first value of each field), or None when it is over the limit."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    fields = parse_qs(b"".join(chunks).decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}
