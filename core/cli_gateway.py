"""The running gateway's admin API, as the CLI calls it for what only that process holds.

Without `redis:`, limit and budget counters live inside the gateway process, so the CLI cannot
read or reset them from the store: it asks the gateway, at `--gateway` (default: the config's
`listen` address), with the config's admin key (`AGENTGW_ADMIN_KEY`). The gateway authenticates
and audits the call like any admin-API call.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.config import Config

_ANY_ADDRESS = ("0.0.0.0", "::", "")


class GatewayCallFailed(Exception):
    """The gateway could not be asked, or refused; the message says which and why."""


def gateway_url(config: Config, gateway: str | None) -> str:
    """`gateway`, or the config's listen address (a wildcard address reached on loopback)."""
    if gateway:
        return gateway.rstrip("/")
    host = config.listen.host
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    return f"http://{host}:{config.listen.port}"


def call_gateway(config: Config, gateway: str | None, method: str, path: str) -> Any:
    """The JSON answer of the gateway's admin API to `method path`.

    Raises:
        GatewayCallFailed: no admin key is configured, no gateway answered, or it refused
            (with its own error message).
    """
    if not config.admin_key:
        raise GatewayCallFailed(
            "without redis: the running gateway holds the counters; set AGENTGW_ADMIN_KEY "
            "(or admin_key:) so the CLI can ask it"
        )
    base = gateway_url(config, gateway)
    headers = {"authorization": f"Bearer {config.admin_key}"}
    try:
        reply = httpx.request(method, base + path, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise GatewayCallFailed(
            f"no gateway answered at {base} ({type(exc).__name__}); without redis: the "
            "counters live in the running gateway"
        ) from exc
    try:
        answer: Any = reply.json()
    except ValueError:
        answer = None
    if reply.status_code != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise GatewayCallFailed(message or f"the gateway at {base} answered {reply.status_code}")
    return answer
