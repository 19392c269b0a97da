"""`agentgw limits|budgets create|update`: every rule option is settable from the CLI, audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from core.alerting import AlertFeed
from core.cli import main
from store import SQLiteStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_sets_shadow_model_limits_and_budget_thresholds_and_updates_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'x.db'}\n")
    c = ("--config", str(config))
    _, limit_id, _ = run(capsys, "limits", "create", *c, "--level", "app", "--target", "batch",
                         "--kind", "images", "--amount", "50", "--window", "22:00-06:00",
                         "--model", "painter", "--action", "alert-only")  # fmt: skip
    _, budget_id, _ = run(capsys, "budgets", "create", *c, "--level", "customer", "--target",
                          "acme", "--amount-usd", "20", "--period", "day",
                          "--thresholds", "0.9", "0.25")  # fmt: skip
    updated = run(capsys, "budgets", "update", *c, budget_id.strip(), "--action", "alert-only",
                  "--amount-usd", "30")  # fmt: skip
    with pytest.raises(SystemExit) as bad:
        main(["limits", "update", *c, limit_id.strip(), "--window", "fortnight"])
    bad_err = capsys.readouterr().err
    missing = run(capsys, "limits", "update", *c, "lim_nope", "--amount", "1")
    _, limits, _ = run(capsys, "limits", "list", *c, "--json")
    _, budgets, _ = run(capsys, "budgets", "list", *c, "--json")
    with sqlite3.connect(tmp_path / "x.db") as raw:
        actions = [r[0] for r in raw.execute("SELECT action FROM audit_events ORDER BY id")]
    (limit,) = json.loads(limits)
    (budget,) = json.loads(budgets)
    assert (limit["model"], limit["window"], limit["action"]) == ("painter", "22:00-06:00",
                                                                  "alert-only")  # fmt: skip
    assert (budget["thresholds"], budget["amount_usd"], budget["action"]) == (
        [0.25, 0.9], 30.0, "alert-only")  # fmt: skip
    assert updated[0] == 0 and updated[1].strip() == f"updated {budget_id.strip()}"
    assert bad.value.code == 2 and "window" in bad_err
    assert missing[0] == 1 and "lim_nope" in missing[2]
    assert actions[-3:] == ["limit.create", "budget.create", "budget.update"]


def test_the_cli_lists_and_acknowledges_stored_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'x.db'}\n")
    c = ("--config", str(config))

    async def raise_two() -> None:
        store = SQLiteStore(str(tmp_path / "x.db"))
        await store.open()
        try:
            alerts = AlertFeed([], store=store)
            await alerts.raise_alert("anomaly", "spend of team x is 5x its baseline")
            await alerts.raise_alert("forecast", "budget runs out on the 21st", severity="critical")
        finally:
            await store.aclose()

    anyio.run(raise_two)
    _, listed, _ = run(capsys, "alerts", "list", *c, "--json")
    critical = json.loads(run(capsys, "alerts", "list", *c, "--json", "--severity", "critical")[1])
    acked = run(capsys, "alerts", "ack", *c, critical[0]["id"])
    _, still_open, _ = run(capsys, "alerts", "list", *c, "--open", "--csv")
    missing = run(capsys, "alerts", "ack", *c, "alt_nope")
    with sqlite3.connect(tmp_path / "x.db") as raw:
        audited = raw.execute("SELECT actor FROM audit_events WHERE action = 'alert.acknowledge'")
        actors = [r[0] for r in audited]
    assert len(json.loads(listed)) == 2
    assert [a["kind"] for a in critical] == ["forecast"]
    assert acked[0] == 0 and acked[1].startswith(f"acknowledged {critical[0]['id']} (by cli:")
    assert still_open.splitlines()[0].startswith("id,at,kind") and "anomaly" in still_open
    assert "forecast" not in still_open
    assert missing[0] == 1 and "alt_nope" in missing[2]
    assert len(actors) == 1 and actors[0].startswith("cli:")
