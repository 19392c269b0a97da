"""The organization model: org units, and the customers, apps and agents traffic is attributed to.

The organization is the deployment itself; below it an org path names a department, a team and a
project (`research/agents/demo`), one `OrgUnit` per level. Keys carry an org path; the units
give those paths titles, tags and a tree to browse, and a unit's parent must exist before it.

Customers, apps and agents are `Party` records, one table each. Agents register themselves: the
first span carrying an `x-agent-id` inserts the agent (written behind the request, with the span
batch), and an admin can name and tag it afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ORG_LEVELS = ("department", "team", "project")
PartyKind = Literal["customer", "app", "agent"]
PARTY_KINDS: tuple[PartyKind, ...] = ("customer", "app", "agent")
MAX_TAGS = 32

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PARTY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
# Agent ids come from the x-agent-id header, which core.tracing accepts with these characters.
_AGENT_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")


def parse_org_path(path: str, *, allow_root: bool = False) -> str:
    """The canonical form of an org path (`department[/team[/project]]`).

    Raises:
        ValueError: empty (unless `allow_root`), deeper than a project, or a segment that is not
            letters, digits, `-` and `_`.
    """
    parts = [p for p in path.strip().split("/") if p]
    if not parts:
        if allow_root:
            return ""
        raise ValueError("org path is empty; expected department/team/project")
    if len(parts) > len(ORG_LEVELS):
        raise ValueError(f"org path {path!r} is deeper than department/team/project")
    for part in parts:
        if not _SEGMENT.match(part):
            raise ValueError(
                f"org path segment {part!r} must be 1-64 letters, digits, '-' or '_' "
                "(starting with a letter or digit)"
            )
    return "/".join(parts)


def owns(owner_path: str, path: str) -> bool:
    """Whether `path` lies within `owner_path` (segment-wise: `a/b` owns `a/b/c`, not `a/bc`)."""
    if not owner_path:
        return True
    return path == owner_path or path.startswith(owner_path + "/")


def parse_party_id(kind: PartyKind, value: str) -> str:
    """Raises:
    ValueError: not a valid id for a `kind`.
    """
    pattern = _AGENT_ID if kind == "agent" else _PARTY_ID
    if not pattern.match(value):
        allowed = "letters, digits and ._:@/+=-" if kind == "agent" else "letters, digits and ._:@-"
        raise ValueError(f"{kind} id {value!r} must be 1-128 characters of {allowed}")
    return value


def parse_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Metadata tags, checked.

    Raises:
        ValueError: too many tags, a malformed tag name, or a value over 256 characters.
    """
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not _TAG_KEY.match(key):
            raise ValueError(f"tag name {key!r} must be 1-64 letters, digits and _.:/-")
        if len(value) > 256:
            raise ValueError(f"tag {key!r}: value longer than 256 characters")
    return dict(tags)


@dataclass(frozen=True, slots=True)
class OrgUnit:
    """A department, team or project, named by its org path."""

    path: str
    title: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def level(self) -> str:
        return ORG_LEVELS[self.path.count("/")]

    @property
    def parent(self) -> str | None:
        head, sep, _ = self.path.rpartition("/")
        return head if sep else None


@dataclass(frozen=True, slots=True)
class Party:
    """A customer, app or agent that traffic is attributed to."""

    kind: PartyKind
    id: str
    name: str = ""
    org_path: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    # Traffic bookkeeping, not an admin-managed field: updated behind the request, never audited.
    last_seen: float | None = None
