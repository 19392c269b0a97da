"""The key lifecycle as the admin API and the CLI drive it: create, update, rotate, revoke.

Every change is one audited commit (`core.audit.AuditLog.record`): the key row and the event that
describes it are written together or not at all, and a change based on a stale read is refused.
After a change, `on_change` runs (the app passes `Authenticator.forget`), so a revocation or a
rotation through this process takes effect on the very next request.

The bootstrap admin key is not a row in `keys`: it is the root credential, taken from
`AGENTGW_ADMIN_KEY` or generated once and kept (hashed) in `settings`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.access import (
    DATA_PLANE_ROLE,
    KeyRecord,
    KeyState,
    display_prefix,
    hash_secret,
    new_secret,
)
from core.audit import Actor, AuditLog, Change, Insert, Setting, Update
from core.errors import Conflict, NotFound, ValidationFailed
from core.keyspec import KeyCreate, KeyPatch
from core.orgs import owns
from core.roles import Permission, require, require_key_access, visible_to
from core.state import AlreadyExists, Stale, Store
from core.timestamps import epoch, iso

SYSTEM_ACTOR = Actor("system", "system", "", "startup")
ROOT_SETTING = "bootstrap_admin_hash"


def key_snapshot(record: KeyRecord) -> dict[str, Any]:
    """A key's stored fields as the admin surfaces show them (and audit them): never a hash."""
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "org_path": record.org_path,
        "role": record.role,
        "app": record.app,
        "customer": record.customer,
        "scopes": {
            "models": list(record.scopes.models),
            "tools": list(record.scopes.tools),
            "modalities": list(record.scopes.modalities),
            "egress": record.scopes.egress,
            "ip_allowlist": list(record.scopes.ip_allowlist),
            "privacy_mode": record.scopes.privacy_mode,
        },
        "tags": dict(record.tags),
        "status": record.status,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "expires_at": iso(record.expires_at),
        "rotated_at": iso(record.rotated_at),
        "previous_prefix": record.previous_prefix,
        "previous_retires_at": iso(record.retires_at),
    }


def key_view(record: KeyRecord, now: float) -> dict[str, Any]:
    """`key_snapshot` plus the lifecycle state at `now`."""
    return {**key_snapshot(record), "state": record.state(now)}


