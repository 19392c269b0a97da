"""`/admin/keys`: create, list, show, update, revoke and rotate virtual keys."""

from __future__ import annotations

from typing import cast, get_args

from adapters.admin.http import AdminCall, Endpoint, Listing, Query, Reply, body
from adapters.admin.schemas import KeyList, KeyOut, KeyWithSecret
from core.access import ROLES, KeyState
from core.errors import ValidationFailed
from core.keyring import Keyring, key_view
from core.keyspec import KeyCreate, KeyPatch, KeyRotate
from core.orgs import parse_org_path
from core.roles import Permission

KEY_COLUMNS = (
    "id",
    "name",
    "prefix",
    "org_path",
    "role",
    "state",
    "status",
    "app",
    "customer",
    "scopes",
    "tags",
    "created_at",
    "updated_at",
    "expires_at",
    "rotated_at",
    "previous_prefix",
    "previous_retires_at",
)
_ONE_KEY = "/admin/keys/{key_id}"
_WRITERS = "admin; team-owner (user keys within its org path)"
_READERS = "admin, security; team-owner (user keys within its org path)"


def key_endpoints(keyring: Keyring) -> list[Endpoint]:
    """Every key endpoint, bound to `keyring`."""

    async def create(call: AdminCall) -> Reply:
        record, secret = await keyring.create(call.actor, body(call, KeyCreate))
        return Reply({**key_view(record, keyring.now()), "key": secret}, status=201)

    async def listing(call: AdminCall) -> Listing:
        q = call.query
        keys = await keyring.list(
            call.actor,
            org_path=_org_path(q["org_path"]) if "org_path" in q else None,
            role=_choice("role", q.get("role"), ROLES),
            state=cast(KeyState | None, _choice("state", q.get("state"), get_args(KeyState))),
        )
        now = keyring.now()
        return Listing([key_view(k, now) for k in keys], KEY_COLUMNS)

    async def show(call: AdminCall) -> Reply:
        record = await keyring.get(call.actor, call.path["key_id"])
        return Reply(key_view(record, keyring.now()))

    async def update(call: AdminCall) -> Reply:
        patch = body(call, KeyPatch)
        record = await keyring.update(call.actor, call.path["key_id"], patch)
        return Reply(key_view(record, keyring.now()))

    async def revoke(call: AdminCall) -> Reply:
        record = await keyring.revoke(call.actor, call.path["key_id"])
        return Reply(key_view(record, keyring.now()))

    async def rotate(call: AdminCall) -> Reply:
        grace = body(call, KeyRotate).grace_seconds
        record, secret = await keyring.rotate(call.actor, call.path["key_id"], grace)
        return Reply({**key_view(record, keyring.now()), "key": secret})

    tags = ("keys",)
    return [
        Endpoint("POST", "/admin/keys", create, "Create a key; the reply holds its secret once.",
                 _WRITERS, body=KeyCreate, response=KeyWithSecret, status=201, tags=tags,
                 permission=Permission.KEYS_WRITE),
        Endpoint("GET", "/admin/keys", listing, "List keys (never their secrets).", _READERS,
                 response=KeyList, exportable=True, tags=tags, query=(
                     Query("org_path", "Only keys within this org path."),
                     Query("role", "Only keys with this role."),
                     Query("state", "active, expiring, retired or revoked."),
                 )),
        Endpoint("GET", _ONE_KEY, show, "Show a key.", _READERS, response=KeyOut, tags=tags),
        Endpoint("PATCH", _ONE_KEY, update, "Change a key's name, org path, role, scopes, "
                 "expiry, app, customer or tags.", _WRITERS, body=KeyPatch,
                 permission=Permission.KEYS_WRITE, response=KeyOut,
                 tags=tags),
        Endpoint("DELETE", _ONE_KEY, revoke, "Revoke a key at once (both its secrets).",
                 _WRITERS, response=KeyOut, tags=tags),
        Endpoint("POST", _ONE_KEY + "/rotate", rotate, "Give a key a new secret; the old one "
                 "keeps working for grace_seconds.", _WRITERS, body=KeyRotate,
                 permission=Permission.KEYS_WRITE,
                 response=KeyWithSecret, tags=tags),
    ]  # fmt: skip


def _org_path(value: str) -> str:
    try:
        return parse_org_path(value)
    except ValueError as exc:
        raise ValidationFailed(f"org_path: {exc}", param="org_path") from None


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name}: expected one of {', '.join(allowed)}", param=name)
    return value
