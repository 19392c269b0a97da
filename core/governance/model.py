"""Limits, budgets and the levels they attach to.

A request sits under several levels at once: its key, the project, team and department its key's
`org_path` names, the organization, its customer, app and agent. Every limit and budget attached
to any of those levels applies; the store refuses the request if any one of them would overflow,
so the tightest decides.

Targets are spelled as the admin API shows them: a key by id, a department as `research`, a team as
`research/agents`, a project as `research/agents/triage`; an organization-level rule applies to
every request whatever its target says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.access import Principal
from core.envelope import Envelope, Modality
from core.governance.windows import Window
from core.rulespec import BudgetAction, Kind, Level, Period

TOKEN_KINDS: tuple[Kind, ...] = ("input_tokens", "output_tokens", "total_tokens")
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)
PER_MINUTE = Window("minute")
_PERIODS: dict[str, Window] = {"day": Window("day"), "month": Window("month")}


@dataclass(frozen=True, slots=True)
class Limit:
    """A cap on one kind of use per window at one level, optionally for one model or tool.

    `model` narrows the limit to one virtual model; `tool` to one MCP tool. A `concurrent` limit
    counts calls in flight and ignores its window. An `alert-only` limit (shadow mode, for
    rolling out a new limit safely) counts and alerts when it would have refused, never refuses.
    """

    level: Level
    target: str
    kind: Kind
    amount: int
    window: Window = PER_MINUTE
    model: str | None = None
    tool: str | None = None
    action: BudgetAction = "block"

    def describe(self) -> str:
        """How error messages name the limit: `requests per minute limit of key k1`."""
        per = "" if self.kind == "concurrent" else f" per {self.window.spec}"
        on = f" on {self.model or self.tool}" if (self.model or self.tool) else ""
        return f"{self.kind}{per} limit{on} of {self.level} {self.target}"


@dataclass(frozen=True, slots=True)
class Budget:
    """Money a level may spend per day or month (USD), with alert thresholds and an action."""

    level: Level
    target: str
    amount_usd: float
    period: Period = "month"
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    action: BudgetAction = "block"

    @property
    def window(self) -> Window:
        return _PERIODS.get(self.period) or Window(self.period)

    @property
    def amount_micros(self) -> int:
        """The budget in micro-dollars: money is counted in integers so sums stay exact."""
        return round(self.amount_usd * 1_000_000)

    def describe(self) -> str:
        return f"budget of {self.level} {self.target}"


@dataclass(frozen=True, slots=True)
class Alert:
    """A budget crossed one of its thresholds in the current window."""

    level: Level
    target: str
    threshold: float
    spent_usd: float
    budget_usd: float
    period: Period
    action: BudgetAction
    window: str = ""
    """The window's bucket name (its start): with the level and target, what dedupes the alert."""


@dataclass(frozen=True, slots=True)
class LimitAlert:
    """An `alert-only` limit would have refused a call in its current window."""

    level: Level
    target: str
    kind: Kind
    amount: int
    used: int
    window: str
    """The window's spelling (`minute`, `22:00-06:00`, …)."""
    bucket: str
    """The bucket's name (its start): with the rule, what dedupes the alert."""
    model: str | None = None
    tool: str | None = None


@dataclass(frozen=True, slots=True)
class CounterOutage:
    """The counter store could not be reached; the gate applied `policy` (closed: refused)."""

    policy: str
    minute: str
    """The minute it was seen in (its start): at most one alert a minute, across replicas."""


def levels_of(principal: Principal, env: Envelope) -> dict[Level, str]:
    """Each level the request sits under, with its target id (absent levels are left out)."""
    return with_agent(key_levels(principal), env)


def key_levels(principal: Principal) -> dict[Level, str]:
    """The levels a key sits under, whatever the call: all of `levels_of` but the agent."""
    levels: dict[Level, str] = {"key": principal.key_id, "organization": "*"}
    segments = [s for s in principal.org_path.split("/") if s]
    names: Sequence[Level] = ("department", "team", "project")
    for depth, level in enumerate(names):
        if depth < len(segments):
            levels[level] = "/".join(segments[: depth + 1])
    if principal.app:
        levels["app"] = principal.app
    if principal.customer:
        levels["customer"] = principal.customer
    return levels


def with_agent(levels: dict[Level, str], env: Envelope) -> dict[Level, str]:
    """`levels` (a key's) plus the call's agent, if it names one: a new dict then, else `levels`
    itself (never changed here)."""
    if env.trace is not None and env.trace.agent_id:
        return {**levels, "agent": env.trace.agent_id}
    return levels


def limit_applies(limit: Limit, levels: dict[Level, str], env: Envelope) -> bool:
    """Whether `limit` governs this request: its level and target match, and its model or tool."""
    if limit.level not in levels:
        return False
    if limit.level != "organization" and levels[limit.level] != limit.target:
        return False
    if limit.model is not None and limit.model != env.model:
        return False
    # A tool call reaches the gate with the tool's name in `env.model`.
    return limit.tool is None or (env.modality is Modality.TOOL and limit.tool == env.model)


def budget_applies(budget: Budget, levels: dict[Level, str]) -> bool:
    """Whether `budget` governs a request under `levels`."""
    if budget.level not in levels:
        return False
    return budget.level == "organization" or levels[budget.level] == budget.target
