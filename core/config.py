"""The YAML configuration: schema, `${ENV}` interpolation and validation at load.

This is the only module that reads environment variables. Everything else receives the frozen
`Config` built here. A bad file fails at start with the file, the key and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.rulespec import BudgetSpec, GovernanceSpec, LimitSpec, RedisSpec
from core.timestamps import parse_instant

DEFAULT_STORE = "sqlite:///agentgw.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 10 * 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, gt=0)


class Quirks(_Model):
    """What an OpenAI-wire upstream does differently: applied by its egress, noted on the span."""

    # The name this upstream wants for the output-token limit (None: as the client sent it).
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    # Request fields this upstream refuses; removed before sending, each noted on the span.
    drop_params: list[str] = Field(default_factory=list)


class Provider(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    type: Literal["openai", "anthropic", "sim"]
    base_url: str | None = None
    api_key: str | None = None
    network: Literal["private", "public"] = "public"
    headers: dict[str, str] = Field(default_factory=dict)
    quirks: Quirks = Field(default_factory=Quirks)
    timeout_seconds: float = Field(600.0, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    # Options of the built-in simulated model (type: sim).
    sim: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs_url(self) -> Provider:
        if self.type != "sim" and not self.base_url:
            raise ValueError(f"provider '{self.name}' of type {self.type} needs a base_url")
        return self


class Circuit(_Model):
    failures: int = Field(5, ge=1)
    window_seconds: float = Field(30.0, gt=0)
    open_seconds: float = Field(30.0, gt=0)


class Backoff(_Model):
    """Jittered exponential backoff between failover rounds (see `VirtualModel.retries`)."""

    base_ms: float = Field(50.0, gt=0)
    max_ms: float = Field(2000.0, gt=0)


class CachePolicy(_Model):
    """Opt-in exact-match response cache of a virtual model (non-streaming replies)."""

    ttl_seconds: float = Field(gt=0)


class Target(_Model):
    provider: str
    model: str
    weight: float = Field(1.0, ge=0)
    context_window: int | None = Field(None, gt=0)
    hours: str | None = Field(None, pattern=r"^\d{1,2}-\d{1,2}$")
    # Per-target timeouts on top of the provider's own connect and total timeouts.
    timeout_seconds: float | None = Field(None, gt=0)
    first_byte_timeout_seconds: float | None = Field(None, gt=0)
    # What the target accepts: modalities (empty: every one), tool use and image input.
    supports: list[
        Literal["chat", "embedding", "voice", "image", "video", "tool", "moderation"]
    ] = Field(default_factory=list)
    tools: bool = True
    vision: bool = True

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None:
            return v
        start, end = (int(h) for h in v.split("-"))
        if start > 23 or end > 24 or start == end % 24:
            raise ValueError("expected UTC hours 'H-H' with start 0..23, end 0..24, not empty")
        return v


class VirtualModel(_Model):
    name: str = Field(min_length=1, max_length=256)
    strategy: Literal["priority", "weighted", "least-latency", "least-busy", "cost"] = "priority"
    targets: list[Target] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    circuit: Circuit = Field(default_factory=Circuit)
    privacy_mode: bool = False
    default_max_tokens: int = Field(1024, gt=0)
    # Extra failover rounds over the candidates after all failed retryably (0: each once).
    retries: int = Field(0, ge=0, le=10)
    backoff: Backoff = Field(default_factory=Backoff)
    affinity: Literal["prefix"] | None = None
    cache: CachePolicy | None = None


class Price(_Model):
    provider: str
    model: str
    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)
    cached_input_per_1m: float | None = Field(None, ge=0)
    per_image: float = Field(0.0, ge=0)
    per_video_second: float = Field(0.0, ge=0)
    per_audio_second: float = Field(0.0, ge=0)
    per_call: float = Field(0.0, ge=0)
    # Charged only when set: prompt-cache writes, and reasoning tokens (which are part of the
    # output tokens) at their own price instead of the output price.
    cache_write_per_1m: float | None = Field(None, ge=0)
    reasoning_per_1m: float | None = Field(None, ge=0)
    # Self-hosted targets: USD per second of upstream (GPU) time, on top of any token prices.
    per_gpu_second: float = Field(0.0, ge=0)
    # Media price tiers overriding `per_image` / `per_video_second`, keyed by "quality/size"
    # ("high/1024x1536"), a size ("1024x1024", "720x1280") or a quality ("low").
    per_image_by: dict[str, float] = Field(default_factory=dict)
    per_video_second_by: dict[str, float] = Field(default_factory=dict)
    # From when this price applies (ISO 8601 or epoch seconds, UTC); absent: always. A change of
    # price is a new entry with a later date, so calls already metered keep their price.
    effective_from: str | None = None

    @field_validator("effective_from")
    @classmethod
    def _instant(cls, v: str | None) -> str | None:
        if v is not None:
            parse_instant(v)
        return v

    @field_validator("per_image_by", "per_video_second_by")
    @classmethod
    def _tier_prices(cls, v: dict[str, float]) -> dict[str, float]:
        if any(p < 0 for p in v.values()):
            raise ValueError("tier prices must not be negative")
        return v

    def image_price(self, tier: str | None) -> float:
        """USD per image of `tier` ("quality/size"): the most specific tier priced, else
        `per_image`."""
        return _tier_price(self.per_image_by, tier, self.per_image)

    def video_second_price(self, tier: str | None) -> float:
        """USD per video second of `tier` (a size such as "1280x720"), else `per_video_second`."""
        return _tier_price(self.per_video_second_by, tier, self.per_video_second)


def _tier_price(prices: dict[str, float], tier: str | None, default: float) -> float:
    if not tier or not prices:
        return default
    parts = tier.split("/")
    for key in (tier, *reversed(parts)):
        if key in prices:
            return prices[key]
    return default


class McpServer(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    on_tool_change: Literal["alert", "hide"] = "alert"
    # Protocol era towards this upstream: auto (2026-07-28, else the session handshake) or legacy
    # (always the 2025-11-25 session; an upstream that asks the agent questions needs it).
    mode: Literal["auto", "legacy"] = "auto"
    # USD per tool call (all tools of this server), overridden per upstream tool name.
    price_per_call: float | None = Field(None, ge=0)
    tool_prices: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"mcp server '{self.name}' (stdio) needs a command")
        if self.transport == "http" and not self.url:
            raise ValueError(f"mcp server '{self.name}' (http) needs a url")
        return self


class McpSettings(_Model):
    """The agent-facing MCP endpoint: limits and the upstreams' health policy."""

    # Above this many tools visible to a caller, `tools/list` offers the `search_tools` meta-tool
    # and only the first tools up to this count.
    search_tools_threshold: int = Field(128, gt=1)
    page_size: int = Field(100, gt=0)
    call_timeout_seconds: float = Field(60.0, gt=0)
    health_interval_seconds: float = Field(15.0, gt=0)
    retry_initial_seconds: float = Field(0.2, gt=0)
    retry_max_seconds: float = Field(10.0, gt=0)
    # Upstream sessions kept per server (one per downstream session; the oldest idle one closes).
    max_sessions_per_server: int = Field(64, gt=0)
    session_idle_seconds: float = Field(600.0, gt=0)
    # Host and Origin values accepted on /mcp besides loopback (DNS-rebinding protection).
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)


