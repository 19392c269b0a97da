"""What a caller may ask of a key: the validated shapes of create, update and rotate.

One set of models serves the admin API (parsed from JSON) and the CLI (built from arguments), so
both refuse the same input with the same words. They are strict: unknown fields, wrong types
(`"10"` for a number), malformed org paths, CIDRs or globs are errors, never coerced.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from core.access import Scopes
from core.orgs import parse_org_path, parse_party_id, parse_tags

# The same roles as core.access.ROLES (a test keeps the two lists equal).
Role = Literal["user", "admin", "security", "finance", "team-owner"]
Modality = Literal["chat", "embedding", "voice", "image", "video", "tool", "moderation"]
MAX_GRACE_SECONDS = 90 * 86400.0
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@:/-]{0,127}$")


def _org_path(value: str) -> str:
    return parse_org_path(value, allow_root=True)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR block") from None


def _glob(value: str) -> str:
    if not value or len(value) > 256 or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a glob (1-256 characters, no spaces)")
    return value


def _key_name(value: str) -> str:
    if not _KEY_NAME.match(value):
        raise ValueError(
            "must be 1-128 characters of letters, digits, spaces and ._@:/- "
            "(starting with a letter or digit)"
        )
    return value


def _app(value: str) -> str:
    return parse_party_id("app", value)


def _customer(value: str) -> str:
    return parse_party_id("customer", value)


def _tags(value: dict[str, str]) -> dict[str, str]:
    return parse_tags(value)


OrgPath = Annotated[str, AfterValidator(_org_path)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Glob = Annotated[str, AfterValidator(_glob)]
KeyName = Annotated[str, AfterValidator(_key_name)]
AppId = Annotated[str, AfterValidator(_app)]
CustomerId = Annotated[str, AfterValidator(_customer)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]


class Spec(BaseModel):
    """Base of every admin input model: strict, closed, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ScopesSpec(Spec):
    """Per-key scopes. An empty list means no restriction on that axis."""

    models: list[Glob] = Field(default_factory=list, max_length=256)
    tools: list[Glob] = Field(default_factory=list, max_length=256)
    modalities: list[Modality] = Field(default_factory=list)
    egress: Literal["private", "public"] = "public"
    ip_allowlist: list[Cidr] = Field(default_factory=list, max_length=256)
    privacy_mode: bool = False

    def to_scopes(self) -> Scopes:
        return Scopes(
            models=tuple(self.models),
            tools=tuple(self.tools),
            modalities=tuple(self.modalities),
            egress=self.egress,
            ip_allowlist=tuple(self.ip_allowlist),
            privacy_mode=self.privacy_mode,
        )


class ScopesPatch(ScopesSpec):
    """Scopes to replace; a field left out keeps its value."""

    def apply(self, scopes: Scopes) -> Scopes:
        given = self.model_fields_set
        return Scopes(
            models=tuple(self.models) if "models" in given else scopes.models,
            tools=tuple(self.tools) if "tools" in given else scopes.tools,
            modalities=tuple(self.modalities) if "modalities" in given else scopes.modalities,
            egress=self.egress if "egress" in given else scopes.egress,
            ip_allowlist=tuple(self.ip_allowlist)
            if "ip_allowlist" in given
            else scopes.ip_allowlist,
            privacy_mode=self.privacy_mode if "privacy_mode" in given else scopes.privacy_mode,
        )


class KeyCreate(Spec):
    """A new key. `org_path` may be empty only for admin, security and finance keys."""

    name: KeyName
    org_path: OrgPath
    role: Role = "user"
    scopes: ScopesSpec = Field(default_factory=ScopesSpec)
    expires_at: datetime | None = None
    app: AppId | None = None
    customer: CustomerId | None = None
    tags: Tags = Field(default_factory=dict)

    @model_validator(mode="after")
    def _path_for_role(self) -> KeyCreate:
        if not self.org_path and self.role in ("user", "team-owner"):
            raise ValueError(f"org_path: a '{self.role}' key needs department/team/project")
        return self


class KeyPatch(Spec):
    """Fields to change on a key; a field left out keeps its value, `expires_at: null` clears it."""

    name: KeyName | None = None
    org_path: OrgPath | None = None
    role: Role | None = None
    scopes: ScopesPatch | None = None
    expires_at: datetime | None = None
    app: AppId | None = None
    customer: CustomerId | None = None
    tags: Tags | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> KeyPatch:
        # Only these can be cleared; null anywhere else is a mistake, not "leave as is".
        clearable = {"expires_at", "app", "customer"}
        for name in self.model_fields_set - clearable:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null")
        return self


class KeyRotate(Spec):
    """How long the previous secret keeps working after the rotation (0: it stops at once)."""

    grace_seconds: float = Field(86400.0, ge=0, le=MAX_GRACE_SECONDS)


def explain(exc: ValidationError) -> tuple[str, str | None]:
    """What is wrong with the input, field by field (up to five), and the first bad field."""
    problems = []
    errors = exc.errors(include_url=False)
    for err in errors[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        elif err["type"] == "missing":
            problems.append(f"{where}: required")
        elif err["type"].startswith("datetime"):
            problems.append(f"{where}: expected an ISO 8601 time such as 2030-01-01T00:00:00Z")
        else:
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    param = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    return "; ".join(problems), param or None
