"""`agentgw serve` reloads its config file on SIGHUP: model routing changes without a restart.

A reload reads and validates the whole file again. A file that does not load leaves the gateway
running on what it had, and the log says why, naming the key. Providers (and their prices) are
built once at start, so a reload takes only the `models:` section; a model whose targets name a
provider this process was not started with keeps its old routing until a restart, and the log
says so. Each changed model is recorded as a new version (see `core.model_registry`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Collection
from pathlib import Path

import anyio

from core.config import Config, ConfigError, VirtualModel, load_config
from core.errors import Conflict, ValidationFailed
from core.model_registry import ModelRegistry

logger = logging.getLogger("agentgw.reload")

RELOADED = "config reloaded"
FAILED = "config reload failed"


async def reload_on_sighup(path: str | Path, running: Config, models: ModelRegistry) -> None:
    """Reload `path` on every SIGHUP until cancelled (the lifespan's task group ends)."""
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            await reload_config(path, running, models)


async def reload_config(path: str | Path, running: Config, models: ModelRegistry) -> bool:
    """Apply the file's models to `models`; False (logged) when the file cannot be used."""
    try:
        fresh = load_config(path)
    except ConfigError as exc:
        logger.error("%s: %s", FAILED, exc)
        return False
    known = {p.name for p in running.providers}
    if {p.name for p in fresh.providers} != known or fresh.prices != running.prices:
        logger.warning(
            "config reload: providers or prices changed; they take effect only after a restart"
        )
    servable = _servable(fresh.models, known, models)
    try:
        changed = await models.reload(servable)
    except (ValidationFailed, Conflict) as exc:
        logger.error("%s: models: %s", FAILED, exc.message)
        return False
    logger.info("%s: %d model(s) changed%s", RELOADED, len(changed), _names(changed))
    return True


def _servable(
    fresh: list[VirtualModel], providers: Collection[str], models: ModelRegistry
) -> list[VirtualModel]:
    kept: list[VirtualModel] = []
    for vm in fresh:
        unknown = sorted({t.provider for t in vm.targets} - set(providers))
        if not unknown:
            kept.append(vm)
            continue
        old = models.routing(vm.name)
        logger.warning(
            "config reload: models.%s names provider(s) %s this process was not started with; "
            "%s until a restart",
            vm.name,
            ", ".join(unknown),
            "keeping its old routing" if old is not None else "not serving it",
        )
        if old is not None:
            kept.append(old)
    return kept


def _names(changed: list[str]) -> str:
    return f" ({', '.join(changed)})" if changed else ""
