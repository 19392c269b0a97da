"""The rule book: every limit and budget in force, from the config file and the admin API.

Both sources apply at once: config rules (ids `config-limit-N` / `config-budget-N`) are fixed by
the file and refused for change here; admin rules are stored as one audited setting
(`governance.rules`, JSON) and changed with optimistic concurrency, so two admins cannot lose each
other's edit. Every change is handed to the gate at once (`GovernanceGate.replace_rules`). Other
replicas re-read the rules when a change is announced (`core.bus`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from core.audit import Actor, AuditLog, Insert, Setting, Update
from core.errors import Conflict, NotFound
from core.governance import Budget, GovernanceGate, Limit, Window
from core.roles import Permission, require
from core.rulespec import BudgetPatch, BudgetSpec, LimitPatch, LimitSpec
from core.state import AlreadyExists, Stale, Store

SETTING = "governance.rules"
RuleKind = Literal["limits", "budgets"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A limit or budget with its id and where it came from."""

    id: str
    source: Literal["config", "admin"]
    spec: LimitSpec | BudgetSpec


def to_limit(spec: LimitSpec) -> Limit:
    return Limit(spec.level, spec.target, spec.kind, spec.amount, Window.parse(spec.window),
                 spec.model, spec.tool, spec.action)  # fmt: skip


def to_budget(spec: BudgetSpec) -> Budget:
    return Budget(spec.level, spec.target, spec.amount_usd, spec.period, tuple(spec.thresholds),
                  spec.action)  # fmt: skip


