"""`/admin/models/{name}`: a virtual model's routing, its numbered versions, change and rollback."""

from __future__ import annotations

from adapters.admin.http import AdminCall, Endpoint, Listing, Reply, body
from adapters.admin.schemas import ModelVersionList, ModelVersionOut
from core.model_registry import ModelRegistry, Rollback, RoutingChange
from core.roles import Permission

VERSION_COLUMNS = ("name", "version", "at", "actor", "routing")
_ONE_MODEL = "/admin/models/{name}"
_WRITERS = "admin"
_READERS = "admin, security, finance"


def model_endpoints(registry: ModelRegistry) -> list[Endpoint]:
    """Every model-routing endpoint, bound to `registry`."""

    async def show(call: AdminCall) -> Reply:
        return Reply(await registry.current(call.actor, call.path["name"]))

    async def replace(call: AdminCall) -> Reply:
        change = body(call, RoutingChange)
        return Reply(await registry.update(call.actor, call.path["name"], change))

    async def versions(call: AdminCall) -> Listing:
        rows = await registry.versions(call.actor, call.path["name"])
        return Listing(rows, VERSION_COLUMNS)

    async def rollback(call: AdminCall) -> Reply:
        version = body(call, Rollback).version
        return Reply(await registry.rollback(call.actor, call.path["name"], version))

    tags = ("models",)
    return [
        Endpoint("GET", _ONE_MODEL, show, "A virtual model's current routing and its version.",
                 _READERS, response=ModelVersionOut, tags=tags),
        Endpoint("PUT", _ONE_MODEL, replace, "Replace a virtual model's routing (strategy, "
                 "targets, weights, fallbacks, circuit …) as a new version; it takes effect at "
                 "once, requests in flight finish on the routing they started with.", _WRITERS,
                 body=RoutingChange, response=ModelVersionOut, tags=tags,
                 permission=Permission.MODELS_WRITE),
        Endpoint("GET", _ONE_MODEL + "/versions", versions, "Every version of a virtual "
                 "model's routing, oldest first.", _READERS, response=ModelVersionList,
                 exportable=True, tags=tags),
        Endpoint("POST", _ONE_MODEL + "/rollback", rollback, "Make an earlier version's routing "
                 "current again, as a new version.", _WRITERS, body=Rollback,
                 permission=Permission.MODELS_WRITE,
                 response=ModelVersionOut, tags=tags),
    ]  # fmt: skip
