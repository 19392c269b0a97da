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
    supports: list[Literal["chat", "embedding", "voice", "image", "video", "tool"]] = Field(
        default_factory=list
    )
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


class McpServer(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    transport: Literal["stdio", "http"]
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    on_tool_change: Literal["alert", "hide"] = "alert"

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServer:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"mcp server '{self.name}' (stdio) needs a command")
        if self.transport == "http" and not self.url:
            raise ValueError(f"mcp server '{self.name}' (http) needs a url")
        return self


PiiAction = Literal["redact", "mask", "hash", "pseudonymize", "block"]


class PiiFilter(_Model):
    action: PiiAction = "redact"
    entities: list[str] = Field(default_factory=list)
    ner: bool = False
    timeout_ms: int = Field(2000, gt=0)
    fail: Literal["closed", "open"] = "closed"
    # Per entity type, overriding `action` (e.g. {CREDIT_CARD: block, PERSON: pseudonymize}).
    actions: dict[str, PiiAction] = Field(default_factory=dict)
    score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    # HMAC key of hash tokens and of the redaction log's value hashes (e.g. ${AGENTGW_PII_SECRET});
    # when absent one is generated once and kept in the store's settings.
    secret: str | None = None
    retention_days: float = Field(90.0, gt=0)


class ModerationFilter(_Model):
    action: Literal["block", "flag"] = "block"
    model: str | None = None


class InjectionFilter(_Model):
    action: Literal["flag", "block"] = "flag"


class MediaFilter(_Model):
    strip_metadata: bool = True
    ocr: bool = False


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
    anomaly: Anomaly = Field(default_factory=Anomaly)


class Tracing(_Model):
    otlp_endpoint: str | None = None


class Spans(_Model):
    queue_size: int = Field(10_000, gt=0)
    batch_size: int = Field(256, gt=0)


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
    filters: Filters = Field(default_factory=Filters)
    alerts: Alerts = Field(default_factory=Alerts)
    tracing: Tracing = Field(default_factory=Tracing)
    spans: Spans = Field(default_factory=Spans)

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
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(source, exc)) from exc


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
