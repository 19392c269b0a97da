"""`/admin/reconciliations`: import a provider's usage or invoice CSV, compare it with what was
metered, and keep the import with its table of differences.

The export comes either inside JSON (`{"provider": …, "csv": "…"}`) or as the raw body with
`Content-Type: text/csv` and the provider (and tolerance) as query parameters, so a provider's
download can be posted as it is (`curl --data-binary @usage.csv`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from adapters.admin.http import (
    AdminCall,
    Endpoint,
    Listing,
    Query,
    Reply,
    body,
    query_integer,
    read_json_body,
    validation_failed,
)
from core.errors import BadRequest, GatewayError, NotFound, PayloadTooLarge
from core.ops.reconciliation import (
    RECONCILIATION_SUMMARY,
    ReconciliationStore,
    import_export,
    reconciliation_view,
)
from core.reports import UsageStore
from core.roles import Permission, require

_ROLES = "admin, finance"
_TAGS = ("reports",)


class ReconciliationRequest(BaseModel):
    """A provider's export, as CSV text (`date, model, cost` or token columns)."""

    model_config = ConfigDict(extra="forbid")
    provider: str = Field(min_length=1, max_length=64)
    csv: str = Field(min_length=1)
    tolerance_pct: float = Field(1.0, ge=0, le=100)


CSV_TYPES = frozenset({"text/csv", "application/csv"})
JSON_TYPES = frozenset({"", "application/json"})  # no type at all: JSON, as every admin body


class UnsupportedMediaType(GatewayError):
    status_code = 415
    code = "unsupported_media_type"
    type = "invalid_request_error"


async def read_export(request: Request, limit: int) -> BaseModel:
    """The import request from a JSON body, or from a raw `text/csv` body plus the query's
    `provider` and `tolerance_pct`.

    Raises:
        UnsupportedMediaType: neither JSON nor CSV (415).
        PayloadTooLarge: the body is over `limit` bytes (413).
        BadRequest: the CSV is not UTF-8 text.
        ValidationFailed: a missing provider, or a bad tolerance (the CSV itself is read later,
            and its errors name their line).
    """
    header = request.headers.get("content-type", "")
    media, _, params = header.partition(";")
    media = media.strip().lower()
    if media in JSON_TYPES:
        return await read_json_body(request, ReconciliationRequest, limit)
    if media not in CSV_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted: send application/json "
            '({"provider": …, "csv": …}) or text/csv with ?provider=…'
        )
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedMediaType(f"charset {charset!r} is not accepted: send UTF-8 CSV.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = b"".join(chunks)[: exc.start].count(b"\n") + 1
        raise BadRequest(f"csv: line {line} is not UTF-8 text.", param="csv") from None
    query = request.query_params
    fields: dict[str, object] = {"provider": query.get("provider", ""), "csv": text}
    if "tolerance_pct" in query:
        fields["tolerance_pct"] = query["tolerance_pct"]
    try:
        return ReconciliationRequest.model_validate(fields)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def reconciliation_endpoints(
    store: UsageStore, imports: ReconciliationStore, clock: Callable[[], float] = time.time
) -> list[Endpoint]:
    """Import, list and show reconciliations."""

    async def create(call: AdminCall) -> Reply:
        require(call.actor, Permission.SPEND_READ)
        req = body(call, ReconciliationRequest)
        record = await import_export(
            store, imports, call.actor.id, req.provider, req.csv, req.tolerance_pct, clock()
        )
        return Reply(reconciliation_view(record, full=True), status=201)

    async def listing(call: AdminCall) -> Listing:
        require(call.actor, Permission.SPEND_READ)
        limit = query_integer(call.query, "limit", 100, 1, 1000)
        found = await imports.list_reconciliations(limit)
        return Listing([reconciliation_view(r) for r in found], RECONCILIATION_SUMMARY)

    async def show(call: AdminCall) -> Reply:
        require(call.actor, Permission.SPEND_READ)
        record = await imports.get_reconciliation(call.path["reconciliation_id"])
        if record is None:
            raise NotFound(f"No reconciliation with id '{call.path['reconciliation_id']}'.")
        return Reply(reconciliation_view(record, full=True))

    return [
        Endpoint("POST", "/admin/reconciliations", create, "Import a provider's CSV export: "
                 "differences by day and model with the metered usage (kept). The body is "
                 "JSON, or the CSV itself as text/csv with ?provider=.", _ROLES,
                 body=ReconciliationRequest, status=201, tags=_TAGS, read_body=read_export,
                 permission=Permission.SPEND_READ,
                 query=(Query("provider", "With a text/csv body: the provider it is from."),
                        Query("tolerance_pct", "With a text/csv body: the gap (%) still "
                              "counted as a match (default 1).", "number"))),
        Endpoint("GET", "/admin/reconciliations", listing, "Past imports, newest first.",
                 _ROLES, exportable=True, tags=_TAGS,
                 query=(Query("limit", "At most this many (1-1000, default 100).", "integer"),)),
        Endpoint("GET", "/admin/reconciliations/{reconciliation_id}", show, "One import with "
                 "its table of differences.", _ROLES, tags=_TAGS),
    ]  # fmt: skip
