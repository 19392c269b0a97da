"""The circuit-breaker state of every upstream target, as a gauge read at scrape time."""

from __future__ import annotations

import logging
import time

from prometheus_client import Gauge

from core.circuit import Phase
from core.routing import Router

logger = logging.getLogger("agentgw.metrics")
PHASE_VALUES = {Phase.CLOSED: 0.0, Phase.HALF_OPEN: 1.0, Phase.OPEN: 2.0}


async def refresh_circuit_gauge(gauge: Gauge, router: Router) -> None:
    """Set `gauge{target="provider/model"}` for every target of every virtual model.

    The router's circuit clock is the monotonic clock (its default in a running gateway).
    """
    now = time.monotonic()
    for name in router.names:
        for target in router.route(name).targets:
            try:
                state = await router.circuits.get(target.key)
            except Exception:  # a shared circuit store that is down must not fail the scrape
                logger.warning("circuit state of %s unavailable for /metrics", target.key)
                return
            gauge.labels(target.key).set(PHASE_VALUES[state.phase(target.circuit, now)])
