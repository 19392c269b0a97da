"""The media endpoints in process: the app over ASGI, the in-process sim as the provider, and the
`openai` SDK as the client (its HTTP client pointed at the app)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import openai
import pytest
from PIL import Image

from tests.adapters.admin.support import Gateway, running
from tests.filters.media import media_samples as s

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]

MODELS = [
    {"name": "painter", "targets": [{"provider": "sim", "model": "sim-image-1"}]},
    {"name": "director", "targets": [{"provider": "sim", "model": "sim-video-1"}]},
]
PRICES = [
    {"provider": "sim", "model": "sim-image-1", "per_image": 0.02},
    {"provider": "sim", "model": "sim-video-1", "per_video_second": 0.05},
]


@dataclass
class Media:
    gw: Gateway
    owner: openai.AsyncOpenAI
    stranger: openai.AsyncOpenAI


def _client(gw: Gateway, secret: str, opened: list[httpx2.AsyncClient]) -> openai.AsyncOpenAI:
    # The SDK ships its own httpx (`httpx2`); its ASGI transport drives the app in process.
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gw.app), base_url="http://gw")
    opened.append(http)
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key=secret, http_client=http, max_retries=0
    )


@asynccontextmanager
async def _gateway(db: Path) -> AsyncIterator[tuple[Gateway, list[httpx2.AsyncClient]]]:
    opened: list[httpx2.AsyncClient] = []
    async with running(db, **CHANGES) as gw:
        try:
            yield gw, opened
        finally:
            for http in opened:
                await http.aclose()


CHANGES = {"models": MODELS, "prices": PRICES, "filters": {"media": {"max_bytes": 100_000}}}


@pytest.fixture
async def media(tmp_path: Path) -> AsyncIterator[Media]:
    async with _gateway(tmp_path / "gw.db") as (gw, opened):
        owner = (await gw.create_key(name="owner"))["key"]
        stranger = (await gw.create_key(name="stranger"))["key"]
        yield Media(gw, _client(gw, owner, opened), _client(gw, stranger, opened))


async def test_generated_images_come_back_stripped_and_metered_per_image(tmp_path: Path) -> None:
    async with _gateway(tmp_path / "gw.db") as (gw, opened):
        client = _client(gw, (await gw.create_key(name="owner"))["key"], opened)
        result = await client.images.generate(model="painter", prompt="a lighthouse", n=2)
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert not image.getexif() and "Comment" not in image.info
    # The lifespan has ended: every span is written.
    rows = gw.rows("SELECT images, cost_usd, modality FROM spans WHERE route LIKE '%images%'")
    assert rows == [(2, pytest.approx(0.04), "image")]


async def test_a_corrupt_edit_upload_is_refused_before_any_upstream_cost(media: Media) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await media.owner.images.edit(
            model="painter", image=("x.jpg", s.corrupt_jpeg(), "image/jpeg"), prompt="fix it"
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "invalid_media"
    with pytest.raises(openai.UnprocessableEntityError):
        await media.owner.images.edit(model="painter", image=[], prompt="no image at all")


async def test_a_video_job_belongs_to_the_key_that_made_it(media: Media) -> None:
    job = await media.owner.videos.create(model="director", prompt="waves", seconds="4")
    assert job.id.startswith("video_") and not job.id.startswith("video_sim")
    with pytest.raises(openai.NotFoundError):
        await media.stranger.videos.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        await media.stranger.videos.download_content(job.id)
    done = await media.owner.videos.retrieve(job.id)
    assert done.status == "completed" and done.model == "director"
    content = await (await media.owner.videos.download_content(job.id)).aread()
    assert content[4:8] == b"ftyp"  # an MP4
