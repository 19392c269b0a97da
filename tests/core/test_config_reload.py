"""A config reload applies new model routing, and keeps what it cannot serve without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config_reload import reload_config
from tests.adapters.admin.support import ROOT, Gateway, running

pytestmark = pytest.mark.anyio


def write(path: Path, db: Path, models: list[dict[str, Any]], **extra: Any) -> Path:
    providers = [{"name": "sim", "type": "sim"}, *extra.get("providers", [])]
    data = {"store": f"sqlite:///{db}", "admin_key": ROOT, "providers": providers, "models": models}
    path.write_text(yaml.safe_dump(data))
    return path


def served(gw: Gateway, name: str) -> list[str]:
    return [t.model for t in gw.app.state.gateway.pipeline.router.route(name).targets]


async def test_a_reload_records_changed_models_and_keeps_one_naming_a_new_provider(
    tmp_path: Path,
) -> None:
    db = tmp_path / "agentgw.db"
    async with running(db) as gw:
        state = gw.app.state.gateway
        path = write(
            tmp_path / "agentgw.yaml",
            db,
            [
                {"name": "sim", "targets": [{"provider": "sim", "model": "sim-7"}]},
                {"name": "sim-b", "targets": [{"provider": "later", "model": "x"}]},
            ],
            providers=[{"name": "later", "type": "sim"}],
        )
        assert await reload_config(path, state.config, state.models)
        assert served(gw, "sim") == ["sim-7"]
        assert served(gw, "sim-b") == ["sim-2"]  # its new provider needs a restart
        shown = (await gw.admin("GET", "/admin/models/sim")).json()
        assert (shown["version"], shown["actor"]) == (2, "config")


async def test_a_file_that_does_not_load_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "agentgw.db"
    async with running(db) as gw:
        state = gw.app.state.gateway
        path = tmp_path / "agentgw.yaml"
        path.write_text("models: [{name: sim, targets: []}]\n")
        assert not await reload_config(path, state.config, state.models)
        assert served(gw, "sim") == ["sim-1"]
        assert (await gw.admin("GET", "/admin/models/sim")).json()["version"] == 1