class Keyring:
    """Audited key management on top of a store."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._on_change = on_change or (lambda: None)

    async def create(self, actor: Actor, spec: KeyCreate) -> tuple[KeyRecord, str]:
        """A new key and its secret (the only time the secret exists outside the caller).

        Raises:
            PermissionDenied: the actor may not create this key.
            ValidationFailed: `expires_at` is not in the future.
            Conflict: a key with that name exists.
        """
        require(actor, Permission.KEYS_WRITE)
        require_key_access(actor, spec.org_path, spec.role)
        now = self._clock()
        secret = new_secret()
        record = KeyRecord(
            id="key_" + uuid.uuid4().hex[:16],
            name=spec.name,
            key_hash=hash_secret(secret),
            prefix=display_prefix(secret),
            org_path=spec.org_path,
            role=spec.role,
            app=spec.app,
            customer=spec.customer,
            scopes=spec.scopes.to_scopes(),
            created_at=now,
            updated_at=now,
            expires_at=_future(spec.expires_at, now),
            tags=dict(spec.tags),
        )
        await self._commit(actor, "key.create", None, record, [Insert(record)])
        return record, secret

    async def update(self, actor: Actor, key_id: str, patch: KeyPatch) -> KeyRecord:
        """The key with `patch` applied (unchanged, and no event, when it changes nothing).

        Raises:
            NotFound: no such key.
            PermissionDenied: the actor may not manage the key before or after the change.
            ValidationFailed: the result is not a valid key.
            Conflict: the key is revoked, the new name is taken, or it changed meanwhile.
        """
        require(actor, Permission.KEYS_WRITE)
        before = await self._find(actor, key_id)
        _require_live(before)
        after = _patched(before, patch, self._clock())
        require_key_access(actor, after.org_path, after.role)
        if after == before:
            return before
        await self._commit(actor, "key.update", before, after, [Update(before, after)])
        return after

    async def rotate(
        self, actor: Actor, key_id: str, grace_seconds: float
    ) -> tuple[KeyRecord, str]:
        """A new secret for the key; the current one keeps working for `grace_seconds`.

        A secret still in the grace of an earlier rotation stops at once: a key has at most
        one previous secret.

        Raises:
            NotFound: no such key.
            PermissionDenied: the actor may not manage the key.
            Conflict: the key is revoked or expired, or it changed meanwhile.
        """
        require(actor, Permission.KEYS_WRITE)
        before = await self._find(actor, key_id)
        _require_live(before)
        now = self._clock()
        if before.state(now) == "retired":
            raise Conflict(f"Key {key_id} has expired; extend expires_at before rotating it.")
        secret = new_secret()
        after = replace(
            before,
            key_hash=hash_secret(secret),
            prefix=display_prefix(secret),
            previous_hash=before.key_hash,
            previous_prefix=before.prefix,
            retires_at=now + grace_seconds,
            rotated_at=now,
            updated_at=now,
        )
        await self._commit(actor, "key.rotate", before, after, [Update(before, after)])
        return after, secret

    async def revoke(self, actor: Actor, key_id: str) -> KeyRecord:
        """Revoke the key at once (both its secrets).

        Raises:
            NotFound: no such key.
            PermissionDenied: the actor may not manage the key.
            Conflict: the key is revoked already, or it changed meanwhile.
        """
        require(actor, Permission.KEYS_WRITE)
        before = await self._find(actor, key_id)
        _require_live(before)
        after = replace(before, status="revoked", updated_at=self._clock())
        await self._commit(actor, "key.revoke", before, after, [Update(before, after)])
        return after

    async def get(self, actor: Actor, key_id: str) -> KeyRecord:
        """Raises:
        NotFound: no such key.
        PermissionDenied: the actor may not read it.
        """
        require(actor, Permission.KEYS_READ)
        return await self._find(actor, key_id)

    async def list(
        self,
        actor: Actor,
        *,
        org_path: str | None = None,
        role: str | None = None,
        state: KeyState | None = None,
    ) -> list[KeyRecord]:
        """The keys the actor may see, oldest first, filtered by org path prefix, role, state.

        Raises:
            PermissionDenied: the actor may not read keys.
        """
        require(actor, Permission.KEYS_READ)
        now = self._clock()
        return [
            k
            for k in await self._store.list_keys()
            if visible_to(actor, k.org_path, k.role)
            and (org_path is None or owns(org_path, k.org_path))
            and (role is None or k.role == role)
            and (state is None or k.state(now) == state)
        ]

    def now(self) -> float:
        return self._clock()

    async def _find(self, actor: Actor, key_id: str) -> KeyRecord:
        record = await self._store.get_key(key_id)
        if record is None:
            raise NotFound(f"No key with id '{key_id}'.", param="id")
        require_key_access(actor, record.org_path, record.role)
        return record

    async def _commit(
        self,
        actor: Actor,
        action: str,
        before: KeyRecord | None,
        after: KeyRecord,
        changes: Sequence[Change],
    ) -> None:
        try:
            await self._audit.record(
                actor,
                action,
                f"key:{after.id}",
                before=None if before is None else key_snapshot(before),
                after=key_snapshot(after),
                changes=changes,
            )
        except AlreadyExists:
            raise Conflict(f"A key named '{after.name}' exists already.", param="name") from None
        except Stale:
            raise Conflict(f"Key {after.id} changed meanwhile; read it again and retry.") from None
        self._on_change()


def _require_live(record: KeyRecord) -> None:
    if record.status == "revoked":
        raise Conflict(f"Key {record.id} is revoked; a revoked key cannot be changed.")


def _future(moment: datetime | None, now: float) -> float | None:
    if moment is None:
        return None
    ts = epoch(moment)
    if ts <= now:
        raise ValidationFailed(
            "Invalid request: expires_at: must be in the future", param="expires_at"
        )
    return ts


def _patched(before: KeyRecord, patch: KeyPatch, now: float) -> KeyRecord:
    given = patch.model_fields_set
    after = before
    for name in ("name", "org_path", "role", "app", "customer", "tags"):
        if name in given:
            after = replace(after, **{name: getattr(patch, name)})
    if patch.scopes is not None:
        after = replace(after, scopes=patch.scopes.apply(before.scopes))
    if "expires_at" in given:
        wanted = None if patch.expires_at is None else epoch(patch.expires_at)
        if wanted != before.expires_at:
            after = replace(after, expires_at=_future(patch.expires_at, now))
    if not after.org_path and after.role in (DATA_PLANE_ROLE, "team-owner"):
        raise ValidationFailed(
            f"Invalid request: org_path: a '{after.role}' key needs department/team/project",
            param="org_path",
        )
    return after if after == before else replace(after, updated_at=now)


async def bootstrap_admin(
    store: Store,
    audit: AuditLog,
    configured: str | None,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[str, str | None]:
    """The hash of the bootstrap admin secret to trust, and the secret if it was just generated.

    `AGENTGW_ADMIN_KEY` (`configured`) wins. Without it, the first start generates a secret,
    keeps its hash and returns the secret so the caller prints it once; later starts return
    only the kept hash. Two replicas starting together agree: the second one's insert is refused
    and it takes the first one's hash.
    """
    if configured:
        return hash_secret(configured), None
    stored = await store.get_setting(ROOT_SETTING)
    if stored is not None:
        return stored, None
    secret = new_secret()
    digest = hash_secret(secret)
    now = clock()
    try:
        await audit.record(
            SYSTEM_ACTOR,
            "admin_key.generate",
            "admin_key:bootstrap",
            before=None,
            after={"prefix": display_prefix(secret), "created_at": iso(now)},
            changes=[Insert(Setting(ROOT_SETTING, digest, now))],
        )
    except AlreadyExists:
        winner = await store.get_setting(ROOT_SETTING)
        if winner is None:
            raise
        return winner, None
    return digest, secret