PiiAction = Literal["redact", "mask", "hash", "pseudonymize", "block"]


class PiiRecognizer(_Model):
    """A custom regex recognizer: the entity type `name` is found where `pattern` matches, with
    `score`; when `context` words are given, only with one of them within 48 characters."""

    name: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")
    pattern: str = Field(min_length=1)
    score: float = Field(0.6, ge=0.0, le=1.0)
    context: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        return v


class PiiPolicyMatch(_Model):
    keys: list[str] = Field(default_factory=list)  # key ids or names
    org_paths: list[str] = Field(default_factory=list)  # org-path prefixes: a team, a department

    @model_validator(mode="after")
    def _not_empty(self) -> PiiPolicyMatch:
        if not self.keys and not self.org_paths:
            raise ValueError("a policy must match some keys or org_paths")
        return self


class PiiPolicy(_Model):
    match: PiiPolicyMatch
    action: PiiAction | None = None
    actions: dict[str, PiiAction] = Field(default_factory=dict)


class PiiFilter(_Model):
    action: PiiAction = "redact"
    entities: list[str] = Field(default_factory=list)
    ner: bool = False
    timeout_ms: int = Field(2000, gt=0)
    fail: Literal["closed", "open"] = "closed"
    # Per entity type, overriding `action` (e.g. {CREDIT_CARD: block, PERSON: pseudonymize}).
    actions: dict[str, PiiAction] = Field(default_factory=dict)
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    # Per entity type, overriding `score_threshold` (e.g. {PHONE_NUMBER: 0.6}).
    thresholds: dict[str, float] = Field(default_factory=dict)
    # HMAC key of hash tokens and of the redaction log's value hashes (e.g. ${AGENTGW_PII_SECRET});
    # when absent one is generated once and kept in the store's settings.
    secret: str | None = None
    retention_days: float = Field(90.0, gt=0)
    # Values never treated as PII (exact, case-insensitive), and values always treated as PII
    # (entity type -> literal values), e.g. internal code names.
    allow_list: list[str] = Field(default_factory=list)
    deny_list: dict[str, list[str]] = Field(default_factory=dict)
    # Custom regex recognizers (checked at load: a pattern that does not compile is an error).
    recognizers: list[PiiRecognizer] = Field(default_factory=list)
    # Languages whose specific entities are looked for: en (NER), zh (CN resident ID, mobile).
    # Pattern recognizers (e-mail, cards, IBAN …) read text in any language.
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"])
    # Worker processes that run the analysis (each loads its own analyzer), taking it off the
    # gateway's event loop and onto other cores; 0 (the default): analysed in the gateway.
    workers: int = Field(0, ge=0, le=64)
    # Per key or team: the first policy whose `match` fits the caller replaces action/actions.
    policies: list[PiiPolicy] = Field(default_factory=list)

    @field_validator("thresholds")
    @classmethod
    def _scores(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, score in v.items() if not 0.0 <= score <= 1.0)
        if bad:
            raise ValueError(f"must be in 0..1 (for {', '.join(bad)})")
        return v


