"""What a limit or budget may say: the validated shapes shared by the config file, the admin API
and the CLI.

One set of models serves all three (as `core.keyspec` does for keys), so each refuses the same
input with the same words. They are strict: unknown fields and wrong types are errors, never
coerced. This module imports nothing from `core.governance`, because `core.config` uses it and
the governance engine imports the price catalog, which imports the config.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The vocabulary of limits and budgets, defined once: the engine (core.governance) imports it.
Level = Literal["key", "project", "team", "department", "organization", "customer", "app", "agent"]
Kind = Literal[
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "concurrent",
    "audio_seconds",
    "images",
    "video_seconds",
    "tool_calls",
]
Period = Literal["day", "month"]
BudgetAction = Literal["block", "alert-only"]

_WINDOW = re.compile(r"^(minute|hour|day|month|([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _window(value: str) -> str:
    if not _WINDOW.match(value) or (len(value) == 11 and value[:5] == value[6:]):
        raise ValueError("expected minute, hour, day, month or HH:MM-HH:MM (UTC, distinct ends)")
    return value


def _fractions(v: list[float]) -> list[float]:
    if any(not 0 < t <= 10 for t in v):
        raise ValueError("each threshold is a fraction of the budget in (0, 10]")
    return sorted(set(v))


class LimitSpec(_Strict):
    """A limit: `kind` counted per `window` at one `level`/`target`, optionally one model/tool;
    `alert-only` counts and alerts but never refuses (shadow mode)."""

    level: Level
    target: str = Field(min_length=1, max_length=256)
    kind: Kind
    amount: int = Field(ge=0)
    window: str = "minute"
    model: str | None = Field(None, min_length=1, max_length=256)
    tool: str | None = Field(None, min_length=1, max_length=256)
    action: BudgetAction = "block"

    @field_validator("window")
    @classmethod
    def _check_window(cls, v: str) -> str:
        return _window(v)


class BudgetSpec(_Strict):
    """A budget in USD per day or month, with alert thresholds and an action at the limit."""

    level: Level
    target: str = Field(min_length=1, max_length=256)
    amount_usd: float = Field(ge=0)
    period: Period = "month"
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    action: BudgetAction = "block"

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        return _fractions(v)


class LimitPatch(_Strict):
    """What PATCH may change on a limit (the level and target name what it is, so they stay)."""

    amount: int | None = Field(None, ge=0)
    window: str | None = None
    kind: Kind | None = None
    action: BudgetAction | None = None

    @field_validator("window")
    @classmethod
    def _check(cls, v: str | None) -> str | None:
        return None if v is None else _window(v)


class BudgetPatch(_Strict):
    """What PATCH may change on a budget."""

    amount_usd: float | None = Field(None, ge=0)
    period: Period | None = None
    thresholds: list[float] | None = None
    action: BudgetAction | None = None

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else _fractions(v)


class GovernanceSpec(_Strict):
    """`governance:` in the config: the fail policy, estimate defaults and the counter prefix."""

    fail: Literal["closed", "open"] = "closed"
    default_max_tokens: int | None = Field(None, gt=0)
    prefix: str = Field("agw:", min_length=1, max_length=64)


class RedisSpec(_Strict):
    """`redis:` in the config: a URL, or `{url, max_connections, timeout_ms}`."""

    url: str = Field(pattern=r"^rediss?://")
    max_connections: int = Field(64, gt=0)
    timeout_ms: int = Field(500, gt=0)
