"""The CLI's audit and redaction listings: time arguments and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main


def config(tmp_path: Path) -> str:
    path = tmp_path / "agentgw.yaml"
    path.write_text(f"store: sqlite:///{tmp_path / 'gw.db'}\n")
    return str(path)


@pytest.mark.parametrize("command", ["audit", "redactions"])
def test_a_listing_refuses_a_since_that_is_no_time(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "list", "--config", config(tmp_path), "--since", "last tuesday"])
    assert exit_.value.code == 2
    assert "--since" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["audit", "redactions"])
def test_a_listing_takes_iso_times_and_prints_json(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    assert main(["keys", "create", "--config", cfg, "--name", "k", "--org-path", "a/b"]) == 0
    capsys.readouterr()
    args = [command, "list", "--config", cfg, "--since", "2000-01-01T00:00:00Z", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    if command == "audit":  # the key creation above was audited, after 2000
        assert [r["action"] for r in rows] == ["key.create"]
    else:
        assert rows == []
