"""`/admin/org-units`, `/admin/customers`, `/admin/apps`, `/admin/agents`."""

from __future__ import annotations

from adapters.admin.http import AdminCall, Endpoint, Listing, Reply, body
from adapters.admin.schemas import OrgUnitList, OrgUnitOut, PartyList, PartyOut
from core.directory import (
    Directory,
    OrgUnitCreate,
    OrgUnitPatch,
    PartyCreate,
    PartyPatch,
    party_view,
    unit_view,
)
from core.orgs import PARTY_KINDS, PartyKind
from core.roles import Permission

UNIT_COLUMNS = ("path", "level", "parent", "title", "tags", "created_at", "updated_at")
PARTY_COLUMNS = ("kind", "id", "name", "org_path", "tags", "created_at", "updated_at", "last_seen")
_READERS = "admin, security, finance, team-owner"
_WRITERS = "admin"


def org_endpoints(directory: Directory) -> list[Endpoint]:
    """Every organization endpoint, bound to `directory`."""
    endpoints = _unit_endpoints(directory)
    for kind in PARTY_KINDS:
        endpoints.extend(_party_endpoints(directory, kind))
    return endpoints


def _unit_endpoints(directory: Directory) -> list[Endpoint]:
    async def create(call: AdminCall) -> Reply:
        unit = await directory.create_unit(call.actor, body(call, OrgUnitCreate))
        return Reply(unit_view(unit), status=201)

    async def listing(call: AdminCall) -> Listing:
        units = await directory.list_units(call.actor)
        return Listing([unit_view(u) for u in units], UNIT_COLUMNS)

    async def show(call: AdminCall) -> Reply:
        return Reply(unit_view(await directory.get_unit(call.actor, call.path["path"])))

    async def update(call: AdminCall) -> Reply:
        patch = body(call, OrgUnitPatch)
        return Reply(unit_view(await directory.update_unit(call.actor, call.path["path"], patch)))

    async def delete(call: AdminCall) -> Reply:
        return Reply(unit_view(await directory.delete_unit(call.actor, call.path["path"])))

    one, tags = "/admin/org-units/{path:path}", ("organization",)
    return [
        Endpoint("POST", "/admin/org-units", create, "Create a department, team or project "
                 "(its parent must exist).", _WRITERS, body=OrgUnitCreate, response=OrgUnitOut,
                 status=201, tags=tags, permission=Permission.ORG_WRITE),
        Endpoint("GET", "/admin/org-units", listing, "List org units by path.", _READERS,
                 response=OrgUnitList, exportable=True, tags=tags),
        Endpoint("GET", one, show, "Show an org unit.", _READERS, response=OrgUnitOut, tags=tags),
        Endpoint("PATCH", one, update, "Change an org unit's title or tags.", _WRITERS,
                 body=OrgUnitPatch, response=OrgUnitOut, tags=tags,
                 permission=Permission.ORG_WRITE),
        Endpoint("DELETE", one, delete, "Delete an org unit without child units.", _WRITERS,
                 response=OrgUnitOut, tags=tags),
    ]  # fmt: skip


def _party_endpoints(directory: Directory, kind: PartyKind) -> list[Endpoint]:
    async def create(call: AdminCall) -> Reply:
        party = await directory.create_party(call.actor, kind, body(call, PartyCreate))
        return Reply(party_view(party), status=201)

    async def listing(call: AdminCall) -> Listing:
        parties = await directory.list_parties(call.actor, kind)
        return Listing([party_view(p) for p in parties], PARTY_COLUMNS)

    async def show(call: AdminCall) -> Reply:
        return Reply(party_view(await directory.get_party(call.actor, kind, call.path["id"])))

    async def update(call: AdminCall) -> Reply:
        patch = body(call, PartyPatch)
        party = await directory.update_party(call.actor, kind, call.path["id"], patch)
        return Reply(party_view(party))

    async def delete(call: AdminCall) -> Reply:
        return Reply(party_view(await directory.delete_party(call.actor, kind, call.path["id"])))

    # Agent ids may hold '/', as x-agent-id allows; customer and app ids may not.
    many = f"/admin/{kind}s"
    one = many + ("/{id:path}" if kind == "agent" else "/{id}")
    seen = " Agents also register themselves on first sight in traffic." if kind == "agent" else ""
    tags = ("organization",)
    return [
        Endpoint("POST", many, create, f"Register a {kind}.{seen}", _WRITERS, body=PartyCreate,
                 response=PartyOut, status=201, tags=tags, permission=Permission.ORG_WRITE),
        Endpoint("GET", many, listing, f"List {kind}s by id.", _READERS, response=PartyList,
                 exportable=True, tags=tags),
        Endpoint("GET", one, show, f"Show a {kind}.", _READERS, response=PartyOut, tags=tags),
        Endpoint("PATCH", one, update, f"Change a {kind}'s name, org path or tags.", _WRITERS,
                 body=PartyPatch, response=PartyOut, tags=tags,
                 permission=Permission.ORG_WRITE),
        Endpoint("DELETE", one, delete, f"Delete a {kind}.", _WRITERS, response=PartyOut,
                 tags=tags),
    ]  # fmt: skip
