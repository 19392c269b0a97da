"""The organization model as the admin API and the CLI manage it; every change audited.

Org units form a tree: a unit needs its parent, and a unit with children cannot be deleted.
Customers, apps and agents are flat. An agent seen in traffic registers itself (see
`core.orgs`); naming, tagging or deleting it here is an audited change like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from core.audit import Actor, AuditLog, Change, Delete, Insert, Update
from core.errors import Conflict, NotFound, ValidationFailed
from core.keyspec import OrgPath, Spec, Tags
from core.orgs import OrgUnit, Party, PartyKind, parse_org_path, parse_party_id
from core.roles import Permission, require
from core.state import AlreadyExists, Stale, Store
from core.timestamps import iso

Title = Annotated[str, Field(max_length=200)]


def _unit_path(value: str) -> str:
    return parse_org_path(value)


class OrgUnitCreate(Spec):
    """A new department, team or project; its parent unit must exist."""

    path: Annotated[str, AfterValidator(_unit_path)]
    title: Title = ""
    tags: Tags = Field(default_factory=dict)


class OrgUnitPatch(Spec):
    """Fields to change on an org unit; a field left out keeps its value."""

    title: Title | None = None
    tags: Tags | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> OrgUnitPatch:
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null")
        return self


class PartyCreate(Spec):
    """A new customer, app or agent (its id is checked against the kind's id rules)."""

    id: Annotated[str, Field(min_length=1, max_length=128)]
    name: Title = ""
    org_path: OrgPath | None = None
    tags: Tags = Field(default_factory=dict)


class PartyPatch(Spec):
    """Fields to change; a field left out keeps its value, `org_path: null` clears it."""

    name: Title | None = None
    org_path: OrgPath | None = None
    tags: Tags | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> PartyPatch:
        for name in self.model_fields_set - {"org_path"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null")
        return self


def unit_view(unit: OrgUnit) -> dict[str, Any]:
    return {
        "path": unit.path,
        "level": unit.level,
        "parent": unit.parent,
        "title": unit.title,
        "tags": dict(unit.tags),
        "created_at": iso(unit.created_at),
        "updated_at": iso(unit.updated_at),
    }


def party_view(party: Party) -> dict[str, Any]:
    return {**party_snapshot(party), "last_seen": iso(party.last_seen)}


def party_snapshot(party: Party) -> dict[str, Any]:
    """What an audit event records of a party (traffic bookkeeping left out)."""
    return {
        "kind": party.kind,
        "id": party.id,
        "name": party.name,
        "org_path": party.org_path,
        "tags": dict(party.tags),
        "created_at": iso(party.created_at),
        "updated_at": iso(party.updated_at),
    }


class Directory:
    """Audited management of org units, customers, apps and agents."""

    def __init__(
        self, store: Store, audit: AuditLog, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def create_unit(self, actor: Actor, spec: OrgUnitCreate) -> OrgUnit:
        """Raises:
        PermissionDenied: the actor may not change the organization.
        NotFound: the parent unit does not exist.
        Conflict: the unit exists already.
        """
        require(actor, Permission.ORG_WRITE)
        now = self._clock()
        unit = OrgUnit(spec.path, spec.title, dict(spec.tags), now, now)
        if unit.parent is not None and await self._store.get_org_unit(unit.parent) is None:
            raise NotFound(f"Parent org unit '{unit.parent}' does not exist; create it first.")
        await self._commit(actor, "org_unit.create", _uname(unit), None, unit, [Insert(unit)])
        return unit

    async def update_unit(self, actor: Actor, path: str, patch: OrgUnitPatch) -> OrgUnit:
        """Raises:
        PermissionDenied, NotFound, Conflict: as for `create_unit`.
        """
        require(actor, Permission.ORG_WRITE)
        before = await self.get_unit(actor, path)
        after = before
        if patch.title is not None:
            after = replace(after, title=patch.title)
        if patch.tags is not None:
            after = replace(after, tags=dict(patch.tags))
        if after == before:
            return before
        after = replace(after, updated_at=self._clock())
        await self._commit(
            actor, "org_unit.update", _uname(after), before, after, [Update(before, after)]
        )
        return after

    async def delete_unit(self, actor: Actor, path: str) -> OrgUnit:
        """Raises:
        PermissionDenied, NotFound: as for `create_unit`.
        Conflict: the unit still has child units.
        """
        require(actor, Permission.ORG_WRITE)
        unit = await self.get_unit(actor, path)
        children = [u.path for u in await self._store.list_org_units() if u.parent == unit.path]
        if children:
            raise Conflict(f"Org unit '{path}' still has child units: {', '.join(children)}.")
        await self._commit(actor, "org_unit.delete", _uname(unit), unit, None, [Delete(unit)])
        return unit

    async def get_unit(self, actor: Actor, path: str) -> OrgUnit:
        """Raises:
        PermissionDenied: the actor may not read the organization.
        NotFound: no such unit.
        """
        require(actor, Permission.ORG_READ)
        unit = await self._store.get_org_unit(path.strip("/"))
        if unit is None:
            raise NotFound(f"No org unit '{path}'.")
        return unit

    async def list_units(self, actor: Actor) -> list[OrgUnit]:
        """Raises:
        PermissionDenied: the actor may not read the organization.
        """
        require(actor, Permission.ORG_READ)
        return await self._store.list_org_units()

    async def create_party(self, actor: Actor, kind: PartyKind, spec: PartyCreate) -> Party:
        """Raises:
        PermissionDenied: the actor may not change the organization.
        ValidationFailed: the id is not valid for `kind`.
        Conflict: one with that id exists already.
        """
        require(actor, Permission.ORG_WRITE)
        party_id = _party_id(kind, spec.id)
        now = self._clock()
        party = Party(kind, party_id, spec.name, spec.org_path, dict(spec.tags), now, now)
        await self._commit(actor, f"{kind}.create", _pname(party), None, party, [Insert(party)])
        return party

    async def update_party(
        self, actor: Actor, kind: PartyKind, party_id: str, patch: PartyPatch
    ) -> Party:
        """Raises:
        PermissionDenied, NotFound, Conflict: as for `create_party`.
        """
        require(actor, Permission.ORG_WRITE)
        before = await self.get_party(actor, kind, party_id)
        after = before
        for name in ("name", "org_path", "tags"):
            if name in patch.model_fields_set:
                after = replace(after, **{name: getattr(patch, name)})
        if after == before:
            return before
        after = replace(after, updated_at=self._clock())
        changes: list[Change] = [Update(before, after)]
        await self._commit(actor, f"{kind}.update", _pname(after), before, after, changes)
        return after

    async def delete_party(self, actor: Actor, kind: PartyKind, party_id: str) -> Party:
        """Raises:
        PermissionDenied, NotFound: as for `create_party`.
        """
        require(actor, Permission.ORG_WRITE)
        party = await self.get_party(actor, kind, party_id)
        await self._commit(actor, f"{kind}.delete", _pname(party), party, None, [Delete(party)])
        return party

    async def get_party(self, actor: Actor, kind: PartyKind, party_id: str) -> Party:
        """Raises:
        PermissionDenied: the actor may not read the organization.
        NotFound: no such customer, app or agent.
        """
        require(actor, Permission.ORG_READ)
        party = await self._store.get_party(kind, party_id)
        if party is None:
            raise NotFound(f"No {kind} with id '{party_id}'.")
        return party

    async def list_parties(self, actor: Actor, kind: PartyKind) -> list[Party]:
        """Raises:
        PermissionDenied: the actor may not read the organization.
        """
        require(actor, Permission.ORG_READ)
        return await self._store.list_parties(kind)

    async def _commit(
        self,
        actor: Actor,
        action: str,
        obj: str,
        before: OrgUnit | Party | None,
        after: OrgUnit | Party | None,
        changes: list[Change],
    ) -> None:
        try:
            await self._audit.record(
                actor,
                action,
                obj,
                before=_snapshot(before),
                after=_snapshot(after),
                changes=changes,
            )
        except AlreadyExists:
            raise Conflict(f"{obj} exists already.") from None
        except Stale:
            raise Conflict(f"{obj} changed meanwhile; read it again and retry.") from None


def _party_id(kind: PartyKind, value: str) -> str:
    try:
        return parse_party_id(kind, value)
    except ValueError as exc:
        raise ValidationFailed(f"id: {exc}", param="id") from None


def _snapshot(record: OrgUnit | Party | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return unit_view(record) if isinstance(record, OrgUnit) else party_snapshot(record)


def _uname(unit: OrgUnit) -> str:
    return f"org_unit:{unit.path}"


def _pname(party: Party) -> str:
    return f"{party.kind}:{party.id}"