class ModerationCategory(_Model):
    terms: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)


class ModerationFilter(_Model):
    action: Literal["block", "flag"] = "block"
    # A virtual model serving the OpenAI `/v1/moderations` wire, reached through agentgw's routing.
    model: str | None = None
    fail: Literal["closed", "open"] = "closed"
    timeout_ms: int = Field(5000, gt=0)
    # Score (0..1) at which a model's category counts, per category (default 0.5).
    thresholds: dict[str, float] = Field(default_factory=dict)
    # Custom categories (or more terms/patterns for a default one), and which ones are checked.
    categories: dict[str, ModerationCategory] = Field(default_factory=dict)
    enabled: list[str] | None = None


class InjectionFilter(_Model):
    action: Literal["flag", "block"] = "flag"


ImageFormat = Literal["jpeg", "png", "webp", "gif"]
VideoFormat = Literal["mp4", "webm", "mov"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "webp", "gif")
VIDEO_FORMATS: tuple[VideoFormat, ...] = ("mp4", "webm", "mov")


class OcrScope(_Model):
    """Who gets OCR redaction when not everyone does: key ids or names, org-path prefixes."""

    keys: list[str] = Field(default_factory=list)
    org_paths: list[str] = Field(default_factory=list)


class MediaFilter(_Model):
    """`filters.media`: images and videos checked, stripped and (opt-in) OCR-redacted."""

    strip_metadata: bool = True
    # ICC colour profiles are metadata too, but harmless and useful: kept only when asked.
    keep_icc: bool = False
    ocr: bool = False
    ocr_for: OcrScope = Field(default_factory=OcrScope)
    ocr_entities: list[str] = Field(
        default_factory=lambda: ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN"]
    )
    # Per image, for checking, OCR and re-encoding together; over it the request fails closed.
    timeout_ms: int = Field(15_000, gt=0)
    formats: list[ImageFormat] = Field(default_factory=lambda: list(IMAGE_FORMATS))
    max_bytes: int = Field(5 * 1024 * 1024, gt=0)
    max_pixels: int = Field(25_000_000, gt=0)
    # Longest side in pixels per virtual model (`"*"` for every other one); larger images shrink.
    downscale: dict[str, int] = Field(default_factory=dict)
    fetch_remote: bool = False
    allow_private_addresses: bool = False
    fetch_timeout_seconds: float = Field(10.0, gt=0)
    max_redirects: int = Field(3, ge=0, le=10)
    # `host` or `host:port` exempt from the private-address check (that exact hop only, never
    # where it redirects to): e.g. an internal image service.
    fetch_allow_hosts: list[str] = Field(default_factory=list)
    video_formats: list[VideoFormat] = Field(default_factory=lambda: list(VIDEO_FORMATS))
    max_video_bytes: int = Field(50 * 1024 * 1024, gt=0)
    # Animated GIF/WebP/APNG: `keep` re-encodes every frame without metadata; `refuse` is a 4xx.
    animated: Literal["keep", "refuse"] = "keep"
    max_frames: int = Field(200, gt=0)

    @field_validator("downscale")
    @classmethod
    def _sides(cls, v: dict[str, int]) -> dict[str, int]:
        if any(side < 16 for side in v.values()):
            raise ValueError("each longest side must be at least 16 pixels")
        return v


