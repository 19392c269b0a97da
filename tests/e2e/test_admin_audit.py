"""The CLI and the audit log end to end: real `agentgw` commands on a real SQLite file.

CLI changes are audited like admin-API ones; the CLI and a running server append to one chain;
and editing, deleting or swapping a row directly in the database makes `agentgw audit verify`
exit non-zero and name the first bad event.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.procs import agentgw, start_gateway

ADMIN = "agw_e2e-audit-admin"
CONFIG = """\
store: sqlite:///gw.db
providers: [{name: sim, type: sim}]
models: [{name: sim, targets: [{provider: sim, model: sim-1}]}]
"""


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agentgw(*args, "--config", str(config)),
        capture_output=True,
        text=True,
        check=check,
        cwd=config.parent,
        stdin=subprocess.DEVNULL,
    )


def events(config: Path) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(cli(config, "audit", "list", "--json").stdout)
    return listed


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agentgw.yaml"
    path.write_text(CONFIG)
    return path


def make_history(config: Path) -> dict[str, Any]:
    """Five audited CLI changes; returns the created key."""
    key: dict[str, Any] = json.loads(
        cli(config, "keys", "create", "--name", "alice", "--org-path", "research/agents/demo",
            "--models", "sim", "--json").stdout
    )  # fmt: skip
    cli(config, "keys", "rotate", key["id"], "--grace-seconds", "60")
    cli(config, "keys", "revoke", key["id"])
    cli(config, "org", "units", "create", "research", "--title", "Research")
    cli(config, "org", "customers", "create", "acme", "--name", "Acme")
    return key


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One database with the five-change history, made once; tests that tamper use a copy."""
    path = tmp_path_factory.mktemp("history") / "agentgw.yaml"
    path.write_text(CONFIG)
    return path, make_history(path)


def copy_of(history: Path, into: Path) -> Path:
    into.mkdir()
    for name in ("gw.db", "gw.db-wal", "gw.db-shm"):
        if (history.parent / name).exists():
            shutil.copy(history.parent / name, into / name)
    shutil.copy(history, into / "agentgw.yaml")
    return into / "agentgw.yaml"


def test_cli_changes_are_audited_like_admin_api_changes(
    history: tuple[Path, dict[str, Any]],
) -> None:
    config, key = history
    listed = events(config)
    assert [(e["id"], e["action"], e["object"]) for e in listed] == [
        (1, "key.create", f"key:{key['id']}"),
        (2, "key.rotate", f"key:{key['id']}"),
        (3, "key.revoke", f"key:{key['id']}"),
        (4, "org_unit.create", "org_unit:research"),
        (5, "customer.create", "customer:acme"),
    ]
    for event in listed:
        assert event["actor"].startswith("cli:") and event["actor_role"] == "admin"
        assert event["source"].startswith("cli@")
    assert listed[2]["before"]["status"] == "active" and listed[2]["after"]["status"] == "revoked"
    everything = json.dumps(listed)
    assert key["key"] not in everything
    verified = cli(config, "audit", "verify")
    assert "intact: 5 events" in verified.stdout
    csv_export = cli(config, "audit", "list", "--action", "key.*", "--csv").stdout.splitlines()
    assert csv_export[0].startswith("id,at,actor,actor_role,action,object")
    assert len(csv_export) == 4


def test_the_cli_and_a_running_server_append_to_one_chain(config: Path) -> None:
    gateway = start_gateway(config, env={"AGENTGW_ADMIN_KEY": ADMIN})
    try:
        headers = {"authorization": f"Bearer {ADMIN}"}
        for name in ("from-api-1", "from-api-2"):
            body = {"name": name, "org_path": "research/agents/demo"}
            resp = httpx.post(gateway.url + "/admin/keys", json=body, headers=headers)
            assert resp.status_code == 201, resp.text
            cli(config, "keys", "create", "--name", name.replace("api", "cli"),
                "--org-path", "research/agents/demo")  # fmt: skip
        report = httpx.get(gateway.url + "/admin/audit/verify", headers=headers).json()
        assert report == {"intact": True, "events": 4, "first_bad_event": None, "reason": None}
    finally:
        gateway.stop()
    actors = [e["actor"].split(":")[0] for e in events(config)]
    assert actors == ["bootstrap-admin", "cli", "bootstrap-admin", "cli"]
    assert cli(config, "audit", "verify").returncode == 0


TAMPERING = {
    "edited": ('UPDATE audit_events SET "after" = \'{"status":"active"}\' WHERE id = 3', 3),
    "re-attributed": ("UPDATE audit_events SET actor = 'cli:nobody' WHERE id = 1", 1),
    "deleted": ("DELETE FROM audit_events WHERE id = 2", 2),
    "last deleted": ("DELETE FROM audit_events WHERE id = 5", 5),
    "swapped": (
        "UPDATE audit_events SET id = -id WHERE id IN (2, 3);"
        "UPDATE audit_events SET id = 5 + id WHERE id IN (-2, -3)",
        2,
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_row_changed_in_the_database_makes_verify_fail_and_name_it(
    history: tuple[Path, dict[str, Any]], tmp_path: Path, case: str
) -> None:
    config = copy_of(history[0], tmp_path / "tampered")
    sql, first_bad = TAMPERING[case]
    with sqlite3.connect(config.parent / "gw.db") as raw:
        raw.executescript(sql)
    raw.close()
    result = cli(config, "audit", "verify", check=False)
    assert result.returncode != 0
    assert f"first bad event: {first_bad}" in result.stdout, result.stdout
    as_json = json.loads(cli(config, "audit", "verify", "--json", check=False).stdout)
    assert (as_json["intact"], as_json["first_bad_event"]) == (False, first_bad)


def test_an_untouched_copy_of_the_database_still_verifies(
    history: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    config = copy_of(history[0], tmp_path / "copy")
    assert cli(config, "audit", "verify").returncode == 0
