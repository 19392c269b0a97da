"""Prefix affinity: same prefix, same target; a target added or removed moves only its share."""

from __future__ import annotations

from collections import Counter

import pytest

from adapters.egress.sim import SimProvider
from adapters.egress.sim_options import SimOptions
from core.affinity import pin, prefix_key, rendezvous
from core.envelope import Message, TextPart
from core.routing import BoundTarget
from core.tracing import Attempt
from tests.core.routing_support import chat, model, router, sim, tried

SIM = SimProvider("sim", SimOptions())


def targets(n: int, weights: tuple[float, ...] = ()) -> list[BoundTarget]:
    return [
        BoundTarget(SIM, f"replica{i}", "x", "public", weights[i] if weights else 1.0, None)
        for i in range(n)
    ]


def prefixes(n: int) -> list[str]:
    keys = [
        prefix_key(chat(f"question {i}", system="You are a careful assistant.")) for i in range(n)
    ]
    assert all(k is not None for k in keys)
    return [k for k in keys if k is not None]


def winner(key: str, pool: list[BoundTarget]) -> str:
    chosen = rendezvous(key, pool)
    assert chosen is not None
    return chosen.provider_name


def test_the_prefix_is_the_system_prompt_and_first_user_turn_only() -> None:
    base = chat("What is in the contract?", system="You are a lawyer.")
    later = chat("What is in the contract?", system="You are a lawyer.")
    later.messages += [
        Message("assistant", [TextPart("Clauses.")]),
        Message("user", [TextPart("Which ones?")]),
    ]
    assert prefix_key(base) == prefix_key(later)
    assert prefix_key(base) != prefix_key(
        chat("What is in the contract?", system="You are a poet.")
    )
    assert prefix_key(base) != prefix_key(chat("Another question", system="You are a lawyer."))
    no_user = chat("x")
    no_user.messages = [Message("system", [TextPart("only a system prompt")])]
    assert prefix_key(no_user) is None


def test_prefixes_spread_evenly_over_equal_targets() -> None:
    pool = targets(4)
    counts = Counter(winner(k, pool) for k in prefixes(1000))
    assert len(counts) == 4
    assert all(180 <= n <= 320 for n in counts.values())


def test_adding_a_fifth_target_moves_only_about_a_fifth_of_the_prefixes() -> None:
    keys = prefixes(1000)
    four, five = targets(4), targets(5)
    before = {k: rendezvous(k, four) for k in keys}
    after = {k: rendezvous(k, five) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert len(moved) < 350  # expected about 200
    # Every prefix that moved moved to the new target: nothing reshuffles among the old ones.
    assert all(after[k] == five[4] for k in moved)


def test_removing_a_target_moves_only_the_prefixes_it_held() -> None:
    keys = prefixes(1000)
    pool = targets(5)
    before = {k: rendezvous(k, pool) for k in keys}
    after = {k: rendezvous(k, pool[:2] + pool[3:]) for k in keys}
    assert {k for k in keys if before[k] != after[k]} == {k for k in keys if before[k] == pool[2]}


def test_weights_keep_their_share_under_affinity() -> None:
    pool = targets(2, (9.0, 1.0))
    counts = Counter(winner(k, pool) for k in prefixes(1000))
    assert 60 <= counts["replica1"] <= 140  # about 10 %


def test_pin_moves_the_chosen_target_first_and_keeps_the_rest_in_order() -> None:
    pool = targets(4)
    key = prefixes(1)[0]
    chosen = rendezvous(key, pool)
    ordered = pin(key, pool)
    assert ordered[0] == chosen
    assert ordered[1:] == [t for t in pool if t != chosen]
    assert pin(None, pool) == pool


@pytest.mark.anyio
async def test_a_model_with_prefix_affinity_sticks_and_fails_over_from_its_pinned_target() -> None:
    replicas = [{"provider": f"r{i}", "model": "x"} for i in range(3)]
    providers = {f"r{i}": sim(f"r{i}") for i in range(3)}
    r = router([model("m", replicas, strategy="least-busy", affinity="prefix")], providers)
    route = r.route("m")
    env = chat("Summarize the report", system="You are terse.")
    pinned = r.candidates(route, env)[0]
    for _ in range(5):
        assert r.candidates(route, env)[0] == pinned
    providers[pinned.provider_name] = sim(pinned.provider_name, fail_rate=1, fail_status=503)
    r = router([model("m", replicas, affinity="prefix")], providers)
    attempts: list[Attempt] = []
    _, served = await r.send(env, r.candidates(r.route("m"), env), attempts)
    assert served.provider_name != pinned.provider_name
    assert tried(attempts)[0] == (pinned.provider_name, "error", "upstream_unavailable")
