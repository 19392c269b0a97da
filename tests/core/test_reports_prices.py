"""The versioned price catalog: a price change applies from its date on and never rewrites what
was metered before; GPU-time, cache-write and reasoning prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, Price, load_config
from core.envelope import Usage
from core.metering import PriceCatalog

JAN = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FEB = 1_769_904_000.0  # 2026-02-01T00:00:00Z


def catalog(now: float) -> PriceCatalog:
    return PriceCatalog(
        [
            Price(provider="p", model="m", input_per_1m=2.0, output_per_1m=4.0),
            Price(
                provider="p",
                model="m",
                input_per_1m=1.0,
                output_per_1m=2.0,
                effective_from="2026-02-01",
            ),
            Price(provider="late", model="m", input_per_1m=1.0, effective_from="2026-02-01"),
        ],
        clock=lambda: now,
    )


def test_each_call_is_priced_with_the_version_in_effect_then() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    prices = catalog(now=FEB + 10)
    assert prices.cost("p", "m", usage, at=JAN + 5) == pytest.approx(6.0)
    assert prices.cost("p", "m", usage, at=FEB) == pytest.approx(3.0)
    assert prices.cost("p", "m", usage) == pytest.approx(3.0)  # now
    assert catalog(now=JAN).cost("p", "m", usage) == pytest.approx(6.0)
    assert prices.cost("late", "m", usage, at=JAN) is None  # no price yet: unpriced, not free
    assert [since for since, _ in prices.versions() if _.provider == "p"][1] == FEB


def test_gpu_time_cache_writes_and_reasoning_have_their_own_prices() -> None:
    prices = PriceCatalog(
        [
            Price(provider="vllm", model="qwen", per_gpu_second=0.002),
            Price(
                provider="api",
                model="x",
                input_per_1m=1.0,
                output_per_1m=10.0,
                cache_write_per_1m=1.25,
                reasoning_per_1m=20.0,
            ),
        ]
    )
    assert prices.cost("vllm", "qwen", Usage(input_tokens=500), upstream_seconds=2.5) == (
        pytest.approx(0.005)
    )
    assert prices.cost("vllm", "qwen", Usage(input_tokens=500)) == 0.0
    usage = Usage(
        input_tokens=0,
        output_tokens=1_000_000,
        reasoning_tokens=400_000,
        cache_write_tokens=1_000_000,
    )
    assert prices.cost("api", "x", usage) == pytest.approx(0.6 * 10 + 0.4 * 20 + 1.25)


def test_a_bad_effective_date_fails_at_load(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("prices: [{provider: p, model: m, effective_from: next-tuesday}]\n")
    with pytest.raises(ConfigError, match="effective_from"):
        load_config(config)


def test_otlp_endpoint_and_headers_come_from_the_standard_variables(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc, team = ops",
    }
    tracing = load_config(config, env).tracing
    assert tracing.otlp_endpoint == "http://collector:4318"
    assert tracing.otlp_headers == {"api-key": "abc", "team": "ops"}
    assert load_config(config, {}).tracing.otlp_endpoint is None
    config.write_text("tracing: {otlp_endpoint: 'http://mine:4318'}\n")
    assert load_config(config, env).tracing.otlp_endpoint == "http://mine:4318"
