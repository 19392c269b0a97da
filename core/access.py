"""Virtual keys and the Principal a key stands for.

A key's secret is shown once at creation and stored only as a SHA-256 hash (the secret carries
192 random bits, so a plain hash cannot be brute-forced); a short prefix is kept for display.
The request path resolves keys through `Authenticator`, which caches lookups for a second so the
store is not hit per call while a revocation still takes effect within that second.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from core.errors import AuthenticationFailed, PermissionDenied

KEY_PREFIX = "agw_"
DISPLAY_PREFIX_LEN = 12


def new_secret() -> str:
    """A fresh virtual-key secret."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Scopes:
    """What a key may do. Empty `models` means every model."""

    models: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    egress: str = "public"
    ip_allowlist: tuple[str, ...] = ()

    def allows_model(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, g) for g in self.models)

    def allows_modality(self, modality: str) -> bool:
        return not self.modalities or modality in self.modalities


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key, without its secret."""

    id: str
    name: str
    key_hash: str
    prefix: str
    org_path: str
    role: str = "user"
    app: str | None = None
    customer: str | None = None
    scopes: Scopes = field(default_factory=Scopes)
    status: str = "active"
    created_at: float = 0.0
    expires_at: float | None = None

    def usable_at(self, now: float) -> bool:
        if self.status != "active":
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key and the organization path it belongs to."""

    key_id: str
    key_name: str
    org_path: str
    role: str = "user"
    app: str | None = None
    customer: str | None = None
    scopes: Scopes = field(default_factory=Scopes)

    @property
    def department(self) -> str | None:
        return _segment(self.org_path, 0)

    @property
    def team(self) -> str | None:
        return _segment(self.org_path, 1)

    @property
    def project(self) -> str | None:
        return _segment(self.org_path, 2)

    @classmethod
    def of(cls, key: KeyRecord) -> Principal:
        return cls(
            key_id=key.id,
            key_name=key.name,
            org_path=key.org_path,
            role=key.role,
            app=key.app,
            customer=key.customer,
            scopes=key.scopes,
        )


def _segment(path: str, i: int) -> str | None:
    parts = [p for p in path.split("/") if p]
    return parts[i] if i < len(parts) else None


class KeyStore(Protocol):
    """Where keys live. Implemented by every store backend."""

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this secret hash, whatever its status; None if there is none."""
        ...


def bearer_secret(headers: Mapping[str, str]) -> str | None:
    """The secret from `Authorization: Bearer …` or `x-api-key` (Anthropic clients)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Authenticator:
    """Resolves a secret to a Principal, with a short cache so the store is not hit per call."""

    def __init__(self, keys: KeyStore, *, ttl_seconds: float = 1.0) -> None:
        self._keys = keys
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    async def authenticate(self, secret: str | None) -> Principal:
        """The caller's Principal.

        Raises:
            AuthenticationFailed: no key, an unknown key, or one that is revoked or expired.
        """
        if not secret:
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            record = cached[1]
        else:
            record = await self._keys.find_key(digest)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, record)
        if record is None:
            raise AuthenticationFailed("Invalid API key.")
        if not record.usable_at(datetime.now(UTC).timestamp()):
            raise AuthenticationFailed(f"API key {record.prefix}… is {record.status} or expired.")
        return Principal.of(record)

    def forget(self) -> None:
        """Drop every cached lookup (after a local revoke or rotation)."""
        self._cache.clear()


def authorize_model(principal: Principal, model: str) -> None:
    """Raises:
    PermissionDenied: the key's `models` scope does not cover `model`.
    """
    if not principal.scopes.allows_model(model):
        raise PermissionDenied(
            f"This key may not use model '{model}' (scope 'models').", param="model"
        )


def authorize_modality(principal: Principal, modality: str) -> None:
    """Raises:
    PermissionDenied: the key's `modalities` scope does not include `modality`.
    """
    if not principal.scopes.allows_modality(modality):
        raise PermissionDenied(f"This key may not use modality '{modality}' (scope 'modalities').")
