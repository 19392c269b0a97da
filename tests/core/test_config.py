"""Config errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, interpolate, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentgw.yaml"
    path.write_text(text)
    return path


def test_embedded_default_serves_the_sim_model() -> None:
    config = load_config(None, env={})
    assert [m.name for m in config.models] == ["sim"]
    assert config.store == "sqlite:///agentgw.db"
    assert config.listen.port == 8080


def test_env_interpolation_with_default_and_required(tmp_path: Path) -> None:
    assert interpolate("a: ${X:-7}", {}) == "a: 7"
    assert interpolate("a: ${X}", {"X": "v"}) == "a: v"
    path = write(tmp_path, "providers:\n  - {name: p, type: openai, base_url: '${URL}'}\n")
    with pytest.raises(ConfigError, match=r"agentgw.yaml:2: environment variable URL is not set"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: {port: lots}", "listen.port"),
        ("listen: {port: 8080, colour: red}", "listen.colour"),
        ("store: mysql://x", "store"),
        ("providers: [{name: p, type: warp}]", "providers[0].type"),
        ("providers: [{name: p, type: openai}]", "needs a base_url"),
        (
            "providers: [{name: p, type: sim}]\n"
            "models: [{name: m, targets: [{provider: q, model: x}]}]",
            "models[0].targets[0].provider: unknown provider 'q'",
        ),
        ("models: [{name: m, targets: []}]", "models[0].targets"),
        ("- just\n- a list", "expected a mapping"),
        ("listen: {port: 1\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert str(path) in str(exc.value)
    assert expected in str(exc.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", env={})
