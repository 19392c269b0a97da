"""Who may do what on the admin surface.

    role         may
    admin        everything (the only role that changes model routing)
    security     read keys, org, audit, redaction data and model routing
    finance      read org, spend and model routing
    team-owner   read org; read and manage the `user` keys within its own org path
    user         nothing here: a data-plane key (and only a data-plane key may call models)

The CLI acts as `admin`: whoever can open the store file holds all of it anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from core.access import DATA_PLANE_ROLE
from core.audit import Actor
from core.errors import PermissionDenied
from core.orgs import owns


class Permission(StrEnum):
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"
    ORG_READ = "org:read"
    ORG_WRITE = "org:write"
    AUDIT_READ = "audit:read"
    SPEND_READ = "spend:read"
    REDACTIONS_READ = "redactions:read"
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"
    GOVERNANCE_READ = "governance:read"
    GOVERNANCE_WRITE = "governance:write"


GRANTS: Mapping[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "security": frozenset(
        {
            Permission.KEYS_READ,
            Permission.ORG_READ,
            Permission.AUDIT_READ,
            Permission.REDACTIONS_READ,
            Permission.MODELS_READ,
            Permission.GOVERNANCE_READ,
        }
    ),
    "finance": frozenset(
        {
            Permission.ORG_READ,
            Permission.SPEND_READ,
            Permission.MODELS_READ,
            Permission.GOVERNANCE_READ,
        }
    ),
    "team-owner": frozenset({Permission.KEYS_READ, Permission.KEYS_WRITE, Permission.ORG_READ}),
}


def require(actor: Actor, permission: Permission) -> None:
    """Raises:
    PermissionDenied: the actor's role does not grant `permission`.
    """
    if actor.role == DATA_PLANE_ROLE:
        raise PermissionDenied(
            "A data-plane key (role 'user') cannot use the admin API; use an admin-role key."
        )
    if permission not in GRANTS.get(actor.role, frozenset()):
        raise PermissionDenied(f"Role '{actor.role}' may not do this (needs '{permission}').")


def limited_to_own_teams(actor: Actor) -> bool:
    """Whether the actor manages keys only within its own org path (a team owner)."""
    return actor.role == "team-owner"


def require_key_access(actor: Actor, org_path: str, role: str) -> None:
    """Check that the actor may manage a key with this org path and role.

    Raises:
        PermissionDenied: a team owner reaching outside its org path, or at a key that is not a
            plain data-plane key.
    """
    if not limited_to_own_teams(actor):
        return
    # An owner without a path owns nothing (never everything).
    if not actor.org_path or not owns(actor.org_path, org_path):
        raise PermissionDenied(
            f"A team owner of '{actor.org_path}' may not manage keys of '{org_path}'."
        )
    if role != DATA_PLANE_ROLE:
        raise PermissionDenied(f"A team owner may manage only keys with role 'user', not '{role}'.")


def visible_to(actor: Actor, org_path: str, role: str) -> bool:
    """Whether a key with this org path and role shows in the actor's listings: for a team
    owner, exactly the keys it may manage."""
    if not limited_to_own_teams(actor):
        return True
    return role == DATA_PLANE_ROLE and bool(actor.org_path) and owns(actor.org_path, org_path)
