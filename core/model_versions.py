"""Numbered versions of a virtual model's routing: the record and the store seam that reads them.

Version 1 of a model is the routing its config file gave it at first start; each change through
the admin API, a rollback or a config reload is the next number. A version is never edited: a
rollback writes the old routing again as a new version, so the history reads as what happened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One stored routing of virtual model `model`, as canonical JSON text.

    The routing is kept as text so the record stays frozen and comparable (the store's
    optimistic checks compare records), and is stored exactly as it was audited.
    """

    model: str
    version: int
    routing_json: str
    at: float
    actor: str

    @property
    def routing(self) -> dict[str, Any]:
        """The routing as a JSON object (a `core.config.VirtualModel` dump)."""
        value: dict[str, Any] = json.loads(self.routing_json)
        return value


def routing_text(routing: dict[str, Any]) -> str:
    """One text per routing: sorted keys, no spaces (so equal routings compare equal)."""
    return json.dumps(routing, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ModelVersionStore(Protocol):
    """Reads of stored routing versions (written with `commit(Insert(ModelVersion(…)))`)."""

    async def model_versions(self, model: str) -> list[ModelVersion]:
        """Every version of `model`, oldest first (empty when none is stored)."""
        ...

    async def add_model_version(self, version: ModelVersion) -> None:
        """Store a version unaudited: only version 1, the config file's routing at first start
        (the file is the record of it; every later version goes through `commit` with its event).

        Raises:
            core.state.AlreadyExists: that model has that version already (another replica).
        """
        ...