class Filters(_Model):
    pii: PiiFilter | None = None
    moderation: ModerationFilter | None = None
    injection: InjectionFilter | None = None
    media: MediaFilter | None = None


class Webhook(_Model):
    url: str


class Anomaly(_Model):
    bucket_seconds: int = Field(3600, gt=0)
    min_buckets: int = Field(24, gt=0)


class Alerts(_Model):
    webhooks: list[Webhook] = Field(default_factory=list)
    # Webhook delivery: attempts per alert, the first retry's delay (doubling, capped at 5 min).
    attempts: int = Field(8, gt=0, le=100)
    backoff_seconds: float = Field(1.0, gt=0)
    timeout_seconds: float = Field(5.0, gt=0)
    anomaly: Anomaly = Field(default_factory=Anomaly)


class Tracing(_Model):
    otlp_endpoint: str | None = None
    # Sent with every export (e.g. a collector's API key); OTEL_EXPORTER_OTLP_HEADERS works too.
    otlp_headers: dict[str, str] = Field(default_factory=dict)


class Voice(_Model):
    """Realtime sessions and the audio endpoints."""

    # A client frame over this size gets an error event and is dropped (the session goes on).
    max_frame_bytes: int = Field(1024 * 1024, gt=0)
    # Asked of the upstream when the gateway needs the caller's words as text (moderation gate).
    transcription_model: str = "gpt-4o-mini-transcribe"


class Spans(_Model):
    queue_size: int = Field(10_000, gt=0)
    batch_size: int = Field(256, gt=0)


class Replicas(_Model):
    """`replicas:` how changes reach other replicas when the Redis bus is down."""

    # Models and rules are re-read this often while the bus is down (keys: their cache TTL).
    poll_seconds: float = Field(5.0, gt=0)


class Shutdown(_Model):
    """`shutdown:` on SIGTERM, in-flight requests and streams get this long to finish."""

    drain_seconds: int = Field(30, ge=0)


