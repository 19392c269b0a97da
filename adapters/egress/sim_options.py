"""Options of the simulated model and the seeded fault injector both of its faces share.

`SimOptions` is built from the `sim:` mapping of a `type: sim` provider in the config, or from the
`agentgw sim` command line. Every field is validated at construction, so a bad option fails at
start with its name and what was expected.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

MAX_REPLY_WORDS = 100_000


def _is_number(value: object) -> bool:
    # bool is an int subclass; `latency_ms: true` in YAML is a mistake, not 1 ms.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """How the simulated model behaves: latency, faults and reply shape.

    Attributes:
        latency_ms: delay before any reply (and before the stream's headers), every request.
        ttft_ms: further delay before the first token: the first stream chunk, or the whole reply.
        chunk_delay_ms: delay between two stream chunks.
        fail_rate: probability (0..1) that a request fails with `fail_status`.
        fail_status: the HTTP status of an injected failure (400..599).
        seed: seed of the fault RNG, so a run of requests fails the same way every time.
        drop_after_chunks: end a stream abruptly after this many chunks (None: never).
        reply_words: reply with exactly this many deterministic words instead of the echo.
        cached_fraction: the share (0..1) of prompt tokens reported as cached.
        hold_after_chunks: over HTTP, pause every stream after this many chunks until
            `POST /_sim/release` (lets a test prove chunks reach a client mid-stream).
    """

    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 500
    seed: int = 0
    drop_after_chunks: int | None = None
    reply_words: int | None = None
    cached_fraction: float = 0.0
    hold_after_chunks: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "ttft_ms", "chunk_delay_ms"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"sim option {name}: expected a number >= 0, got {value!r}")
        for name in ("fail_rate", "cached_fraction"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"sim option {name}: expected a number in 0..1, got {value!r}")
        if not _is_int(self.fail_status) or not 400 <= self.fail_status <= 599:
            raise ValueError(
                "sim option fail_status: expected an HTTP status 400..599, "
                f"got {self.fail_status!r}"
            )
        if not _is_int(self.seed):
            raise ValueError(f"sim option seed: expected an integer, got {self.seed!r}")
        if self.drop_after_chunks is not None and (
            not _is_int(self.drop_after_chunks) or self.drop_after_chunks < 0
        ):
            raise ValueError(
                "sim option drop_after_chunks: expected an integer >= 0, "
                f"got {self.drop_after_chunks!r}"
            )
        if self.hold_after_chunks is not None and (
            not _is_int(self.hold_after_chunks) or self.hold_after_chunks < 1
        ):
            raise ValueError(
                "sim option hold_after_chunks: expected an integer >= 1, "
                f"got {self.hold_after_chunks!r}"
            )
        if self.reply_words is not None and (
            not _is_int(self.reply_words) or not 1 <= self.reply_words <= MAX_REPLY_WORDS
        ):
            raise ValueError(
                f"sim option reply_words: expected an integer 1..{MAX_REPLY_WORDS}, "
                f"got {self.reply_words!r}"
            )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SimOptions:
        """Build options from a config mapping (the provider's `sim:` key).

        Raises:
            ValueError: an unknown key (all of them are named) or a value out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            expected = ", ".join(sorted(known))
            raise ValueError(f"unknown sim option(s): {', '.join(unknown)} (expected: {expected})")
        return cls(**dict(raw))

    @classmethod
    def from_cli(
        cls,
        *,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        chunk_delay_ms: float | None = None,
        fail_rate: float | None = None,
        fail_status: int | None = None,
        seed: int | None = None,
        drop_after_chunks: int | None = None,
        reply_words: int | None = None,
        cached_fraction: float | None = None,
    ) -> SimOptions:
        """Build options from command-line flags; a flag left as None keeps its default.

        Raises:
            ValueError: a value out of range.
        """
        given = {
            "latency_ms": latency_ms,
            "ttft_ms": ttft_ms,
            "chunk_delay_ms": chunk_delay_ms,
            "fail_rate": fail_rate,
            "fail_status": fail_status,
            "seed": seed,
            "drop_after_chunks": drop_after_chunks,
            "reply_words": reply_words,
            "cached_fraction": cached_fraction,
        }
        return cls.from_mapping({k: v for k, v in given.items() if v is not None})


class FaultInjector:
    """Decides request by request whether the sim fails.

    The RNG is seeded from the options and owned by one provider or one server, so the same
    sequence of requests fails the same way on every run.
    """

    def __init__(self, options: SimOptions) -> None:
        self._rate = options.fail_rate
        self._rng = random.Random(options.seed)

    def should_fail(self) -> bool:
        """Whether the next request fails."""
        if self._rate <= 0:
            return False
        return self._rng.random() < self._rate
