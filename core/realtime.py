"""The voice seam: what a provider offers for realtime sessions and the audio endpoints.

A provider that speaks voice has a `voice` attribute implementing `VoiceProvider` (the OpenAI
egress and the sim do). Realtime frames are relayed as text, unparsed where the gateway need not
read them, so the upstream connection deals in `str` frames.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from core.envelope import Usage
from core.errors import AllTargetsFailed, GatewayError, UnsupportedContent, UpstreamError
from core.provider import Provider
from core.routing import BoundTarget, Router
from core.tracing import Attempt

T = TypeVar("T")


class UpstreamClosed(UpstreamError):
    """The upstream realtime connection ended (dropped, or closed by the provider)."""

    code = "upstream_closed"


class RealtimeUpstream(Protocol):
    """One open realtime session with a provider."""

    async def send(self, frame: str) -> None:
        """Send one client event (JSON text).

        Raises:
            UpstreamClosed: the connection is gone.
        """
        ...

    async def receive(self) -> str:
        """The next server event (JSON text), as it arrives.

        Raises:
            UpstreamClosed: the provider closed or dropped the connection.
        """
        ...

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        ...


@dataclass(slots=True)
class Transcription:
    """A transcription reply: the text, what it used, and the rest of the wire reply."""

    text: str
    usage: Usage
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Speech:
    """Generated speech: the audio file and what generating it used."""

    audio: bytes
    media_type: str
    usage: Usage


class VoiceProvider(Protocol):
    """Realtime sessions, transcription and speech of one provider."""

    async def connect(self, model: str, headers: Mapping[str, str]) -> RealtimeUpstream:
        """Open a realtime session on upstream model `model`.

        Raises:
            UpstreamError: or a subclass; `retryable` when another target may help.
        """
        ...

    async def transcribe(
        self, model: str, audio: bytes, filename: str, fields: Mapping[str, str]
    ) -> Transcription:
        """Transcribe one uploaded audio file.

        Raises:
            UpstreamError: or a subclass.
        """
        ...

    async def speech(self, model: str, body: Mapping[str, Any]) -> Speech:
        """Generate speech for `body` (the `/v1/audio/speech` request, `model` replaced).

        Raises:
            UpstreamError: or a subclass.
        """
        ...


def voice_of(provider: Provider) -> VoiceProvider | None:
    """The provider's voice face, if it has one."""
    voice: VoiceProvider | None = getattr(provider, "voice", None)
    return voice


async def first_voice_target(
    router: Router,
    targets: Sequence[BoundTarget],
    attempts: list[Attempt],
    attempt: Callable[[VoiceProvider, BoundTarget], Awaitable[T]],
) -> tuple[T, BoundTarget]:
    """Try `attempt` on each target in turn (failover), as `Router.send` does for chat: targets
    without voice or with an open circuit are skipped, only retryable errors move on, and every
    try is an `Attempt` on the span.

    Raises:
        GatewayError: a non-retryable error, as raised.
        AllTargetsFailed: every target failed retryably or was skipped.
    """
    errors: list[GatewayError] = []
    for target in targets:
        voice = voice_of(target.provider)
        if voice is None:
            error: GatewayError = UnsupportedContent(
                f"Provider '{target.provider_name}' serves no voice."
            )
            attempts.append(Attempt(target.provider_name, target.model, "skipped", error.code))
            errors.append(error)
            continue
        if not await router.circuits.admit(target.key, target.circuit, time.monotonic()):
            attempts.append(Attempt(target.provider_name, target.model, "skipped", "circuit_open"))
            errors.append(UpstreamError(f"The circuit of '{target.key}' is open."))
            continue
        started = time.monotonic()
        try:
            result = await attempt(voice, target)
        except GatewayError as exc:
            now = time.monotonic()
            ms = (now - started) * 1000
            attempts.append(Attempt(target.provider_name, target.model, "error", exc.code, ms))
            await router.circuits.record(target.key, not exc.retryable, target.circuit, now)
            if not exc.retryable:
                raise
            errors.append(exc)
            continue
        now = time.monotonic()
        attempts.append(
            Attempt(target.provider_name, target.model, "ok", None, (now - started) * 1000)
        )
        await router.circuits.record(target.key, True, target.circuit, now)
        return result, target
    codes = ", ".join(e.code for e in errors) or "no target"
    raise AllTargetsFailed(f"No target could serve this voice call ({codes}).", errors)