class RuleBook:
    """Config and admin rules, applied live to the gate; admin changes are audited."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        gate: GovernanceGate,
        limits: list[LimitSpec],
        budgets: list[BudgetSpec],
        *,
        clock: Callable[[], float],
    ) -> None:
        self._store, self._audit, self.gate, self._clock = store, audit, gate, clock
        self._fixed: dict[str, Rule] = {}
        for i, lspec in enumerate(limits):
            self._fixed[f"config-limit-{i}"] = Rule(f"config-limit-{i}", "config", lspec)
        for i, bspec in enumerate(budgets):
            self._fixed[f"config-budget-{i}"] = Rule(f"config-budget-{i}", "config", bspec)
        self._stored: Setting | None = None
        self._admin: dict[str, Rule] = {}
        # Called after each admin change made here (the app announces it to other replicas,
        # which call `open` to re-read the rules).
        self.on_change: Callable[[], None] = lambda: None
        self._apply()

    async def open(self) -> None:
        """Load the admin rules from the store and apply them."""
        raw = await self._store.get_setting(SETTING)
        self._stored = None if raw is None else Setting(SETTING, raw)
        self._admin = _decode(raw)
        self._apply()

    def rules(self, kind: RuleKind) -> list[Rule]:
        every = [*self._fixed.values(), *self._admin.values()]
        want = LimitSpec if kind == "limits" else BudgetSpec
        return [r for r in every if isinstance(r.spec, want)]

    def get(self, kind: RuleKind, rule_id: str) -> Rule:
        """Raises: NotFound: no rule of `kind` has this id."""
        for rule in self.rules(kind):
            if rule.id == rule_id:
                return rule
        raise NotFound(f"No {kind[:-1]} with id '{rule_id}'.")

    async def usage(self, rule: Rule) -> int:
        """Current-window use (micro-dollars for budgets). Raises: CounterUnavailable."""
        return await self.gate.used(_engine(rule.spec))

    async def create(self, actor: Actor, spec: LimitSpec | BudgetSpec) -> Rule:
        """Raises: PermissionDenied, Conflict."""
        require(actor, Permission.GOVERNANCE_WRITE)
        prefix = "lim_" if isinstance(spec, LimitSpec) else "bud_"
        rule = Rule(prefix + secrets.token_hex(6), "admin", spec)
        await self._save(actor, "create", rule, None, rule)
        return rule

    async def update(
        self, actor: Actor, kind: RuleKind, rule_id: str, patch: LimitPatch | BudgetPatch
    ) -> Rule:
        """Raises: PermissionDenied, NotFound, Conflict."""
        require(actor, Permission.GOVERNANCE_WRITE)
        before = self._editable(kind, rule_id)
        changed = before.spec.model_copy(update=patch.model_dump(exclude_none=True))
        after = Rule(rule_id, "admin", type(before.spec).model_validate(changed.model_dump()))
        await self._save(actor, "update", after, before, after)
        return after

    async def delete(self, actor: Actor, kind: RuleKind, rule_id: str) -> Rule:
        """Raises: PermissionDenied, NotFound, Conflict."""
        require(actor, Permission.GOVERNANCE_WRITE)
        before = self._editable(kind, rule_id)
        await self._save(actor, "delete", before, before, None)
        return before

    async def reset(self, actor: Actor, kind: RuleKind, rule_id: str) -> Rule:
        """Zero the rule's current-window count (audited). Raises: CounterUnavailable."""
        require(actor, Permission.GOVERNANCE_WRITE)
        rule = self.get(kind, rule_id)
        used = await self.gate.reset(_engine(rule.spec))
        await self._audit.record(actor, f"{kind[:-1]}.reset", f"{kind[:-1]}:{rule_id}",
                                 before={"used": used}, after={"used": 0})  # fmt: skip
        return rule

    def _editable(self, kind: RuleKind, rule_id: str) -> Rule:
        rule = self.get(kind, rule_id)
        if rule.source == "config":
            raise Conflict(f"'{rule_id}' is set in the config file; change it there.")
        return rule

    async def _save(self, actor: Actor, verb: str, rule: Rule, before: Rule | None,
                    after: Rule | None) -> None:  # fmt: skip
        admin = dict(self._admin)
        if after is None:
            admin.pop(rule.id, None)
        else:
            admin[rule.id] = after
        # updated_at stays 0: `open` reads back only the value, and the next update must match it
        # exactly (the audit event carries the time).
        new = Setting(SETTING, _encode(admin))
        change = Insert(new) if self._stored is None else Update(self._stored, new)
        noun = "limit" if isinstance(rule.spec, LimitSpec) else "budget"
        try:
            await self._audit.record(actor, f"{noun}.{verb}", f"{noun}:{rule.id}",
                                     before=_view(before), after=_view(after),
                                     changes=[change])  # fmt: skip
        except (AlreadyExists, Stale) as exc:
            await self.open()  # someone else changed the rules: show them what is stored now
            raise Conflict("The rules changed meanwhile; read them again and retry.") from exc
        self._stored, self._admin = new, admin
        self._apply()
        self.on_change()

    def _apply(self) -> None:
        every = [*self._fixed.values(), *self._admin.values()]
        self.gate.replace_rules(
            [to_limit(r.spec) for r in every if isinstance(r.spec, LimitSpec)],
            [to_budget(r.spec) for r in every if isinstance(r.spec, BudgetSpec)],
        )


def rule_view(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "source": rule.source, **rule.spec.model_dump()}


def _view(rule: Rule | None) -> dict[str, Any] | None:
    return None if rule is None else rule_view(rule)


def _engine(spec: LimitSpec | BudgetSpec) -> Limit | Budget:
    return to_limit(spec) if isinstance(spec, LimitSpec) else to_budget(spec)


def _encode(rules: dict[str, Rule]) -> str:
    return json.dumps({k: {"kind": "limit" if isinstance(r.spec, LimitSpec) else "budget",
                           "spec": r.spec.model_dump()} for k, r in rules.items()})  # fmt: skip


def _decode(raw: str | None) -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for rule_id, item in (json.loads(raw) if raw else {}).items():
        model = LimitSpec if item["kind"] == "limit" else BudgetSpec
        out[rule_id] = Rule(rule_id, "admin", model.model_validate_json(json.dumps(item["spec"])))
    return out
