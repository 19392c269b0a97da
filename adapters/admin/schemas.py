"""The shapes the admin API answers with, for its OpenAPI document.

Handlers build plain dicts (`core.keyring.key_view` and friends); tests validate those dicts
against these models, so the document describes what is actually served.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopesOut(Out):
    models: list[str]
    tools: list[str]
    modalities: list[str]
    egress: Literal["private", "public"]
    ip_allowlist: list[str]
    privacy_mode: bool = False


class KeyOut(Out):
    id: str
    name: str
    prefix: str = Field(description="The start of the current secret, for recognizing it.")
    org_path: str
    role: Literal["user", "admin", "security", "finance", "team-owner"]
    app: str | None
    customer: str | None
    scopes: ScopesOut
    tags: dict[str, str]
    status: Literal["active", "revoked"]
    state: Literal["active", "expiring", "retired", "revoked"]
    created_at: str
    updated_at: str
    expires_at: str | None
    rotated_at: str | None
    previous_prefix: str | None = Field(
        description="The previous secret's prefix after a rotation."
    )
    previous_retires_at: str | None = Field(
        description="When the previous secret stops working (the rotation grace deadline)."
    )


class KeyWithSecret(KeyOut):
    key: str = Field(description="The secret. Shown only in this reply; store it now.")


class KeyList(Out):
    object: Literal["list"]
    data: list[KeyOut]


class OrgUnitOut(Out):
    path: str
    level: Literal["department", "team", "project"]
    parent: str | None
    title: str
    tags: dict[str, str]
    created_at: str
    updated_at: str


class OrgUnitList(Out):
    object: Literal["list"]
    data: list[OrgUnitOut]


class PartyOut(Out):
    kind: Literal["customer", "app", "agent"]
    id: str
    name: str
    org_path: str | None
    tags: dict[str, str]
    created_at: str
    updated_at: str
    last_seen: str | None = Field(description="Agents: when traffic last carried this agent id.")


class PartyList(Out):
    object: Literal["list"]
    data: list[PartyOut]


class AuditEventOut(Out):
    id: int
    at: str
    actor: str = Field(description="A key id, 'cli:<os user>', or 'system'.")
    actor_role: str
    action: str = Field(description="`<object kind>.<verb>`, such as key.rotate.")
    object: str = Field(description="`<kind>:<id>`, such as key:key_0123abcd.")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: str = Field(description="The client address, or cli@<host>.")
    prev_hash: str
    hash: str


class AuditList(Out):
    object: Literal["list"]
    data: list[AuditEventOut]


class ChainReport(Out):
    intact: bool
    events: int = Field(description="Events checked before the first break (all, when intact).")
    first_bad_event: int | None
    reason: str | None


class ModelVersionOut(Out):
    name: str
    version: int = Field(description="1 is the config file's routing; each change adds one.")
    at: str | None
    actor: str = Field(description="A key id, 'cli:<os user>', or 'config' (the config file).")
    routing: dict[str, Any] = Field(
        description="The virtual model as in the config file: strategy, targets, fallbacks …"
    )


class ModelVersionList(Out):
    object: Literal["list"]
    data: list[ModelVersionOut]


class WhoAmI(Out):
    key_id: str
    role: str
    org_path: str
    permissions: list[str]


class ErrorDetail(Out):
    message: str
    type: str
    code: str
    param: str | None


class ErrorOut(Out):
    error: ErrorDetail
