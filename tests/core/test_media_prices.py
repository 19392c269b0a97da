"""Images are priced by quality and size, videos by resolution, from the price catalog."""

from __future__ import annotations

import pytest

from core.config import Price
from core.envelope import Envelope, Modality, Usage
from core.media import media_usage
from core.metering import PriceCatalog

IMAGES = Price(
    provider="up",
    model="painter",
    per_image=0.04,
    per_image_by={"high": 0.17, "high/1024x1536": 0.25, "1024x1536": 0.06},
    per_video_second=0.1,
    per_video_second_by={"1792x1024": 0.5},
)


@pytest.mark.parametrize(
    ("tier", "price"),
    [
        ("high/1024x1536", 0.25),  # the exact tier
        ("low/1024x1536", 0.06),  # the size
        ("high/1024x1024", 0.17),  # the quality
        ("low/1024x1024", 0.04),  # nothing specific: per_image
        (None, 0.04),
    ],
)
def test_the_most_specific_image_tier_sets_the_price(tier: str | None, price: float) -> None:
    assert IMAGES.image_price(tier) == price
    cost = PriceCatalog([IMAGES]).cost("up", "painter", Usage(images=2, media_tier=tier))
    assert cost == pytest.approx(2 * price)


def test_video_seconds_are_priced_by_resolution() -> None:
    catalog = PriceCatalog([IMAGES])
    wide = catalog.cost("up", "painter", Usage(video_seconds=4, media_tier="1792x1024"))
    small = catalog.cost("up", "painter", Usage(video_seconds=4, media_tier="720x1280"))
    assert wide == pytest.approx(2.0) and small == pytest.approx(0.4)


def test_a_negative_tier_price_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Price(provider="up", model="m", per_image_by={"high": -1.0})


def _env(modality: Modality, **params: object) -> Envelope:
    return Envelope("req_1", modality, "painter", params=dict(params))


def test_a_media_request_is_priced_before_it_runs_from_what_it_asks_for() -> None:
    catalog = PriceCatalog([IMAGES])
    asked = media_usage(_env(Modality.IMAGE, n=3, quality="high", size="1024x1536"))
    assert asked is not None and catalog.cost("up", "painter", asked) == pytest.approx(0.75)
    one = media_usage(_env(Modality.IMAGE))
    assert one is not None and one.images == 1 and one.media_tier is None
    video = media_usage(_env(Modality.VIDEO, seconds="8", size="1792x1024"))
    assert video is not None and catalog.cost("up", "painter", video) == pytest.approx(4.0)
    default = media_usage(_env(Modality.VIDEO))
    assert default is not None and default.video_seconds == 4
    assert media_usage(_env(Modality.CHAT, n=3)) is None
