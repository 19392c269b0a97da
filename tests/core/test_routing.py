"""Strategies and the rules that narrow candidates, driven with the real sim provider."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from core.config import Price, load_config
from core.eligibility import ContextWindowExceeded
from core.envelope import Envelope, Message, Modality, TextPart
from core.errors import (
    AllTargetsFailed,
    PermissionDenied,
    UnsupportedContent,
    UpstreamUnavailable,
)
from core.routing import BoundTarget, Router
from core.tracing import Attempt
from tests.core.routing_support import chat, model, router, sim, tried


def names(targets: list[BoundTarget]) -> list[str]:
    return [t.provider_name for t in targets]


def test_weighted_canary_sends_about_ten_percent_to_the_canary() -> None:
    r = router(
        [
            model(
                "m",
                [
                    {"provider": "stable", "model": "x", "weight": 90},
                    {"provider": "canary", "model": "x", "weight": 10},
                ],
                strategy="weighted",
            )
        ],
        {"stable": sim("stable"), "canary": sim("canary")},
        rng=random.Random(20260101),
    )
    route = r.route("m")
    firsts: Counter[str] = Counter()
    for _ in range(1000):
        order = names(r.candidates(route, chat()))
        assert sorted(order) == ["canary", "stable"]  # the other target stays for failover
        firsts[order[0]] += 1
    # Binomial(1000, 0.1): the 99.9 % interval is 100 ± 3.29·√90, about 69..131.
    assert 69 <= firsts["canary"] <= 131


def test_weighted_target_with_zero_weight_is_drained() -> None:
    r = router(
        [
            model(
                "m",
                [{"provider": "a", "model": "x"}, {"provider": "b", "model": "x", "weight": 0}],
                strategy="weighted",
            )
        ],
        {"a": sim("a"), "b": sim("b")},
    )
    assert names(r.candidates(r.route("m"), chat())) == ["a"]


@pytest.mark.anyio
async def test_least_busy_prefers_the_idle_target_while_a_stream_is_open() -> None:
    r = router(
        [
            model(
                "m",
                [{"provider": "a", "model": "x"}, {"provider": "b", "model": "x"}],
                strategy="least-busy",
            )
        ],
        {"a": sim("a"), "b": sim("b")},
    )
    route = r.route("m")
    env = chat(stream=True)
    _, rest, target = await r.open_stream(env, r.candidates(route, env), [])
    assert target.provider_name == "a"
    assert r.load.in_flight("a/x") == 1  # counted past the first chunk, for the whole stream
    assert names(r.candidates(route, chat())) == ["b", "a"]
    _, busy_target = await r.send(chat(), r.candidates(route, chat()), [])
    assert busy_target.provider_name == "b"
    await rest.aclose()  # closed before its second chunk was asked for: still released
    assert r.load.in_flight("a/x") == 0
    assert names(r.candidates(route, chat())) == ["a", "b"]


@pytest.mark.anyio
async def test_least_busy_counts_a_call_in_flight_and_releases_it_when_cancelled() -> None:
    slow = sim("slow", latency_ms=60_000)
    r = router(
        [
            model(
                "m",
                [{"provider": "slow", "model": "x"}, {"provider": "idle", "model": "x"}],
                strategy="least-busy",
            )
        ],
        {"slow": slow, "idle": sim("idle")},
    )
    route = r.route("m")
    async with anyio.create_task_group() as tg:
        tg.start_soon(r.send, chat(), r.candidates(route, chat()), [])
        await anyio.wait_all_tasks_blocked()
        assert r.load.in_flight("slow/x") == 1
        _, target = await r.send(chat(), r.candidates(route, chat()), [])
        assert target.provider_name == "idle"
        tg.cancel_scope.cancel()
    assert r.load.in_flight("slow/x") == 0


@pytest.mark.anyio
async def test_least_latency_tries_each_target_once_then_prefers_the_faster() -> None:
    r = router(
        [
            model(
                "m",
                [{"provider": "slow", "model": "x"}, {"provider": "fast", "model": "x"}],
                strategy="least-latency",
            )
        ],
        {"slow": sim("slow", latency_ms=40), "fast": sim("fast")},
    )
    route = r.route("m")
    served = []
    for _ in range(6):
        _, target = await r.send(chat(), r.candidates(route, chat()), [])
        served.append(target.provider_name)
    assert served == ["slow", "fast", "fast", "fast", "fast", "fast"]
    slow, fast = r.load.latency("slow/x"), r.load.latency("fast/x")
    assert slow is not None and fast is not None and fast < slow


def test_cost_picks_the_cheapest_target_for_this_request_and_unpriced_last() -> None:
    prices = [
        # "reader" is cheap to read and dear to write; "writer" the other way round.
        Price(provider="reader", model="x", input_per_1m=1.0, output_per_1m=100.0),
        Price(provider="writer", model="x", input_per_1m=50.0, output_per_1m=2.0),
    ]
    r = router(
        [
            model(
                "m",
                [
                    {"provider": "unpriced", "model": "x"},
                    {"provider": "reader", "model": "x"},
                    {"provider": "writer", "model": "x"},
                ],
                strategy="cost",
            )
        ],
        {"unpriced": sim("u"), "reader": sim("r"), "writer": sim("w")},
        prices=prices,
    )
    route = r.route("m")
    long_prompt = chat("word " * 4000, max_tokens=10)
    short_prompt = chat("hi", max_tokens=4000)
    assert names(r.candidates(route, long_prompt)) == ["reader", "writer", "unpriced"]
    assert names(r.candidates(route, short_prompt)) == ["writer", "reader", "unpriced"]


def tiers() -> list[dict[str, object]]:
    return [
        {"provider": "small", "model": "x", "context_window": 100},
        {"provider": "long", "model": "x", "context_window": 100_000},
    ]


@pytest.mark.anyio
async def test_a_prompt_longer_than_the_small_window_goes_to_the_long_context_target() -> None:
    r = router([model("m", tiers())], {"small": sim("small"), "long": sim("long")})
    route = r.route("m")
    assert names(r.candidates(route, chat("short question"))) == ["small", "long"]
    long_env = chat("word " * 400)  # about 500 tokens
    targets = r.candidates(route, long_env)
    assert names(targets) == ["long"]
    _, target = await r.send(long_env, targets, [])
    assert target.provider_name == "long"


def test_requested_max_tokens_count_against_the_context_window() -> None:
    r = router([model("m", tiers())], {"small": sim("small"), "long": sim("long")})
    assert names(r.candidates(r.route("m"), chat("short", max_tokens=500))) == ["long"]


def test_a_prompt_that_fits_no_window_is_a_clear_400() -> None:
    r = router([model("m", tiers()[:1])], {"small": sim("small")})
    with pytest.raises(ContextWindowExceeded) as caught:
        r.candidates(r.route("m"), chat("word " * 400))
    assert caught.value.status == 400
    assert caught.value.code == "context_length_exceeded"
    assert "~" in caught.value.message and "context window" in caught.value.message


def test_embeddings_skip_a_chat_only_target_and_tools_skip_a_target_without_them() -> None:
    r = router(
        [
            model(
                "m",
                [
                    {"provider": "chatonly", "model": "x", "supports": ["chat"], "tools": False},
                    {"provider": "embedder", "model": "e", "supports": ["embedding"]},
                    {"provider": "agentic", "model": "x", "supports": ["chat"]},
                ],
            )
        ],
        {"chatonly": sim("c"), "embedder": sim("e"), "agentic": sim("a")},
    )
    route = r.route("m")
    embed = Envelope(
        id="e", modality=Modality.EMBEDDING, model="m", messages=[Message("user", [TextPart("x")])]
    )
    assert names(r.candidates(route, embed)) == ["embedder"]
    assert names(r.candidates(route, chat())) == ["chatonly", "agentic"]
    assert names(r.candidates(route, chat(tools=True))) == ["agentic"]


def test_a_request_no_target_accepts_is_a_400() -> None:
    r = router(
        [model("m", [{"provider": "a", "model": "x", "supports": ["embedding"]}])],
        {"a": sim("a")},
    )
    with pytest.raises(UnsupportedContent) as caught:
        r.candidates(r.route("m"), chat())
    assert caught.value.status == 400


@pytest.mark.anyio
async def test_a_private_key_never_reaches_a_public_target_even_on_failover() -> None:
    r = router(
        [
            model(
                "m",
                [{"provider": "public", "model": "x"}, {"provider": "onprem", "model": "x"}],
                fallbacks=["spill"],
            ),
            model("spill", [{"provider": "cloud", "model": "x"}]),
        ],
        {
            "public": sim("public"),
            "onprem": sim("onprem", fail_rate=1, fail_status=503),
            "cloud": sim("cloud"),
        },
        private=("onprem",),
    )
    route = r.route("m")
    assert names(r.candidates(route, chat())) == ["public", "onprem", "cloud"]
    env = chat(egress="private")
    targets = r.candidates(route, env)
    assert names(targets) == ["onprem"]
    attempts: list[Attempt] = []
    with pytest.raises(AllTargetsFailed):
        await r.send(env, targets, attempts)
    assert tried(attempts) == [("onprem", "error", "upstream_unavailable")]


def test_a_private_key_on_a_model_with_only_public_targets_is_refused() -> None:
    r = router([model("m", [{"provider": "a", "model": "x"}])], {"a": sim("a")})
    with pytest.raises(PermissionDenied):
        r.candidates(r.route("m"), chat(egress="private"))


def at_utc(hour: int) -> float:
    return datetime(2026, 3, 1, hour, 30, tzinfo=UTC).timestamp()


def test_hours_windows_are_read_in_utc_and_wrap_past_midnight() -> None:
    now = [at_utc(23)]
    r = router(
        [
            model(
                "m",
                [
                    {"provider": "offpeak", "model": "x", "hours": "22-06"},
                    {"provider": "daytime", "model": "x", "hours": "6-22"},
                ],
            )
        ],
        {"offpeak": sim("o"), "daytime": sim("d")},
        wall_clock=lambda: now[0],
    )
    route = r.route("m")
    for hour, expected in ((23, "offpeak"), (2, "offpeak"), (6, "daytime"), (21, "daytime")):
        now[0] = at_utc(hour)
        assert names(r.candidates(route, chat())) == [expected]


def test_a_model_outside_all_its_hours_is_unavailable() -> None:
    r = router(
        [model("m", [{"provider": "offpeak", "model": "x", "hours": "22-06"}])],
        {"offpeak": sim("o")},
        wall_clock=lambda: at_utc(12),
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        r.candidates(r.route("m"), chat())
    assert caught.value.status == 503 and "12:00 UTC" in caught.value.message


@pytest.mark.anyio
async def test_fallback_models_are_tried_after_the_models_own_targets() -> None:
    r = router(
        [
            model("m", [{"provider": "down", "model": "x"}], fallbacks=["backup"]),
            model("backup", [{"provider": "up", "model": "y"}]),
        ],
        {"down": sim("down", fail_rate=1), "up": sim("up")},
    )
    attempts: list[Attempt] = []
    _, target = await r.send(chat(), r.candidates(r.route("m"), chat()), attempts)
    assert (target.provider_name, target.model, target.route) == ("up", "y", "backup")
    assert tried(attempts) == [("down", "error", "upstream_error"), ("up", "ok", None)]


def test_the_documented_example_config_loads_and_routes(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "routing.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "agentgw.yaml"
    path.write_text(example, encoding="utf-8")
    config = load_config(path, env={"CLOUD_KEY": "sk-test"})
    providers = {p.name: sim(p.name) for p in config.providers}
    networks = {p.name: p.network for p in config.providers}
    r = Router(config.models, providers, networks, wall_clock=lambda: at_utc(12))
    order = names(r.candidates(r.route("chat"), chat(model="chat")))
    # At noon UTC the off-peak "batch" target is out; the fallback model comes last.
    assert sorted(order[:3]) == ["longctx", "vllm-a", "vllm-b"] and order[3:] == ["cloud"]


@pytest.mark.parametrize("hours", ["5-5", "24-3", "3-25", "0-0"])
def test_empty_or_out_of_range_hours_are_refused_at_load(hours: str) -> None:
    with pytest.raises(ValidationError, match="hours"):
        model("m", [{"provider": "a", "model": "x", "hours": hours}])
