"""Governance: limits, budgets and the gate that enforces them on shared counters.

`GovernanceGate` implements `core.quota.QuotaGate`. Counters live behind `CounterStore`:
`MemoryCounters` here (one process), `store.redis_counters.RedisCounters` for replicas. This
package imports no store and no Redis; the app passes a store in.
"""

from __future__ import annotations

from core.governance.counters import (
    Admission,
    CounterAdjustment,
    CounterItem,
    CounterStore,
    CounterUnavailable,
    MemoryCounters,
)
from core.governance.gate import (
    AlertSink,
    FailPolicy,
    GateAlert,
    GovernanceGate,
    PriceFor,
)
from core.governance.headers import rate_limit_headers
from core.governance.model import Alert, Budget, CounterOutage, Limit, LimitAlert
from core.governance.plan import to_micros
from core.governance.windows import Bucket, Window
from core.rulespec import BudgetAction, Kind, Level, Period

__all__ = [
    "Admission",
    "Alert",
    "AlertSink",
    "Bucket",
    "Budget",
    "BudgetAction",
    "CounterAdjustment",
    "CounterItem",
    "CounterOutage",
    "CounterStore",
    "CounterUnavailable",
    "FailPolicy",
    "GateAlert",
    "GovernanceGate",
    "GovernanceUnavailable",
    "Kind",
    "Level",
    "Limit",
    "LimitAlert",
    "MemoryCounters",
    "Period",
    "PriceFor",
    "Window",
    "rate_limit_headers",
    "to_micros",
]
