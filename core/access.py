"""Virtual keys and the Principal a key stands for.

A key's secret is shown once at creation and stored only as a SHA-256 hash (the secret carries
192 random bits, so a plain hash cannot be brute-forced); a short prefix is kept for display.
A rotated key keeps its id and gets a new secret; the previous secret's hash stays valid until
`retires_at` (the grace deadline), then stops.

The request path resolves keys through `Authenticator`, which caches lookups for a second so the
store is not hit per call while a revocation through another process still takes effect within
that second; a change made in this process calls `forget()` and takes effect on the next request.
The Authenticator also enforces the IP allowlist and the brute-force policy (`core.lockout`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio

from core.errors import AuthenticationFailed, AuthThrottled, PermissionDenied
from core.lockout import FailureLedger, MemoryFailureLedger
from core.metrics import Metrics

KEY_PREFIX = "agw_"
DISPLAY_PREFIX_LEN = 12
ROLES = ("user", "admin", "security", "finance", "team-owner")
DATA_PLANE_ROLE = "user"
EXPIRING_WITHIN_SECONDS = 7 * 86400.0
ROOT_KEY_ID = "bootstrap-admin"

KeyState = Literal["active", "expiring", "retired", "revoked"]


def new_secret() -> str:
    """A fresh virtual-key secret."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a secret that may be shown and stored in clear."""
    return secret[:DISPLAY_PREFIX_LEN]


@dataclass(frozen=True, slots=True)
class Scopes:
    """What a key may do. An empty tuple means no restriction on that axis."""

    models: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    egress: str = "public"
    ip_allowlist: tuple[str, ...] = ()
    # Realtime voice: the gateway transcribes the caller and sends the upstream text, never audio.
    privacy_mode: bool = False

    def allows_model(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, g) for g in self.models)

    def allows_tool(self, tool: str) -> bool:
        return not self.tools or any(fnmatch.fnmatchcase(tool, g) for g in self.tools)

    def allows_modality(self, modality: str) -> bool:
        return not self.modalities or modality in self.modalities

    def allows_address(self, address: str | None) -> bool:
        """Whether a client at `address` may use the key (an unknown address may not)."""
        if not self.ip_allowlist:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
        return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in self.ip_allowlist)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key, without its secret: only the hashes of its current and previous secret."""

    id: str
    name: str
    key_hash: str
    prefix: str
    org_path: str
    role: str = DATA_PLANE_ROLE
    app: str | None = None
    customer: str | None = None
    scopes: Scopes = field(default_factory=Scopes)
    status: str = "active"
    created_at: float = 0.0
    expires_at: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    updated_at: float = 0.0
    previous_hash: str | None = None
    previous_prefix: str | None = None
    retires_at: float | None = None
    rotated_at: float | None = None

    def usable_at(self, now: float) -> bool:
        """Whether the key (its current secret) authenticates at `now`."""
        if self.status != "active":
            return False
        return self.expires_at is None or now < self.expires_at

    def in_grace_at(self, now: float) -> bool:
        """Whether the previous secret of a rotated key still authenticates at `now`."""
        return (
            self.previous_hash is not None and self.retires_at is not None and now < self.retires_at
        )

    def state(self, now: float, expiring_within: float = EXPIRING_WITHIN_SECONDS) -> KeyState:
        """The key's lifecycle state: revoked, retired (expired), expiring, or active.

        `expiring` covers both a key close to its expiry and one whose previous secret is
        still in its rotation grace period.
        """
        if self.status == "revoked":
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "retired"
        if self.expires_at is not None and self.expires_at - now <= expiring_within:
            return "expiring"
        return "expiring" if self.in_grace_at(now) else "active"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its role, and the organization path it belongs to."""

    key_id: str
    key_name: str
    org_path: str
    role: str = DATA_PLANE_ROLE
    app: str | None = None
    customer: str | None = None
    scopes: Scopes = field(default_factory=Scopes)
    tags: Mapping[str, str] = field(default_factory=dict)

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
            tags=key.tags,
        )


ROOT_PRINCIPAL = Principal(
    key_id=ROOT_KEY_ID, key_name="bootstrap admin", org_path="", role="admin"
)


def _segment(path: str, i: int) -> str | None:
    parts = [p for p in path.split("/") if p]
    return parts[i] if i < len(parts) else None


