"""OCR redaction in process: boxes over the entities, findings without values, and failure closed
when Tesseract is missing (at start: a config error; on a request: 503)."""

from __future__ import annotations

import io

import pytesseract  # type: ignore[import-untyped]
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from core.access import Principal
from core.config import ConfigError
from core.config import MediaFilter as MediaConfig
from core.envelope import Envelope, ImagePart, Message, Modality, Scope
from core.errors import FilterUnavailable
from core.filtering import Continue, FilterContext, Reject
from core.metrics import MediaMetrics
from filters.media import MediaFilter, UnsupportedMediaFormat
from tests.filters.media import media_samples as s

pytestmark = pytest.mark.anyio

CONFIG = MediaConfig(ocr=True, ocr_entities=["EMAIL_ADDRESS", "PHONE_NUMBER"])
CTX = FilterContext("req_1", Principal("key_1", "k", "a/b/c"), "span_1", {})


def _env(part: ImagePart) -> Envelope:
    return Envelope("req_1", Modality.CHAT, "vision", [Message("user", [part])])


async def test_boxes_cover_the_email_and_phone_and_findings_hold_no_value() -> None:
    registry = CollectorRegistry()
    media = MediaFilter(CONFIG, metrics=MediaMetrics(registry))
    await media.warm()
    part = ImagePart(s.data_url("image/png", s.screenshot()))
    env = _env(part)
    assert isinstance(await media.on_request(env, CTX), Continue)
    seen = pytesseract.image_to_string(Image.open(io.BytesIO(s.decode_data_url(part.url))))
    assert s.EMAIL not in seen and s.PHONE not in seen
    found = {f.kind: f for f in env.findings if f.action == "redact"}
    assert set(found) == {"EMAIL_ADDRESS", "PHONE_NUMBER"}
    for finding in found.values():
        assert finding.scope is Scope.MEDIA and finding.start is not None
        assert finding.value_hash is None  # no value, not even hashed
    assert registry.get_sample_value("agentgw_media_ocr_runs_total") == 1
    for entity in ("EMAIL_ADDRESS", "PHONE_NUMBER"):
        found_total = "agentgw_media_ocr_findings_total"
        assert registry.get_sample_value(found_total, {"entity": entity}) == 1


async def test_ocr_without_tesseract_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = MediaFilter(CONFIG)
    await loaded.warm()
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "tesseract-not-installed")
    with pytest.raises(ConfigError, match="tesseract"):
        await MediaFilter(CONFIG).warm()
    decision = await loaded.on_request(_env(ImagePart(s.data_url("image/png", s.png()))), CTX)
    assert isinstance(decision, Reject) and isinstance(decision.error, FilterUnavailable)
    assert decision.error.status == 503


async def test_an_animation_for_an_ocr_key_is_refused_not_partly_redacted() -> None:
    media = MediaFilter(CONFIG)
    await media.warm()
    decision = await media.on_request(
        _env(ImagePart(s.data_url("image/gif", s.animated("GIF")))), CTX
    )
    assert isinstance(decision, Reject) and isinstance(decision.error, UnsupportedMediaFormat)
    assert decision.error.status == 400 and "OCR" in decision.error.message
