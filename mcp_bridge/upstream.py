"""One upstream MCP server: its catalog connection, health, retries and per-caller sessions.

A supervisor task keeps a catalog connection open: it lists tools, resources and prompts
(following every cursor), then re-lists them every `health_interval_seconds` (the health probe,
which also notices a changed tool) or as soon as a call failed or the connection closed. A
failed connection is retried with exponential backoff while the other upstreams keep serving.

Calls never use the catalog connection: each downstream session gets its own upstream session,
so a stateful upstream never shares state between callers; a call with no downstream session (a
stateless 2026-07-28 caller without `x-session-id`) gets an upstream session of its own that
closes when the call ends. Sessions are bounded per upstream; the least recently used one is
closed to make room, and one unused for `session_idle_seconds` is closed at the next probe.

Requests an upstream sends back while it runs a call: an elicitation is relayed to the caller
when the call's `Downstream` can take it (a session-based caller that declared elicitation),
and answered with a clean error otherwise; sampling and roots requests are always answered with
a clean error. Either way the call ends within `call_timeout_seconds`, never hangs.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.session import ElicitationFnT, IncomingMessage, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client

from core.config import McpServer, McpSettings
from core.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from core.mcp import UpstreamHealth

logger = logging.getLogger("agentgw.mcp")

State = Literal["starting", "up", "down"]
CatalogHook = Callable[["Upstream", list[types.Tool]], Awaitable[None]]
T = TypeVar("T")
P = TypeVar("P", bound=types.PaginatedResult)  # a page of a listing
NO_ELICITATION = "The agent's MCP client cannot answer questions from this tool through agentgw."
NO_SAMPLING = "agentgw does not relay sampling requests from MCP servers."
REFUSED_QUESTION = "agentgw refused the question: "


class Downstream(Protocol):
    """The caller of one upstream call, as far as the upstream may ask it something."""

    async def elicit(
        self, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        """Ask the caller; an `ErrorData` when it cannot be asked or did not answer."""
        ...


@dataclass(slots=True)
class Catalog:
    """What an upstream offers, as last listed."""

    tools: dict[str, types.Tool] = field(default_factory=dict)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: dict[str, types.Prompt] = field(default_factory=dict)


class _Held:
    """One open upstream client, held by its own task until `close()`."""

    def __init__(self) -> None:
        self.client: Client | None = None
        # Whom the upstream may ask while a call runs (the latest call's caller).
        self.downstream: Downstream | None = None
        self.last_used = time.monotonic()
        self.scope = anyio.CancelScope()
        self.ready = anyio.Event()
        self.closing = anyio.Event()
        self.closed = anyio.Event()

    def close(self) -> None:
        self.closing.set()
        if self.client is None:
            self.scope.cancel()  # still connecting: stop trying


class Upstream:
    """One configured upstream server."""

    def __init__(self, cfg: McpServer, settings: McpSettings, on_catalog: CatalogHook) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.settings = settings
        self.state: State = "starting"
        self.error: str | None = None
        self.restarts = 0
        self.catalog = Catalog()
        self.first_attempt = anyio.Event()
        self._on_catalog = on_catalog
        self._wake = anyio.Event()
        self._tg: TaskGroup | None = None
        self._sessions: OrderedDict[str, _Held] = OrderedDict()
        self._opening = anyio.Lock()
        # One fresh session kept open for the next stateless call (opening one, a process for
        # stdio, is most of such a call's time); replaced in the background once taken.
        self._spare: _Held | None = None
        self._refilling = False

    # -- health -----------------------------------------------------------------------------

    def health(self) -> UpstreamHealth:
        return UpstreamHealth(
            self.name,
            self.cfg.transport,
            self.state,
            len(self.catalog.tools),
            self.error,
            self.restarts,
        )

    def wake(self) -> None:
        """Probe now (a call failed or a connection closed)."""
        self._wake.set()

    async def supervise(self, tg: TaskGroup) -> None:
        """Keep the catalog connection up, retrying with backoff; runs until cancelled."""
        self._tg = tg
        delay = self.settings.retry_initial_seconds
        while True:
            held: _Held | None = None
            try:
                held = await self._open()
                await self._refresh(held)
                self.first_attempt.set()
                delay = self.settings.retry_initial_seconds
                while True:
                    with anyio.move_on_after(self.settings.health_interval_seconds):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                    await self._refresh(held)
                    self._close_idle()
            except Exception as exc:
                self._down(exc)
            finally:
                if held is not None:
                    held.close()
                self.first_attempt.set()
            # Backoff between reconnection attempts of a down upstream (not a test wait).
            await anyio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_seconds)

    def _close_idle(self) -> None:
        cutoff = time.monotonic() - self.settings.session_idle_seconds
        if self._spare is not None and self._spare.last_used < cutoff:
            self._spare.close()  # an upstream may have expired it meanwhile
            self._spare = None
        for key, held in list(self._sessions.items()):
            if held.last_used < cutoff:
                del self._sessions[key]
                held.close()

    def _up(self) -> None:
        if self.state == "down":
            self.restarts += 1
            logger.info("mcp upstream %s is back", self.name)
        self.state, self.error = "up", None

    def _down(self, exc: Exception) -> None:
        if self.state != "down":
            logger.warning("mcp upstream %s is down: %s", self.name, _describe(exc))
        # Shown on /readyz: the kind of failure only, never a message that may name a path.
        self.state, self.error = "down", type(_first(exc)).__name__
        for key in list(self._sessions):
            self._sessions.pop(key).close()
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    async def _refresh(self, held: _Held) -> None:
        if held.closed.is_set() or held.client is None:
            raise ConnectionError("the connection closed")
        with anyio.fail_after(self.settings.call_timeout_seconds):
            catalog = await _list_all(held.client)
        # Served at once: a tool whose definition differs from its pin is withheld by comparing
        # digests, before the pin check below has recorded (audited, alerted) the change.
        self.catalog = catalog
        self._up()
        await self._on_catalog(self, list(catalog.tools.values()))

    # -- calls ------------------------------------------------------------------------------

    async def call_tool(
        self,
        session: str | None,
        tool: str,
        arguments: dict[str, Any],
        downstream: Downstream | None = None,
    ) -> types.CallToolResult:
        """Call `tool` in the upstream session of downstream `session` (None: a session of its
        own for this call only); the upstream may ask `downstream` for input meanwhile.

        Raises:
            UpstreamUnavailable: the upstream is down or its session could not be opened.
            UpstreamTimeout: no answer within `call_timeout_seconds`.
            UpstreamError: the upstream failed or refused the call.
        """

        async def call(client: Client) -> types.CallToolResult:
            return self._expected(await client.call_tool(tool, arguments), types.CallToolResult)

        return await self._in_session(session, call, downstream)

    async def read_resource(
        self, session: str | None, uri: str, downstream: Downstream | None = None
    ) -> types.ReadResourceResult:
        async def read(client: Client) -> types.ReadResourceResult:
            return self._expected(await client.read_resource(uri), types.ReadResourceResult)

        return await self._in_session(session, read, downstream)

    async def get_prompt(
        self,
        session: str | None,
        name: str,
        arguments: dict[str, str] | None,
        downstream: Downstream | None = None,
    ) -> types.GetPromptResult:
        async def get(client: Client) -> types.GetPromptResult:
            return self._expected(await client.get_prompt(name, arguments), types.GetPromptResult)

        return await self._in_session(session, get, downstream)

    def _expected(self, result: object, kind: type[T]) -> T:
        """`result` as the `kind` of result the request asks for.

        Raises:
            UpstreamError: the upstream answered with another kind of result.
        """
        if not isinstance(result, kind):
            raise UpstreamError(f"MCP server '{self.name}' answered with an unexpected result")
        return result

    async def _in_session(
        self,
        session: str | None,
        use: Callable[[Client], Awaitable[T]],
        downstream: Downstream | None,
    ) -> T:
        if self.state != "up":
            raise UpstreamUnavailable(f"MCP server '{self.name}' is unavailable")
        if session is None:
            held = await self._fresh()
            try:
                return await self._use(None, held, use, downstream)
            finally:
                held.close()
        return await self._use(session, await self._session(session), use, downstream)

    async def _use(
        self,
        session: str | None,
        held: _Held,
        use: Callable[[Client], Awaitable[T]],
        downstream: Downstream | None,
    ) -> T:
        assert held.client is not None
        held.downstream = downstream
        try:
            with anyio.fail_after(self.settings.call_timeout_seconds):
                return await use(held.client)
        except GatewayError:
            raise
        except TimeoutError as exc:
            self._drop(session, held)
            raise UpstreamTimeout(f"MCP server '{self.name}' did not answer in time") from exc
        except Exception as exc:
            logger.warning("mcp upstream %s call failed: %s", self.name, _describe(exc))
            error = getattr(exc, "error", None)
            code = getattr(error, "code", None)
            if code is None or code in _TRANSPORT_CODES:
                self._drop(session, held)
                raise UpstreamUnavailable(f"MCP server '{self.name}' failed to answer") from exc
            # A JSON-RPC error: the session itself is fine (and keeps its state).
            message = getattr(error, "message", None)
            if isinstance(message, str) and (
                message in (NO_ELICITATION, NO_SAMPLING) or message.startswith(REFUSED_QUESTION)
            ):
                # The upstream gave up on a question of its that we refused: say that.
                raise UpstreamError(f"MCP server '{self.name}': {message}") from exc
            raise UpstreamError(
                f"MCP server '{self.name}' refused the request (error {code})"
            ) from exc
        finally:
            if held.downstream is downstream:
                held.downstream = None

    async def _fresh(self) -> _Held:
        """A session no call used yet: the spare if it is still open, else a new one."""
        spare, self._spare = self._spare, None
        if self._tg is not None and not self._refilling:
            self._refilling = True
            self._tg.start_soon(self._refill)
        if spare is not None and not spare.closed.is_set():
            return spare
        if spare is not None:
            spare.close()
        return await self._connect_or_refuse()

    async def _refill(self) -> None:
        try:
            held = await self._open()
        except Exception:
            return  # the next stateless call opens its own (and reports the failure)
        finally:
            self._refilling = False
        if self._spare is None and self.state == "up":
            self._spare = held
        else:
            held.close()

    async def _connect_or_refuse(self) -> _Held:
        try:
            return await self._open()
        except Exception as exc:
            self.wake()
            raise UpstreamUnavailable(f"MCP server '{self.name}' is unavailable") from exc

    async def _session(self, session: str) -> _Held:
        async with self._opening:
            held = self._sessions.get(session)
            if held is not None and held.closed.is_set():
                # The upstream ended this session (and its state) by itself: say so once,
                # rather than carry on silently in a new, empty session.
                del self._sessions[session]
                raise UpstreamUnavailable(
                    f"MCP server '{self.name}' ended this session; call again to start a new one"
                )
            if held is not None:
                self._sessions.move_to_end(session)
                held.last_used = time.monotonic()
                return held
            held = await self._connect_or_refuse()
            self._sessions[session] = held
            while len(self._sessions) > self.settings.max_sessions_per_server:
                self._sessions.popitem(last=False)[1].close()
            return held

    def _drop(self, session: str | None, held: _Held) -> None:
        if session is not None and self._sessions.get(session) is held:
            del self._sessions[session]
        held.close()
        self.wake()

    # -- connections ------------------------------------------------------------------------

    async def _open(self) -> _Held:
        """Open a client in a task of its own (it must enter and exit in one task).

        Raises:
            ConnectionError: the upstream could not be reached or refused the handshake.
        """
        assert self._tg is not None, "supervise() runs first"
        held = _Held()
        self._tg.start_soon(self._hold, held)
        with anyio.move_on_after(self.settings.call_timeout_seconds):
            await held.ready.wait()
        if held.client is None:
            held.close()
            raise ConnectionError(f"cannot connect to MCP server '{self.name}'")
        return held

    async def _hold(self, held: _Held) -> None:
        try:
            with held.scope:
                async with self._connect(held) as client:
                    held.client = client
                    held.ready.set()
                    await held.closing.wait()
        except Exception as exc:
            logger.info("mcp upstream %s connection ended: %s", self.name, _describe(exc))
        finally:
            held.client = None
            held.ready.set()
            held.closed.set()
            if not held.closing.is_set():
                self.wake()

    def _connect(self, held: _Held) -> Any:
        async def elicit(
            context: ClientRequestContext, params: types.ElicitRequestParams
        ) -> types.ElicitResult | types.ErrorData:
            if held.downstream is None:
                return types.ErrorData(code=types.INVALID_REQUEST, message=NO_ELICITATION)
            return await held.downstream.elicit(params)

        return _client(self.cfg, self.settings, self._on_message, elicit)

    async def _on_message(self, message: IncomingMessage) -> None:
        # A server that announces a changed list is re-listed at once (pins are checked then).
        if isinstance(message, _LIST_CHANGED):
            self.wake()


# JSON-RPC errors that mean the connection, not the request, failed.
_TRANSPORT_CODES = (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT)
_LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
)


async def _no_sampling(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_REQUEST, message=NO_SAMPLING)


@asynccontextmanager
async def _client(
    cfg: McpServer, settings: McpSettings, on_message: MessageHandlerFnT, elicit: ElicitationFnT
) -> AsyncIterator[Client]:
    timeout = settings.call_timeout_seconds

    def sdk_client(server: Any) -> Client:
        # Explicit callbacks: every request an upstream sends back gets an answer of ours.
        return Client(
            server,
            mode=cfg.mode,
            cache=None,
            read_timeout_seconds=timeout,
            message_handler=on_message,
            elicitation_callback=elicit,
            sampling_callback=_no_sampling,
        )

    if cfg.transport == "stdio":
        assert cfg.command is not None
        params = StdioServerParameters(command=cfg.command, args=cfg.args, env=cfg.env or None)
        async with sdk_client(params) as client:
            yield client
        return
    assert cfg.url is not None
    async with (
        httpx2.AsyncClient(headers=cfg.headers, timeout=timeout) as http,
        sdk_client(streamable_http_client(cfg.url, http_client=http)) as client,
    ):
        yield client


async def _list_all(client: Client) -> Catalog:
    """Every tool, resource, template and prompt, following cursors."""
    catalog = Catalog()
    caps = client.server_capabilities
    tools = await _every_page(lambda cursor: client.list_tools(cursor=cursor))
    catalog.tools.update((t.name, t) for page in tools for t in page.tools)
    if caps.resources is not None:
        resources = await _every_page(lambda cursor: client.list_resources(cursor=cursor))
        catalog.resources += [r for page in resources for r in page.resources]
        templates = await _every_page(lambda cursor: client.list_resource_templates(cursor=cursor))
        catalog.templates += [t for page in templates for t in page.resource_templates]
    if caps.prompts is not None:
        prompts = await _every_page(lambda cursor: client.list_prompts(cursor=cursor))
        catalog.prompts.update((p.name, p) for page in prompts for p in page.prompts)
    return catalog


async def _every_page(fetch: Callable[[str | None], Awaitable[P]]) -> list[P]:
    """Every page of a listing, following `next_cursor` from the first page to the last."""
    pages = [await fetch(None)]
    while pages[-1].next_cursor:
        pages.append(await fetch(pages[-1].next_cursor))
    return pages


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """A short, log-safe description (the exception type and its first line)."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
