"""Images and video on the real path: `agentgw serve` (media filter on) → `agentgw sim`.

Assertions are on the bytes the upstream received (`GET /_sim/requests` records every body, uploads
as base64), on what the SDK clients got back, and on the gateway's SQLite file (spans, jobs) and
redaction log. Images are made in the tests with Pillow (`tests/filters/media/media_samples.py`).
"""

from __future__ import annotations

import base64
import io
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import av
import httpx
import openai
import pytesseract  # type: ignore[import-untyped]
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.procs import Proc, start_gateway, start_sim
from tests.filters.media import media_samples as s

pytestmark = [
    pytest.mark.e2e,
    # The openai SDK warns that OpenAI's own video service will close; the wire stays ours.
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]

ADMIN = "agw_e2e-media-admin"
MAX_IMAGE_BYTES = 200_000
CONFIG = """\
listen: {{host: 127.0.0.1, max_body_bytes: 4194304}}
store: sqlite:///gw.db
providers: [{{name: up, type: openai, base_url: "{sim}/v1"}}]
models:
  - {{name: vision, targets: [{{provider: up, model: sim-large}}]}}
  - {{name: painter, targets: [{{provider: up, model: sim-image-1}}]}}
  - {{name: director, targets: [{{provider: up, model: sim-video-1}}]}}
prices:
  - {{provider: up, model: sim-large, input_per_1m: 1.0, output_per_1m: 2.0}}
  - {{provider: up, model: sim-image-1, per_image: 0.04, per_image_by: {{high/1024x1536: 0.25}}}}
  - provider: up
    model: sim-video-1
    per_video_second: 0.1
    per_video_second_by: {{1792x1024: 0.5}}
limits:
  - {{level: project, target: media/quota/p, kind: images, amount: 2, window: day}}
  - {{level: project, target: media/quota/p, kind: video_seconds, amount: 6, window: day}}
  - {{level: project, target: media/reads/p, kind: requests, amount: 4, window: day}}
budgets:
  - {{level: project, target: media/budget/p, amount_usd: 0.1, period: day, action: block}}
filters:
  pii: {{action: redact, entities: [EMAIL_ADDRESS, PHONE_NUMBER]}}
  media:
    max_bytes: {max_bytes}
    fetch_remote: true
    fetch_allow_hosts: ["127.0.0.1:{hop_port}"]
    ocr_for: {{keys: [ocr-agent]}}
    ocr_entities: [EMAIL_ADDRESS, PHONE_NUMBER]
"""


@dataclass
class Origin:
    """A local HTTP server that records the paths it was asked for."""

    server: ThreadingHTTPServer
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _origin(routes: dict[str, tuple[int, dict[str, str], bytes]]) -> Origin:
    origin: Origin

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            origin.hits.append(self.path)
            status, headers, body = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    origin = Origin(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=origin.server.serve_forever, daemon=True).start()
    return origin


@dataclass
class Setup:
    sim: Proc
    gateway: Proc
    db: Path
    keys: dict[str, str]
    key_ids: dict[str, str]
    hop: Origin
    trap: Origin

    def openai(self, who: str = "agent") -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.url + "/v1", api_key=self.keys[who], max_retries=0
        )

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.gateway.url, api_key=self.keys["agent"], max_retries=0
        )

    def upstream(self, path: str | None = None) -> list[dict[str, Any]]:
        """Bodies the sim received (chat bodies have no `_path`), oldest first."""
        bodies: list[dict[str, Any]] = httpx.get(self.sim.url + "/_sim/requests").json()
        return [b for b in bodies if b.get("_path") == path]

    def clear(self) -> None:
        httpx.delete(self.sim.url + "/_sim/requests")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("media")
    procs: list[Proc] = []
    # `trap` stands for an internal service; `hop` is the one remote host the config allows,
    # and it redirects into the private network.
    trap = _origin({"/secret": (200, {"Content-Type": "image/png"}, s.png())})
    hop = _origin(
        {
            "/photo.jpg": (200, {"Content-Type": "image/jpeg"}, s.jpeg_with_gps()),
            "/to-loopback": (302, {"Location": trap.url + "/secret"}, b""),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        }
    )
    try:
        sim = start_sim()
        procs.append(sim)
        config = workdir / "agentgw.yaml"
        hop_port = hop.server.server_address[1]
        config.write_text(CONFIG.format(sim=sim.url, max_bytes=MAX_IMAGE_BYTES, hop_port=hop_port))
        gateway = start_gateway(config, env={"AGENTGW_ADMIN_KEY": ADMIN})
        procs.append(gateway)
        made = {
            name: _create_key(gateway, name, path)
            for name, path in (
                ("agent", "media/vision/p"),
                ("ocr-agent", "media/vision/p"),
                ("other", "media/vision/p"),
                ("quota", "media/quota/p"),
                ("budget", "media/budget/p"),
                ("reader", "media/reads/p"),
            )
        }
        keys = {name: record["key"] for name, record in made.items()}
        key_ids = {name: record["id"] for name, record in made.items()}
        yield Setup(sim, gateway, workdir / "gw.db", keys, key_ids, hop, trap)
    finally:
        for proc in reversed(procs):
            proc.stop()
        for origin in (hop, trap):
            origin.server.shutdown()
            origin.server.server_close()


