"""Virtual models' routing as numbered, audited versions: canary changes, rollback and reload.

`ModelRegistry` owns the current routing of every virtual model. A change (through the admin
API, a rollback, or the config file read at start or on SIGHUP) is stored as the next version of
that model together with its audit event, in one transaction, and then handed to
`Router.reconfigure`, which keeps load, latency and circuit state. A request already in flight
holds the candidate list it was given and finishes on it.

At start the config file's routing is version 1 when nothing is stored (recorded unaudited: the
file is the record of it, and nothing changed). Afterwards the newest
change wins: a version written through the admin API wins over the file, unless the file itself
changed since the routing last recorded from it (then the file's routing is recorded as the next
version and wins).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.audit import Actor, AuditLog, Insert
from core.config import VirtualModel
from core.errors import Conflict, ModelNotFound, ValidationFailed
from core.keyspec import explain
from core.model_versions import ModelVersion, ModelVersionStore, routing_text
from core.roles import Permission, require
from core.routing import Router
from core.state import AlreadyExists
from core.timestamps import iso

logger = logging.getLogger("agentgw.models")

CONFIG_ACTOR = Actor("config", "system", "", "config-file")
"""Who writes a version read from the config file (at start or on SIGHUP)."""


class RoutingChange(VirtualModel):
    """The body of `PUT /admin/models/{name}`: a virtual model whose name may be left out."""

    # The path names the model; a body naming another one is refused rather than renamed.
    name: str | None = None  # type: ignore[assignment]


class Rollback(BaseModel):
    """The body of `POST /admin/models/{name}/rollback`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1, description="The version whose routing becomes current again.")


def version_view(version: ModelVersion) -> dict[str, Any]:
    """A stored version as the admin API shows it."""
    return {
        "name": version.model,
        "version": version.version,
        "at": iso(version.at),
        "actor": version.actor,
        "routing": version.routing,
    }


def _routing(vm: VirtualModel) -> dict[str, Any]:
    dumped: dict[str, Any] = vm.model_dump(mode="json")
    return dumped


