"""Targets and routes: a virtual model's upstreams with their providers resolved.

These are the values every routing concern shares: the rules that narrow candidates
(`core.eligibility`), the strategies that order them (`core.strategies`), prefix affinity
(`core.affinity`) and the failover loop (`core.routing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config import Circuit, VirtualModel
from core.provider import Provider


@dataclass(frozen=True, slots=True)
class HourWindow:
    """The UTC hours a target serves: `22-06` is 22:00 to 06:00, wrapping past midnight.

    The start hour is included and the end hour excluded, so `9-17` serves 09:00 to 16:59.
    """

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> HourWindow:
        """Read `"H-H"` (hours 0..24).

        Raises:
            ValueError: not two hours, an hour out of range, or an empty window.
        """
        first, sep, second = text.partition("-")
        if not sep or not first.strip().isdigit() or not second.strip().isdigit():
            raise ValueError(f"expected hours as 'H-H' (UTC), such as '22-06', got {text!r}")
        start, end = int(first), int(second)
        if not 0 <= start <= 23 or not 0 <= end <= 24:
            raise ValueError(f"hours {text!r}: start must be 0..23 and end 0..24")
        if start == end % 24:
            raise ValueError(f"hours {text!r}: an empty window (write '0-24' for all day)")
        return cls(start, end)

    def contains(self, hour: int) -> bool:
        """Whether the window is open during `hour` (0..23, UTC)."""
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


@dataclass(frozen=True, slots=True)
class BoundTarget:
    """A target of a virtual model with its provider object resolved.

    `route` names the virtual model the target belongs to (a fallback model's targets keep their
    own). `cache_hit` marks the pseudo-target of a reply served from the response cache.
    """

    provider: Provider
    provider_name: str
    model: str
    network: str
    weight: float
    context_window: int | None
    route: str = ""
    hours: HourWindow | None = None
    supports: frozenset[str] = frozenset()
    tools: bool = True
    vision: bool = True
    timeout_seconds: float | None = None
    first_byte_timeout_seconds: float | None = None
    circuit: Circuit = field(default_factory=Circuit)
    cache_hit: bool = False
    # Request fields the provider's quirks remove before sending (see `core.config.Quirks`).
    drop_params: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """The upstream's identity for load, latency and circuit state: `provider/model`."""
        return f"{self.provider_name}/{self.model}"


@dataclass(frozen=True, slots=True)
class Route:
    """A virtual model ready to serve: its targets, fallbacks and failover policy."""

    name: str
    strategy: str
    targets: tuple[BoundTarget, ...]
    fallbacks: tuple[str, ...]
    default_max_tokens: int
    retries: int = 0
    backoff_base_seconds: float = 0.05
    backoff_max_seconds: float = 2.0
    affinity: str | None = None
    cache_ttl_seconds: float | None = None


def bind_route(
    vm: VirtualModel,
    providers: Mapping[str, Provider],
    networks: Mapping[str, str],
    dropped: Mapping[str, frozenset[str]] | None = None,
) -> Route:
    """A configured virtual model with its targets' providers resolved.

    `dropped` names, per provider, the request fields its quirks remove.

    Raises:
        KeyError: a target names a provider missing from `providers` or `networks`.
    """
    targets = tuple(
        BoundTarget(
            provider=providers[t.provider],
            provider_name=t.provider,
            model=t.model,
            network=networks[t.provider],
            weight=t.weight,
            context_window=t.context_window,
            route=vm.name,
            hours=HourWindow.parse(t.hours) if t.hours else None,
            supports=frozenset(t.supports),
            tools=t.tools,
            vision=t.vision,
            timeout_seconds=t.timeout_seconds,
            first_byte_timeout_seconds=t.first_byte_timeout_seconds,
            circuit=vm.circuit,
            drop_params=(dropped or {}).get(t.provider, frozenset()),
        )
        for t in vm.targets
    )
    return Route(
        name=vm.name,
        strategy=vm.strategy,
        targets=targets,
        fallbacks=tuple(vm.fallbacks),
        default_max_tokens=vm.default_max_tokens,
        retries=vm.retries,
        backoff_base_seconds=vm.backoff.base_ms / 1000,
        backoff_max_seconds=vm.backoff.max_ms / 1000,
        affinity=vm.affinity,
        cache_ttl_seconds=vm.cache.ttl_seconds if vm.cache else None,
    )
