"""The sim's `/v1/moderations`: deterministic scores in the OpenAI shape, the sim's faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from adapters.egress.sim_moderation import BASE_SCORE, CATEGORIES, HIT_SCORE, moderation_result
from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_server import build_sim_app

URL = "/v1/moderations"


@asynccontextmanager
async def _sim(**options: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_sim_app(SimOptions.from_mapping(options)))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        yield http


@pytest.mark.anyio
async def test_one_result_per_input_in_the_openai_shape() -> None:
    async with _sim() as sim:
        body = {"model": "sim-moderation-1", "input": ["They are vermin.", "弄死你", "Hi there"]}
        answer = (await sim.post(URL, json=body)).json()
    assert answer["model"] == "sim-moderation-1" and answer["id"].startswith("modr-")
    hate, threat, benign = answer["results"]
    assert hate["flagged"] and hate["categories"]["hate"]
    assert hate["category_scores"]["hate"] == HIT_SCORE
    assert threat["categories"]["violence"] and not threat["categories"]["hate"]
    assert not benign["flagged"] and set(benign["category_scores"]) == set(CATEGORIES)
    assert all(score == BASE_SCORE for score in benign["category_scores"].values())


def test_a_marker_sets_a_score_exactly_and_parts_are_one_input() -> None:
    result = moderation_result("[sim-score:self-harm/intent=0.6] fine")
    assert result["category_scores"]["self-harm/intent"] == 0.6 and result["flagged"]
    assert not moderation_result("[sim-score:violence=0.49]")["flagged"]


@pytest.mark.anyio
async def test_malformed_input_and_injected_faults() -> None:
    async with _sim() as sim:
        missing = await sim.post(URL, json={"model": "m"})
        mixed = await sim.post(URL, json={"model": "m", "input": ["a", {"type": "text"}]})
        parts = await sim.post(
            URL,
            json={"model": "m", "input": [{"type": "text", "text": "They are "},
                                          {"type": "text", "text": "vermin"}]},
        )  # fmt: skip
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"
    assert mixed.status_code == 400
    (result,) = parts.json()["results"]
    assert result["categories"]["hate"]
    async with _sim(fail_rate=1.0, fail_status=503) as down:
        failed = await down.post(URL, json={"model": "m", "input": "x"})
    assert failed.status_code == 503
