"""`agentgw limits` and `agentgw budgets`: rules set from the CLI are stored and audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.cli import main
from tests.e2e.procs import free_port


def test_the_cli_creates_lists_and_deletes_a_limit_with_audit_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'x.db'}\n")
    create = ["limits", "create", "--config", str(config), "--level", "team",
              "--target", "research/agents", "--kind", "requests", "--amount", "5"]  # fmt: skip
    assert main(create) == 0
    rule_id = capsys.readouterr().out.strip()
    nowhere = f"http://127.0.0.1:{free_port()}"  # no gateway: in-process usage is unknown
    assert main(["limits", "list", "--config", str(config), "--json", "--gateway", nowhere]) == 0
    listing = capsys.readouterr()
    listed = json.loads(listing.out)
    assert main(["limits", "delete", "--config", str(config), rule_id]) == 0
    assert main(["limits", "delete", "--config", str(config), rule_id]) == 1
    with sqlite3.connect(tmp_path / "x.db") as raw:
        actions = [r[0] for r in raw.execute("SELECT action FROM audit_events ORDER BY id")]
    assert [(r["id"], r["amount"], r["used"]) for r in listed] == [(rule_id, 5, None)]
    assert "usage unknown" in listing.err
    assert actions[-2:] == ["limit.create", "limit.delete"]


def test_the_cli_refuses_a_bad_budget_and_stores_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'x.db'}\n")
    bad = ["budgets", "create", "--config", str(config), "--level", "team", "--target", "t",
           "--amount-usd", "-1"]  # fmt: skip
    with pytest.raises(SystemExit) as refused:
        main(bad)
    assert refused.value.code == 2