class KeyStore(Protocol):
    """Where keys live. Implemented by every store backend."""

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key whose current or previous secret has this hash, whatever its status."""
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
    """Resolves a secret to a Principal: brute-force check, cached lookup, lifecycle, allowlist."""

    def __init__(
        self,
        keys: KeyStore,
        *,
        ttl_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        failures: FailureLedger | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._keys = keys
        self._ttl = ttl_seconds
        self._clock = clock
        self._failures = failures or MemoryFailureLedger()
        self._metrics = metrics
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._inflight: dict[str, anyio.Event] = {}
        self._generation = 0
        self._root: str | None = None
        self._principals: dict[str, tuple[KeyRecord, Principal]] = {}

    def trust_root(self, secret_hash: str | None) -> None:
        """Accept the bootstrap admin secret with this hash (None: no bootstrap admin)."""
        self._root = secret_hash

    async def authenticate(self, secret: str | None, *, client: str | None = None) -> Principal:
        """The caller's Principal, whatever its role (the caller checks the role it needs).

        Raises:
            AuthThrottled: `client` failed too often lately; nothing was looked up.
            AuthenticationFailed: no key, an unknown key, or one revoked, expired or retired.
            PermissionDenied: the key may not be used from `client` (its IP allowlist).
        """
        address = client or "unknown"
        now = self._clock()
        wait = await self._failures.blocked_for(address, now)
        if wait > 0:
            self._count("auth_throttled")
            raise AuthThrottled(
                "Too many failed authentications from this address; try again later.",
                retry_after=wait,
            )
        if not secret:
            self._count("auth_failures")
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        digest = hash_secret(secret)
        if self._root is not None and hmac.compare_digest(digest, self._root):
            return ROOT_PRINCIPAL
        record = await self._lookup(digest, now)
        if record is None:
            await self._failed(address, now)
            raise AuthenticationFailed("Invalid API key.")
        problem = _unusable(record, digest, now)
        if problem is not None:
            # Not counted towards a lockout: presenting a real (if dead) secret is not guessing.
            self._count("auth_failures")
            shown = record.prefix if digest == record.key_hash else record.previous_prefix
            raise AuthenticationFailed(f"API key {shown}… {problem}.")
        if not record.scopes.allows_address(client):
            raise PermissionDenied(
                f"This key may not be used from address {client} (scope 'ip_allowlist')."
            )
        # One Principal per cached record (frozen: safe to share), not one per request.
        known = self._principals.get(digest)
        if known is not None and known[0] is record:
            return known[1]
        principal = Principal.of(record)
        if len(self._principals) > 10_000:
            self._principals.clear()
        self._principals[digest] = (record, principal)
        return principal

    def forget(self) -> None:
        """Drop every cached lookup (after a local change to a key)."""
        self._generation += 1
        self._cache.clear()
        self._principals.clear()

    async def _lookup(self, digest: str, now: float) -> KeyRecord | None:
        # One store lookup per key at a time. When an entry expires, the first caller refreshes
        # it and the others keep the last answer for those few milliseconds: without this,
        # every request in flight queued on the store at once each time the TTL ran out.
        cached = self._cache.get(digest)
        if cached is not None and (cached[0] > now or digest in self._inflight):
            return cached[1]
        pending = self._inflight.get(digest)
        if pending is not None:  # a first lookup of this key is under way: share it
            await pending.wait()
            cached = self._cache.get(digest)
            if cached is not None:
                return cached[1]
        done = self._inflight[digest] = anyio.Event()
        generation = self._generation
        try:
            record = await self._keys.find_key(digest)
        finally:
            del self._inflight[digest]
            done.set()
        if generation != self._generation:
            return record  # a key changed meanwhile: use this answer once, cache none of it
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, record)
        return record

    async def _failed(self, address: str, now: float) -> None:
        self._count("auth_failures")
        outcome = await self._failures.record_failure(address, now)
        if outcome.locked_out:
            self._count("auth_lockouts")

    def _count(self, counter: Literal["auth_failures", "auth_lockouts", "auth_throttled"]) -> None:
        if self._metrics is not None:
            getattr(self._metrics, counter).inc()


def _unusable(record: KeyRecord, digest: str, now: float) -> str | None:
    """Why `record` does not authenticate the secret with hash `digest` at `now` (None: it does)."""
    if record.status == "revoked":
        return "is revoked"
    if record.expires_at is not None and now >= record.expires_at:
        return "has expired"
    if record.status != "active":
        return f"is {record.status}"
    if digest != record.key_hash and not record.in_grace_at(now):
        return "was rotated and its grace period is over"
    return None


def authorize_data_plane(principal: Principal) -> None:
    """Raises:
    PermissionDenied: the key is an admin-API key (any role but `user`); it cannot call models,
        so it cannot bypass budgets.
    """
    if principal.role != DATA_PLANE_ROLE:
        raise PermissionDenied(
            f"A key with role '{principal.role}' is for the admin API only and cannot call "
            "models; use a project key (role 'user')."
        )


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


def authorize_tool(principal: Principal, tool: str) -> None:
    """Raises:
    PermissionDenied: the key's `tools` scope does not cover `tool`.
    """
    if not principal.scopes.allows_tool(tool):
        raise PermissionDenied(f"This key may not use tool '{tool}' (scope 'tools').")