def _vision(url: str, text: str = "What is in this picture?") -> list[Any]:
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": content}]


def _anthropic_image(jpeg: bytes, *texts: str) -> list[Any]:
    """An Anthropic user message: `jpeg` as a base64 image block, then one text block per text."""
    data = base64.b64encode(jpeg).decode()
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": data},
    }
    return [{"role": "user", "content": [image, *({"type": "text", "text": t} for t in texts)]}]


def _sent_image(body: dict[str, Any]) -> bytes:
    for part in body["messages"][-1]["content"]:
        if part.get("type") == "image_url":
            return s.decode_data_url(part["image_url"]["url"])
    raise AssertionError("no image part reached the upstream")


def _assert_no_metadata(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert not image.getexif(), "EXIF reached the upstream"
    assert not image.getexif().get_ifd(s.GPS_IFD)
    assert not image.info.get("exif") and not image.info.get("xmp")
    for marker in (b"Exif\x00\x00", b"SecretCam", b"secret-xmp", b"secret-comment", b"tEXt"):
        assert marker not in data, marker


def test_a_gps_jpeg_reaches_the_upstream_without_any_metadata(setup: Setup) -> None:
    original = s.jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(s.GPS_IFD)
    setup.clear()
    reply = setup.openai().chat.completions.create(
        model="vision", messages=_vision(s.data_url("image/jpeg", original))
    )
    assert reply.choices[0].message.content
    [body] = setup.upstream()
    sent = _sent_image(body)
    _assert_no_metadata(sent)
    assert Image.open(io.BytesIO(sent)).size == (64, 32)


def test_an_anthropic_image_block_is_stripped_the_same_way(setup: Setup) -> None:
    setup.clear()
    setup.anthropic().messages.create(
        model="vision", max_tokens=20, messages=_anthropic_image(s.jpeg_with_gps(), "Describe it.")
    )
    [body] = setup.upstream()
    _assert_no_metadata(_sent_image(body))


def test_an_anthropic_client_gets_a_corrupt_image_refused_in_its_own_shape(setup: Setup) -> None:
    setup.clear()
    with pytest.raises(anthropic.BadRequestError) as caught:
        setup.anthropic().messages.create(
            model="vision", max_tokens=20, messages=_anthropic_image(s.corrupt_jpeg())
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert setup.upstream() == []


def test_ocr_redaction_boxes_out_an_email_and_a_phone_for_the_opted_in_key(setup: Setup) -> None:
    screenshot = s.screenshot()
    read = pytesseract.image_to_string(Image.open(io.BytesIO(screenshot)))
    assert s.EMAIL in read and s.PHONE in read  # the test image itself is readable
    setup.clear()
    setup.openai("ocr-agent").chat.completions.create(
        model="vision", messages=_vision(s.data_url("image/png", screenshot))
    )
    setup.openai("agent").chat.completions.create(
        model="vision", messages=_vision(s.data_url("image/png", screenshot))
    )
    redacted, untouched = (_sent_image(b) for b in setup.upstream())
    seen = pytesseract.image_to_string(Image.open(io.BytesIO(redacted)))
    assert s.EMAIL not in seen and s.PHONE not in seen, seen
    assert "@" not in seen and "0187" not in seen
    # OCR is opt-in per key: the other key's screenshot went on unredacted (but stripped).
    assert s.EMAIL in pytesseract.image_to_string(Image.open(io.BytesIO(untouched)))

    ocr_key = setup.key_ids["ocr-agent"]
    events = [
        event
        for entity in ("EMAIL_ADDRESS", "PHONE_NUMBER")
        for event in _redactions(setup, {"entity_type": entity, "key_id": ocr_key})
    ]
    assert {e["entity_type"] for e in events} == {"EMAIL_ADDRESS", "PHONE_NUMBER"}
    for event in events:
        assert event["scope"] == "media" and event["filter"] == "media"
        assert event["action"] == "redact" and event["start"] is not None
        assert s.EMAIL not in str(event) and s.PHONE not in str(event)
    assert not any(s.EMAIL in t or s.PHONE in t for t in _all_text(setup.db))


def _noise_png(side: int) -> bytes:
    # Random pixels do not compress: the PNG is about side*side*3 bytes.
    pixels = random.Random(7).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, format="PNG")
    return out.getvalue()


def _loopback(sim: Proc) -> str:
    return sim.url + "/healthz"


def _metadata_service(sim: Proc) -> str:
    return "http://169.254.169.254/latest/"


def _inline(mime: str, make: Callable[[], bytes]) -> Callable[[Proc], str]:
    return lambda sim: s.data_url(mime, make())


BAD: dict[str, tuple[Callable[[Proc], str], int, str]] = {
    "oversized": (_inline("image/png", lambda: _noise_png(400)), 413, "media_too_large"),
    "corrupt": (_inline("image/jpeg", s.corrupt_jpeg), 400, "invalid_media"),
    "bomb": (_inline("image/png", s.decompression_bomb), 413, "media_too_large"),
    "format": (_inline("image/png", s.bmp), 400, "unsupported_media_format"),
    "loopback": (_loopback, 403, "remote_media_refused"),
    "metadata-ip": (_metadata_service, 403, "remote_media_refused"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_images_are_a_clear_4xx_and_nothing_reaches_the_upstream(
    setup: Setup, case: str
) -> None:
    make, status, code = BAD[case]
    url = make(setup.sim)
    assert case != "oversized" or len(s.decode_data_url(url)) > MAX_IMAGE_BYTES
    setup.clear()
    with pytest.raises(openai.APIStatusError) as caught:
        setup.openai().chat.completions.create(model="vision", messages=_vision(url))
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == code, body
    assert httpx.get(setup.sim.url + "/_sim/requests").json() == []


def test_images_generate_returns_stripped_images_metered_per_image(setup: Setup) -> None:
    setup.clear()
    raw = setup.openai().images.with_raw_response.generate(
        model="painter", prompt="a red fox in snow", n=2, size="512x512"
    )
    request_id = raw.headers["x-request-id"]
    result = raw.parse()
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json
        data = base64.b64decode(item.b64_json)
        assert Image.open(io.BytesIO(data)).format == "PNG"
        _assert_no_metadata(data)
        assert b"sim-generated" not in data
    [sent] = setup.upstream("/v1/images/generations")
    assert sent["prompt"] == "a red fox in snow" and sent["model"] == "sim-image-1"
    span = _span(setup, request_id)
    assert span["images"] == 2 and span["modality"] == "image"
    assert span["cost_usd"] == pytest.approx(0.08)


def test_image_and_video_prices_follow_quality_size_and_resolution(setup: Setup) -> None:
    client = setup.openai()
    raw = client.images.with_raw_response.generate(
        model="painter", prompt="a tall portrait", quality="high", size="1024x1536"
    )
    assert _span(setup, raw.headers["x-request-id"])["cost_usd"] == pytest.approx(0.25)
    raw_job = client.videos.with_raw_response.create(
        model="director", prompt="a wide shot", seconds="8", size="1792x1024"
    )
    span = _span(setup, raw_job.headers["x-request-id"])
    assert span["video_seconds"] == 8 and span["cost_usd"] == pytest.approx(4.0)


def test_image_and_video_prompts_go_through_the_pii_filter(setup: Setup) -> None:
    setup.clear()
    client = setup.openai()
    client.images.generate(model="painter", prompt=f"a poster saying {s.EMAIL}")
    client.videos.create(model="director", prompt=f"a sign reading {s.EMAIL}", seconds="4")
    [image] = setup.upstream("/v1/images/generations")
    [video] = setup.upstream("/v1/videos")
    for sent in (image, video):
        assert s.EMAIL not in sent["prompt"] and "EMAIL_ADDRESS" in sent["prompt"]


def test_an_image_edit_upload_is_stripped_before_the_upstream_gets_it(setup: Setup) -> None:
    setup.clear()
    result = setup.openai().images.edit(
        model="painter",
        image=("photo.jpg", s.jpeg_with_gps(), "image/jpeg"),
        prompt="make it blue",
    )
    assert result.data and result.data[0].b64_json
    _assert_no_metadata(base64.b64decode(result.data[0].b64_json))
    [sent] = setup.upstream("/v1/images/edits")
    uploaded = sent.get("image") or sent.get("image[]")
    assert uploaded and sent["prompt"] == "make it blue"
    _assert_no_metadata(base64.b64decode(uploaded[0]))


def test_image_quota_counts_images_not_requests(setup: Setup) -> None:
    client = setup.openai("quota")
    client.images.generate(model="painter", prompt="one", n=2)
    with pytest.raises(openai.RateLimitError):
        client.images.generate(model="painter", prompt="two", n=1)


def test_video_quota_counts_the_seconds_a_job_asks_for(setup: Setup) -> None:
    client = setup.openai("quota")
    client.videos.create(model="director", prompt="four seconds", seconds="4")
    setup.clear()
    with pytest.raises(openai.RateLimitError):
        client.videos.create(model="director", prompt="four more", seconds="4")
    assert setup.upstream("/v1/videos") == []


def test_a_video_part_in_chat_is_checked_and_carried(setup: Setup) -> None:
    setup.clear()
    clip = s.data_url("video/mp4", s.mp4())
    content = [
        {"type": "text", "text": "Summarize"},
        {"type": "video_url", "video_url": {"url": clip}},
    ]
    setup.openai().chat.completions.create(
        model="vision",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item,misc]
    )
    [body] = setup.upstream()
    parts = body["messages"][-1]["content"]
    assert [p["video_url"]["url"] for p in parts if p["type"] == "video_url"] == [clip]
    broken = [
        content[0],
        {"type": "video_url", "video_url": {"url": s.data_url("video/mp4", b"not a video")}},
    ]
    setup.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        setup.openai().chat.completions.create(
            model="vision",
            messages=[{"role": "user", "content": broken}],  # type: ignore[list-item,misc]
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "invalid_media"
    assert setup.upstream() == []


def test_video_create_poll_download_through_the_gateway(setup: Setup) -> None:
    setup.clear()
    client = setup.openai()
    raw = client.videos.with_raw_response.create(
        model="director",
        prompt="a cat surfing at dawn",
        seconds="4",
        size="720x1280",
        input_reference=("ref.jpg", s.jpeg_with_gps(), "image/jpeg"),
    )
    request_id = raw.headers["x-request-id"]
    job = raw.parse()
    assert job.id.startswith("video_") and job.model == "director"
    [sent] = setup.upstream("/v1/videos")
    _assert_no_metadata(base64.b64decode(sent["input_reference"][0]))
    assert sent["model"] == "sim-video-1" and sent["seconds"] == "4"

    done = client.videos.poll(job.id, poll_interval_ms=10)
    assert done.status == "completed" and done.id == job.id
    content = client.videos.download_content(job.id).read()
    with av.open(io.BytesIO(content), mode="r") as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 4

    span = _span(setup, request_id)
    assert span["video_seconds"] == 4 and span["modality"] == "video"
    assert span["cost_usd"] == pytest.approx(0.4)
    with sqlite3.connect(setup.db) as conn:
        upstream_id, key_id = conn.execute(
            "SELECT upstream_id, key_id FROM video_jobs WHERE id = ?", (job.id,)
        ).fetchone()
    assert upstream_id.startswith("video_sim") and upstream_id != job.id
    assert key_id == setup.key_ids["agent"]
    assert upstream_id not in str(done.model_dump())


def test_another_key_cannot_see_or_download_the_job(setup: Setup) -> None:
    job = setup.openai().videos.create(model="director", prompt="a quiet lake", seconds="4")
    other = setup.openai("other")
    with pytest.raises(openai.NotFoundError):
        other.videos.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        other.videos.download_content(job.id)
    with pytest.raises(openai.NotFoundError):
        setup.openai().videos.retrieve("video_" + "0" * 32)
    assert setup.openai().videos.retrieve(job.id).id == job.id


def test_a_video_prompt_without_a_prompt_is_422_and_not_sent(setup: Setup) -> None:
    setup.clear()
    resp = httpx.post(
        setup.gateway.url + "/v1/videos",
        json={"model": "director"},
        headers={"Authorization": f"Bearer {setup.keys['agent']}"},
    )
    assert resp.status_code == 422 and resp.json()["error"]["param"] == "prompt"
    assert setup.upstream("/v1/videos") == []


def test_an_images_call_reserves_its_catalog_price_against_a_block_budget(setup: Setup) -> None:
    # The budget is $0.10; an image costs $0.04. Tokens alone would reserve nothing.
    client = setup.openai("budget")
    setup.clear()
    with pytest.raises(openai.RateLimitError):
        client.videos.create(model="director", prompt="a long shot", seconds="4")  # $0.40
    assert setup.upstream("/v1/videos") == []
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model="painter", prompt="three foxes", n=3)  # $0.12
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "insufficient_quota"
    assert setup.upstream("/v1/images/generations") == []
    result = client.images.generate(model="painter", prompt="two foxes", n=2)  # $0.08
    assert result.data is not None and len(result.data) == 2
    setup.clear()
    with pytest.raises(openai.RateLimitError):
        client.images.generate(model="painter", prompt="one more fox", n=1)  # $0.12 in all
    assert setup.upstream("/v1/images/generations") == []


def test_video_status_and_content_reads_count_against_requests_limits(setup: Setup) -> None:
    client = setup.openai("reader")  # 4 requests a day
    job = client.videos.create(model="director", prompt="rain on a window", seconds="4")
    assert client.videos.retrieve(job.id).id == job.id
    assert client.videos.download_content(job.id).read()[4:8] == b"ftyp"
    with pytest.raises(openai.NotFoundError):  # a miss counts too: ids cannot be probed free
        client.videos.retrieve("video_" + "0" * 32)
    resp = httpx.get(
        f"{setup.gateway.url}/v1/videos/{job.id}",
        headers={"Authorization": f"Bearer {setup.keys['reader']}"},
    )
    assert resp.status_code == 429 and int(resp.headers["retry-after"]) > 0
    error = resp.json()["error"]
    assert (
        error["code"] == "rate_limit_exceeded" and error["type"] and "requests" in error["message"]
    )
    with pytest.raises(openai.RateLimitError):
        client.videos.download_content(job.id)


def test_image_edits_accept_the_json_form_through_the_same_checks(setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {setup.keys['agent']}"}
    photo = s.data_url("image/jpeg", s.jpeg_with_gps())
    setup.clear()
    resp = httpx.post(
        setup.gateway.url + "/v1/images/edits",
        json={
            "model": "painter",
            "prompt": "make it blue",
            "images": [{"image_url": photo}, {"image_url": setup.hop.url + "/photo.jpg"}],
            "mask": {"image_url": s.data_url("image/png", s.png_with_text())},
        },
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    assert base64.b64decode(resp.json()["data"][0]["b64_json"])
    [sent] = setup.upstream("/v1/images/edits")
    assert sent["prompt"] == "make it blue" and len(sent["image[]"]) == 2
    for uploaded in (*sent["image[]"], *sent["mask"]):
        _assert_no_metadata(base64.b64decode(uploaded))

    refused = {
        "corrupt": ({"image_url": s.data_url("image/jpeg", s.corrupt_jpeg())}, 400),
        "loopback": ({"image_url": setup.sim.url + "/healthz"}, 403),
        "file_id": ({"file_id": "file-abc"}, 400),
    }
    setup.clear()
    for name, (ref, status) in refused.items():
        body = {"model": "painter", "prompt": "edit", "images": [ref]}
        resp = httpx.post(setup.gateway.url + "/v1/images/edits", json=body, headers=headers)
        assert resp.status_code == status, (name, resp.text)
        assert resp.json()["error"]["message"], name
    resp = httpx.post(
        setup.gateway.url + "/v1/images/edits",
        json={"model": "painter", "prompt": "edit", "images": []},
        headers=headers,
    )
    assert resp.status_code == 422 and resp.json()["error"]["param"] == "images"
    assert setup.upstream("/v1/images/edits") == []


def test_an_allowed_host_redirecting_into_the_private_network_is_refused(setup: Setup) -> None:
    # The allowlisted first hop is fetched (a plain image from it passes)...
    setup.clear()
    setup.openai().chat.completions.create(
        model="vision", messages=_vision(setup.hop.url + "/photo.jpg")
    )
    _assert_no_metadata(_sent_image(setup.upstream()[0]))
    # ...but where it redirects to is checked on its own: loopback and link-local are refused.
    setup.clear()
    for path in ("/to-loopback", "/to-metadata"):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            setup.openai().chat.completions.create(
                model="vision", messages=_vision(setup.hop.url + path)
            )
        body = caught.value.body
        assert isinstance(body, dict) and body["code"] == "remote_media_refused", body
        assert path in setup.hop.hits
    assert setup.trap.hits == []  # nothing was fetched from the private address
    assert setup.upstream() == []


def test_media_metrics_count_images_stripped_refused_and_bytes(setup: Setup) -> None:
    def read() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = httpx.get(setup.gateway.url + "/metrics").text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    keys = [
        ("agentgw_media_processed_total", frozenset({("kind", "image")})),
        ("agentgw_media_stripped_total", frozenset()),
        (
            "agentgw_media_refused_total",
            frozenset({("kind", "image"), ("reason", "invalid_media")}),
        ),
        ("agentgw_media_bytes_total", frozenset({("direction", "in")})),
    ]
    before = read()
    photo = s.jpeg_with_gps()
    client = setup.openai()
    client.chat.completions.create(
        model="vision", messages=_vision(s.data_url("image/jpeg", photo))
    )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="vision", messages=_vision(s.data_url("image/jpeg", s.corrupt_jpeg()))
        )
    after = read()
    processed, stripped, refused, received = (after[k] - before.get(k, 0.0) for k in keys)
    assert (processed, stripped, refused) == (1, 1, 1)
    assert received == len(photo) + len(s.corrupt_jpeg())


# -- helpers ----------------------------------------------------------------------------------


def _create_key(gateway: Proc, name: str, org_path: str) -> dict[str, str]:
    resp = httpx.post(
        gateway.url + "/admin/keys",
        json={"name": name, "org_path": org_path},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert resp.status_code == 201, resp.text
    record: dict[str, str] = resp.json()
    return record


def _wait_for(read: Any, what: str) -> Any:
    # Spans and redaction events land through the write-behind queue: wait for them.
    deadline = time.monotonic() + 10
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never arrived")


def _span(setup: Setup, request_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        with sqlite3.connect(setup.db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM spans WHERE request_id = ?", (request_id,)).fetchone()
        return dict(row) if row else None

    span: dict[str, Any] = _wait_for(read, f"span {request_id}")
    return span


def _redactions(setup: Setup, params: dict[str, str]) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        resp = httpx.get(
            setup.gateway.url + "/admin/redactions",
            params=params,
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert resp.status_code == 200, resp.text
        data: list[dict[str, Any]] = resp.json()["data"]
        return data

    events: list[dict[str, Any]] = _wait_for(read, f"redactions {params}")
    return events


def _all_text(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [str(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"')]