class ModelRegistry:
    """The current routing of each virtual model, its stored versions, and the changes to it."""

    def __init__(
        self,
        store: ModelVersionStore,
        audit: AuditLog,
        router: Router,
        models: Sequence[VirtualModel],
        providers: Collection[str],
        *,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._router = router
        # Told the model's name after each change made here (the app announces it to replicas).
        self._on_change = on_change or (lambda name: None)
        self._configured = list(models)
        self._models = {vm.name: vm for vm in models}
        self._providers = set(providers)
        self._clock = clock
        # One change at a time in this process, so version numbers are taken in order.
        self._lock = anyio.Lock()

    async def open(self) -> None:
        """Record version 1 of each configured model if absent; then let the newest change win.

        Raises:
            core.state.AlreadyExists: another replica recorded the same version meanwhile.
        """
        async with self._lock:
            for vm in self._configured:
                self._models[vm.name] = await self._reconcile(vm)
            self._apply()

    async def _reconcile(self, configured: VirtualModel) -> VirtualModel:
        versions = await self._store.model_versions(configured.name)
        from_file = [v for v in versions if v.actor == CONFIG_ACTOR.id]
        text = routing_text(_routing(configured))
        if not versions:
            baseline = ModelVersion(configured.name, 1, text, self._clock(), CONFIG_ACTOR.id)
            # Another replica starting together may have recorded it first: the same routing.
            with contextlib.suppress(AlreadyExists):
                await self._store.add_model_version(baseline)
            return configured
        if from_file and from_file[-1].routing_json != text:
            # The file was edited since its routing was last recorded: that edit is the newest.
            await self._record(CONFIG_ACTOR, "model.reload", configured, versions[-1])
            return configured
        try:
            stored = self.validated(configured.name, versions[-1].routing)
        except ValidationFailed as exc:
            # A stored routing this config can no longer serve (a provider was removed).
            logger.warning("model %s: keeping the config's routing: %s", configured.name, exc)
            return configured
        return stored

    def validated(self, name: str, routing: dict[str, Any]) -> VirtualModel:
        """`routing` as model `name`, checked against the configured providers and models.

        Raises:
            ValidationFailed: not a valid virtual model, a name other than `name`, an unknown
                provider, or an unknown fallback model.
        """
        given = routing.get("name")
        if given is not None and given != name:
            raise ValidationFailed(
                f"name: the body names '{given}' but the path names '{name}'.", param="name"
            )
        try:
            vm = VirtualModel.model_validate({**routing, "name": name})
        except ValidationError as exc:
            message, param = explain(exc)
            raise ValidationFailed(f"Invalid routing: {message}", param=param) from None
        for i, target in enumerate(vm.targets):
            if target.provider not in self._providers:
                raise ValidationFailed(
                    f"targets[{i}].provider: unknown provider '{target.provider}' (configured: "
                    f"{', '.join(sorted(self._providers))}).",
                    param=f"targets[{i}].provider",
                )
        for fallback in vm.fallbacks:
            if fallback == name or fallback not in self._models:
                raise ValidationFailed(
                    f"fallbacks: unknown virtual model '{fallback}'.", param="fallbacks"
                )
        return vm

    async def current(self, actor: Actor, name: str) -> dict[str, Any]:
        """The current routing of `name` with its version.

        Raises:
            PermissionDenied: the actor's role may not read model routing.
            ModelNotFound: no virtual model has that name.
        """
        require(actor, Permission.MODELS_READ)
        return version_view(await self._latest(name))

    async def versions(self, actor: Actor, name: str) -> list[dict[str, Any]]:
        """Every version of `name`, oldest first.

        Raises:
            PermissionDenied: the actor's role may not read model routing.
            ModelNotFound: no virtual model has that name.
        """
        require(actor, Permission.MODELS_READ)
        self._known(name)
        return [version_view(v) for v in await self._store.model_versions(name)]

    async def update(self, actor: Actor, name: str, change: RoutingChange) -> dict[str, Any]:
        """Make `change` the routing of `name`, as a new version.

        Raises:
            PermissionDenied: the actor's role may not change model routing.
            ModelNotFound: no virtual model has that name.
            ValidationFailed: the routing names another model, an unknown provider or fallback.
            Conflict: another change took the same version number meanwhile.
        """
        require(actor, Permission.MODELS_WRITE)
        self._known(name)
        vm = self.validated(name, change.model_dump(mode="json", exclude_unset=True))
        async with self._lock:
            return await self._change(actor, "model.update", vm)

    async def rollback(self, actor: Actor, name: str, version: int) -> dict[str, Any]:
        """Make version `version`'s routing of `name` current again, as a new version.

        Raises:
            PermissionDenied: the actor's role may not change model routing.
            ModelNotFound: no virtual model has that name.
            NotFound: the model has no such version.
            ValidationFailed: that routing names a provider or model no longer configured.
            Conflict: another change took the same version number meanwhile.
        """
        require(actor, Permission.MODELS_WRITE)
        self._known(name)
        stored = {v.version: v for v in await self._store.model_versions(name)}
        if version not in stored:
            raise ModelNotFound(f"Model '{name}' has no version {version}.", param="version")
        vm = self.validated(name, stored[version].routing)
        async with self._lock:
            return await self._change(actor, "model.rollback", vm)

    async def reload(self, models: Sequence[VirtualModel]) -> list[str]:
        """Take the config file's models: record each changed or new one, drop removed ones.

        Returns the names whose routing changed.

        Raises:
            ValidationFailed: a model names an unknown provider or fallback model.
            Conflict: another change took the same version number meanwhile.
        """
        async with self._lock:
            names = {vm.name for vm in models}
            previous, self._models = self._models, {vm.name: vm for vm in models}
            try:
                checked = [self.validated(vm.name, _routing(vm)) for vm in models]
            except ValidationFailed:
                self._models = previous
                raise
            self._models = {n: vm for n, vm in previous.items() if n in names}
            changed = []
            for vm in checked:
                old = previous.get(vm.name)
                if old is None or routing_text(_routing(old)) != routing_text(_routing(vm)):
                    await self._change(CONFIG_ACTOR, "model.reload", vm)
                    changed.append(vm.name)
            self._apply()
            return changed

    async def _change(self, actor: Actor, action: str, vm: VirtualModel) -> dict[str, Any]:
        versions = await self._store.model_versions(vm.name)
        latest = versions[-1] if versions else None
        try:
            stored = await self._record(actor, action, vm, latest)
        except AlreadyExists:
            raise Conflict(
                f"Model '{vm.name}' changed meanwhile; read it again and retry."
            ) from None
        self._models[vm.name] = vm
        self._apply()
        self._on_change(vm.name)
        return version_view(stored)

    async def refresh(self, name: str = "") -> None:
        """Serve the newest stored routing of `name` (every model when empty): a change made
        through another replica. A stored routing this process cannot serve is logged and left."""
        async with self._lock:
            for model in [name] if name else list(self._models):
                if model not in self._models:
                    continue
                versions = await self._store.model_versions(model)
                if not versions:
                    continue
                try:
                    self._models[model] = self.validated(model, versions[-1].routing)
                except ValidationFailed as exc:
                    logger.warning("model %s: cannot serve the stored routing: %s", model, exc)
            self._apply()

    async def _record(
        self, actor: Actor, action: str, vm: VirtualModel, latest: ModelVersion | None
    ) -> ModelVersion:
        routing = _routing(vm)
        number = 1 if latest is None else latest.version + 1
        record = ModelVersion(vm.name, number, routing_text(routing), self._clock(), actor.id)
        await self._audit.record(
            actor,
            action,
            f"model:{vm.name}",
            before=None if latest is None else {"version": latest.version, **latest.routing},
            after={"version": number, **routing},
            changes=[Insert(record)],
        )
        return record

    def routing(self, name: str) -> VirtualModel | None:
        """The routing `name` is served with now, or None for an unknown model."""
        return self._models.get(name)

    def _apply(self) -> None:
        self._router.reconfigure(list(self._models.values()))

    def _known(self, name: str) -> None:
        if name not in self._models:
            raise ModelNotFound(f"The model '{name}' does not exist.", param="name")

    async def _latest(self, name: str) -> ModelVersion:
        self._known(name)
        versions = await self._store.model_versions(name)
        if not versions:  # only before `open`: the config's routing, not yet recorded
            vm = self._models[name]
            return ModelVersion(name, 0, routing_text(_routing(vm)), 0.0, CONFIG_ACTOR.id)
        return versions[-1]
