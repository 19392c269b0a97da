"""The `agentgw keys|org|audit` commands, run in process against a SQLite file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from core.cli import main

CONFIG = """\
store: sqlite:///gw.db
providers: [{name: sim, type: sim}]
models: [{name: sim, targets: [{provider: sim, model: sim-1}]}]
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "agentgw.yaml"
    path.write_text(CONFIG)
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Any:
    code, out, err = run(capsys, config, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_key_is_created_updated_rotated_and_revoked_from_the_cli(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    key = run_json(
        capsys, config, "keys", "create", "--name", "app", "--org-path", "research/agents/demo",
        "--models", "sim", "--ip-allowlist", "10.0.0.0/8", "--tag", "owner=alice",
        "--expires-at", "2999-01-01T00:00:00Z",
    )  # fmt: skip
    assert key["key"].startswith("agw_")
    assert (key["scopes"]["ip_allowlist"], key["tags"]) == (["10.0.0.0/8"], {"owner": "alice"})
    updated = run_json(
        capsys, config, "keys", "update", key["id"], "--models", "sim*", "gpt-*", "--no-expiry"
    )
    assert updated["scopes"]["models"] == ["sim*", "gpt-*"]
    assert updated["scopes"]["ip_allowlist"] == ["10.0.0.0/8"]  # untouched
    assert updated["expires_at"] is None
    rotated = run_json(capsys, config, "keys", "rotate", key["id"], "--grace-seconds", "0")
    assert rotated["previous_prefix"] == key["prefix"]
    assert run(capsys, config, "keys", "revoke", key["id"])[:2] == (0, f"revoked {key['id']}\n")
    shown = run_json(capsys, config, "keys", "show", key["id"])
    assert shown["state"] == "revoked" and "key" not in shown
    _, out, _ = run(capsys, config, "keys", "list", "--csv")
    assert [r["state"] for r in csv.DictReader(io.StringIO(out))] == ["revoked"]
    for secret in (key["key"], rotated["key"]):
        assert secret not in out
    actions = [e["action"] for e in run_json(capsys, config, "audit", "list")]
    assert actions == ["key.create", "key.update", "key.rotate", "key.revoke"]
    assert run(capsys, config, "audit", "verify")[:2] == (0, "audit chain intact: 4 events\n")


def test_refused_cli_changes_say_why_and_change_nothing(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    run_json(capsys, config, "keys", "create", "--name", "app", "--org-path", "a/b/c")
    code, _, err = run(capsys, config, "keys", "create", "--name", "app", "--org-path", "a/b/c")
    assert (code, err) == (1, "agentgw: A key named 'app' exists already.\n")
    code, _, err = run(capsys, config, "keys", "revoke", "key_missing")
    assert (code, err) == (1, "agentgw: No key with id 'key_missing'.\n")
    with pytest.raises(SystemExit) as bad:
        run(capsys, config, "keys", "create", "--name", "x", "--org-path", "a", "--ip-allowlist",
            "nowhere")  # fmt: skip
    assert bad.value.code == 2
    assert "'nowhere' is not an IP address or CIDR block" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(capsys, config, "keys", "create", "--name", "y", "--org-path", "a", "--tag", "novalue")
    assert len(run_json(capsys, config, "audit", "list")) == 1


def test_the_organization_is_managed_from_the_cli(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    assert run(capsys, config, "org", "units", "create", "research", "--title", "R")[0] == 0
    assert run(capsys, config, "org", "units", "create", "research/agents")[0] == 0
    code, _, err = run(capsys, config, "org", "units", "delete", "research")
    assert code == 1 and "still has child units" in err
    unit = run_json(capsys, config, "org", "units", "list")
    assert [u["path"] for u in unit] == ["research", "research/agents"]
    assert run(capsys, config, "org", "units", "update", "research", "--title", "Research")[0] == 0
    run(capsys, config, "org", "agents", "create", "planner@v2/x", "--org-path", "research")
    agent = run_json(capsys, config, "org", "agents", "update", "planner@v2/x", "--no-org-path")
    assert agent["org_path"] is None
    assert run(capsys, config, "org", "agents", "delete", "planner@v2/x")[0] == 0
    assert run_json(capsys, config, "org", "agents", "list") == []
    actions = [e["action"] for e in run_json(capsys, config, "audit", "list", "--actor", "cli:*")]
    assert actions == [
        "org_unit.create",
        "org_unit.create",
        "org_unit.update",
        "agent.create",
        "agent.update",
        "agent.delete",
    ]
