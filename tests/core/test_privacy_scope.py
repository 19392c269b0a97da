"""The key scope `privacy_mode` (realtime voice): validated, patched, stored and shown."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.access import Scopes
from core.cli import main
from core.keyspec import KeyCreate, ScopesPatch, ScopesSpec
from store.rows import scopes_from

CONFIG = """\
store: sqlite:///gw.db
providers: [{name: sim, type: sim}]
models: [{name: sim, targets: [{provider: sim, model: sim-1}]}]
"""


def test_privacy_mode_is_off_unless_a_key_asks_for_it() -> None:
    assert ScopesSpec().to_scopes().privacy_mode is False
    key = KeyCreate.model_validate(
        {"name": "voice", "org_path": "support/voice/web", "scopes": {"privacy_mode": True}}
    )
    assert key.scopes.to_scopes().privacy_mode is True
    with pytest.raises(ValidationError):
        ScopesSpec.model_validate({"privacy_mode": "yes"})  # strict: a string is not a bool


def test_a_patch_changes_privacy_mode_only_when_it_names_it() -> None:
    private = Scopes(models=("voice",), privacy_mode=True)
    assert ScopesPatch.model_validate({"models": ["*"]}).apply(private).privacy_mode is True
    turned_off = ScopesPatch.model_validate({"privacy_mode": False}).apply(private)
    assert turned_off == Scopes(models=("voice",), privacy_mode=False)


def test_privacy_mode_survives_the_store_and_older_rows_default_to_off() -> None:
    stored = json.dumps(dataclasses.asdict(Scopes(privacy_mode=True)))
    assert scopes_from(stored).privacy_mode is True
    assert scopes_from('{"models": [], "egress": "public"}').privacy_mode is False


def test_the_cli_turns_privacy_mode_on_and_off(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "agentgw.yaml"
    config.write_text(CONFIG)

    def run(*args: str) -> Any:
        code = main([*args, "--config", str(config), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    key = run("keys", "create", "--name", "v", "--org-path", "support/voice/web", "--privacy-mode")
    assert key["scopes"]["privacy_mode"] is True
    kept = run("keys", "update", key["id"], "--models", "sim")
    assert kept["scopes"]["privacy_mode"] is True  # untouched by another scope's change
    off = run("keys", "update", key["id"], "--privacy-mode", "off")
    assert off["scopes"]["privacy_mode"] is False
