"""Reconciliation: a provider's usage or invoice export compared with what agentgw metered.

The export is CSV with a header naming `date`, `model` and at least one measure: `cost`
(or `cost_usd`), `tokens` (input + output), `input_tokens` or `output_tokens`. Rows of the same
day and model are summed. The comparison is per day (UTC) and upstream model, for the named
provider, over the days the export covers; a day and model only one side knows is a difference
too.
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from core.errors import ValidationFailed
from core.reports import DAY, Totals, UsageQuery, UsageStore
from core.timestamps import iso

MAX_ROWS = 100_000
MEASURE_COLUMNS = {
    "cost": "cost_usd",
    "cost_usd": "cost_usd",
    "tokens": "tokens",
    "total_tokens": "tokens",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
}
RECONCILIATION_COLUMNS = (
    "date",
    "model",
    "measure",
    "provider_value",
    "metered_value",
    "difference",
    "gap_pct",
    "status",
)


RECONCILIATION_SUMMARY = (
    "id", "at", "actor", "provider", "measure", "first_day", "last_day", "differences",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """One imported export and what comparing it found (`result` as `reconcile` returns it)."""

    id: str
    at: float
    actor: str
    provider: str
    measure: str
    first_day: str
    last_day: str
    differences: int
    result: dict[str, Any]


class ReconciliationStore(Protocol):
    """Where imports are kept."""

    async def add_reconciliation(self, record: Reconciliation) -> None:
        """Store an import."""
        ...

    async def list_reconciliations(self, limit: int) -> list[Reconciliation]:
        """The latest imports, newest first."""
        ...

    async def get_reconciliation(self, reconciliation_id: str) -> Reconciliation | None:
        """One import with its full table, or None."""
        ...


def reconciliation_view(record: Reconciliation, *, full: bool = False) -> dict[str, Any]:
    """An import as the admin API shows it: the summary, and with `full` its table."""
    out: dict[str, Any] = {name: getattr(record, name) for name in RECONCILIATION_SUMMARY}
    out["at"] = iso(record.at)
    if full:
        out["tolerance_pct"] = record.result.get("tolerance_pct")
        out["rows"] = record.result.get("rows", [])
    return out


async def import_export(
    store: UsageStore,
    imports: ReconciliationStore,
    actor: str,
    provider: str,
    text: str,
    tolerance_pct: float,
    now: float,
) -> Reconciliation:
    """Compare an export (see `reconcile`) and keep the import with its result.

    Raises:
        ValidationFailed: the export cannot be read (nothing is stored).
    """
    result = await reconcile(store, provider, text, tolerance_pct)
    record = Reconciliation(
        id="rec_" + secrets.token_hex(8),
        at=round(now, 6),
        actor=actor,
        provider=provider,
        measure=result["measure"],
        first_day=result["days"][0],
        last_day=result["days"][-1],
        differences=result["differences"],
        result=result,
    )
    await imports.add_reconciliation(record)
    return record


@dataclass(frozen=True, slots=True)
class ProviderExport:
    """A parsed export: per (day, model), the value of `measure`."""

    measure: str
    values: dict[tuple[date, str], float]


def parse_export(text: str) -> ProviderExport:
    """Raises:
    ValidationFailed: no header, a missing column, a bad date or number (named with its line).
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if "date" not in header or "model" not in header:
        raise ValidationFailed("csv: the header must name 'date' and 'model'.", param="csv")
    measures = [h for h in header if h in MEASURE_COLUMNS]
    if not measures:
        known = ", ".join(MEASURE_COLUMNS)
        raise ValidationFailed(f"csv: the header names no measure (one of: {known}).", param="csv")
    # Money first: an invoice's cost is what reconciliation is for.
    column = min(measures, key=list(MEASURE_COLUMNS).index)
    values: dict[tuple[date, str], float] = {}
    for line, row in enumerate(reader, start=2):
        if line > MAX_ROWS + 1:
            raise ValidationFailed(f"csv: more than {MAX_ROWS} rows.", param="csv")
        day = _day(row.get("date") or "", line)
        model = (row.get("model") or "").strip()
        if not model:
            raise ValidationFailed(f"csv line {line}: model is empty.", param="csv")
        try:
            value = float((row.get(column) or "0").replace(",", "").lstrip("$"))
        except ValueError:
            raise ValidationFailed(
                f"csv line {line}: {column} is not a number.", param="csv"
            ) from None
        values[(day, model)] = values.get((day, model), 0.0) + value
    if not values:
        raise ValidationFailed("csv: no rows.", param="csv")
    return ProviderExport(MEASURE_COLUMNS[column], values)


def _day(text: str, line: int) -> date:
    text = text.strip()
    try:
        return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            f"csv line {line}: date {text!r} is not YYYY-MM-DD.", param="csv"
        ) from None


def _metered(totals: Totals, measure: str) -> float:
    if measure == "tokens":
        return float(totals.input_tokens + totals.output_tokens)
    return float(getattr(totals, measure))


async def reconcile(
    store: UsageStore, provider: str, text: str, tolerance_pct: float = 1.0
) -> dict[str, Any]:
    """The table of differences by day and model, with the percentage gap.

    Raises:
        ValidationFailed: the export cannot be read.
    """
    export = parse_export(text)
    days = sorted({d for d, _ in export.values})
    since = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC).timestamp()
    until = since + ((days[-1] - days[0]) + timedelta(days=1)).days * DAY
    query = UsageQuery(("upstream_model",), "day", since, until, {"provider": provider})
    metered: dict[tuple[date, str], float] = {}
    for row in await store.usage(query):
        assert row.bucket is not None
        day = datetime.fromtimestamp(row.bucket, UTC).date()
        if day in days:  # the export's days only: a gap in its dates is not a difference
            metered[(day, row.dims[0])] = _metered(row.totals, export.measure)
    rows = []
    for day, model in sorted(set(export.values) | set(metered)):
        theirs = export.values.get((day, model))
        ours = metered.get((day, model))
        rows.append(_difference(day, model, export.measure, theirs, ours, tolerance_pct))
    flagged = [r for r in rows if r["status"] != "match"]
    return {
        "provider": provider,
        "measure": export.measure,
        "tolerance_pct": tolerance_pct,
        "days": [d.isoformat() for d in days],
        "differences": len(flagged),
        "rows": rows,
    }


def _difference(
    day: date, model: str, measure: str, theirs: float | None, ours: float | None, tol: float
) -> dict[str, Any]:
    t, o = theirs or 0.0, ours or 0.0
    gap = None if o == 0 else round((t - o) / o * 100, 4)
    if theirs is None:
        status = "match" if o == 0 else "missing_in_export"
    elif ours is None:
        status = "not_metered"
    elif gap is None:
        status = "match" if t == 0 else "gap"
    else:
        status = "match" if abs(gap) <= tol else "gap"
    return {
        "date": day.isoformat(),
        "model": model,
        "measure": measure,
        "provider_value": round(t, 9),
        "metered_value": round(o, 9),
        "difference": round(t - o, 9),
        "gap_pct": gap,
        "status": status,
    }