class Config(_Model):
    """The whole validated configuration."""

    listen: Listen = Field(default_factory=Listen)
    store: str = DEFAULT_STORE
    # A URL string or `{url, max_connections, timeout_ms}`; either becomes a `RedisSpec`.
    redis: RedisSpec | None = None
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    limits: list[LimitSpec] = Field(default_factory=list)
    budgets: list[BudgetSpec] = Field(default_factory=list)
    admin_key: str | None = None
    providers: list[Provider] = Field(default_factory=list)
    models: list[VirtualModel] = Field(default_factory=list)
    prices: list[Price] = Field(default_factory=list)
    mcp_servers: list[McpServer] = Field(default_factory=list)
    mcp: McpSettings = Field(default_factory=McpSettings)
    filters: Filters = Field(default_factory=Filters)
    alerts: Alerts = Field(default_factory=Alerts)
    tracing: Tracing = Field(default_factory=Tracing)
    spans: Spans = Field(default_factory=Spans)
    replicas: Replicas = Field(default_factory=Replicas)
    shutdown: Shutdown = Field(default_factory=Shutdown)
    voice: Voice = Field(default_factory=Voice)

    @field_validator("redis", mode="before")
    @classmethod
    def _redis_url(cls, v: object) -> object:
        return {"url": v} if isinstance(v, str) else v

    @field_validator("store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        if not (v.startswith(("sqlite:///", "postgresql://", "postgres://")) or v == "memory://"):
            raise ValueError("expected sqlite:///path, postgresql://… or memory://")
        return v

    @model_validator(mode="after")
    def _references(self) -> Config:
        providers = {p.name for p in self.providers}
        if len(providers) != len(self.providers):
            raise ValueError("provider names must be unique")
        models = {m.name for m in self.models}
        if len(models) != len(self.models):
            raise ValueError("virtual model names must be unique")
        for i, m in enumerate(self.models):
            for j, t in enumerate(m.targets):
                if t.provider not in providers:
                    raise ValueError(
                        f"models[{i}].targets[{j}].provider: unknown provider '{t.provider}'"
                    )
            for f in m.fallbacks:
                if f not in models or f == m.name:
                    raise ValueError(f"models[{i}].fallbacks: unknown virtual model '{f}'")
        moderation = self.filters.moderation
        if moderation is not None and moderation.model and moderation.model not in models:
            raise ValueError(
                f"filters.moderation.model: unknown virtual model '{moderation.model}'"
            )
        return self

    def provider(self, name: str) -> Provider:
        return next(p for p in self.providers if p.name == name)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str], source: str = "<config>") -> str:
    """Replace `${NAME}` and `${NAME:-default}`.

    Raises:
        ConfigError: a variable without a default is not set.
    """

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigError(f"{source}:{line}: environment variable {name} is not set")

    return _ENV.sub(sub, text)


def default_config() -> dict[str, Any]:
    """The embedded default: SQLite and the simulated model `sim`."""
    return {
        "providers": [{"name": "sim", "type": "sim"}],
        "models": [{"name": "sim", "targets": [{"provider": "sim", "model": "sim-1"}]}],
        "prices": [
            {
                "provider": "sim",
                "model": "sim-1",
                "input_per_1m": 0.5,
                "output_per_1m": 1.5,
                "cached_input_per_1m": 0.25,
            }
        ],
    }


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file; None gives the embedded default.

    Raises:
        ConfigError: the file is missing, not YAML, or does not match the schema.
    """
    env = os.environ if env is None else env
    if path is None:
        data: Any = default_config()
        source = "<embedded default>"
    else:
        source = str(path)
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(interpolate(raw, env, source))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
    if "admin_key" not in data and env.get("AGENTGW_ADMIN_KEY"):
        data = {**data, "admin_key": env["AGENTGW_ADMIN_KEY"]}
    data = _otlp_env(data, env)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(source, exc)) from exc


def _otlp_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The standard `OTEL_EXPORTER_OTLP_*` variables, where the file does not say otherwise."""
    tracing = data.get("tracing")
    tracing = dict(tracing) if isinstance(tracing, dict) else {}
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if endpoint and not tracing.get("otlp_endpoint"):
        tracing["otlp_endpoint"] = endpoint
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    if raw and "otlp_headers" not in tracing:
        pairs = (p.partition("=") for p in raw.split(",") if "=" in p)
        tracing["otlp_headers"] = {k.strip(): v.strip() for k, _, v in pairs}
    return {**data, "tracing": tracing} if tracing else data


def _explain(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = _dotted(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
        lines.append(f"  {loc or '<top>'}: {msg}{got}")
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
