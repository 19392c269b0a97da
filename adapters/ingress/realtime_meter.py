"""What a realtime session uses, governed: one span per response, a session-long slot, audio
reserved ahead in steps.

The reservation taken before the handshake is accepted (so a concurrent-session limit, a spent
budget or a spent audio allowance refuses the socket) is split in two. The session part, its
concurrency slot, is held for the whole session and released when it ends: another session can
never take the slot from a running one. The response part (requests, tokens, budgets) is settled
by each `response.done` with that response's tokens and audio, and renewed at once for the next
response; a refused renewal ends the session (`QuotaEnded`).

Audio seconds, in and out, are reserved ahead on the `audio_seconds` limits in steps of
`AUDIO_STEP_SECONDS` (one counter call per step, never per frame): when the audio relayed passes
what was reserved, the next step is reserved (or, near the limit, one second); a refusal ends the
session, so a caller streaming audio without ever asking for a response is stopped too. At the
end the last step is settled down to what was used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

import anyio

from core.envelope import Envelope, Modality, Usage
from core.errors import GatewayError
from core.pipeline import Call, Pipeline
from core.quota import Reservation
from core.routing import BoundTarget
from core.rulespec import Kind

RESPONSE_ROUTE = "/v1/realtime#response"
AUDIO_STEP_SECONDS = 5
# Held by the session for its whole life: its slot. Audio is reserved in steps of its own.
SESSION_KINDS = frozenset({"concurrent", "audio_seconds"})
AUDIO_KINDS = frozenset({"audio_seconds"})
RESPONSE_KINDS = frozenset(get_args(Kind)) - SESSION_KINDS | {"budget"}


class QuotaEnded(Exception):
    """The session went over a limit or budget and must end; `error` says which."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(slots=True)
class SessionMeter:
    """Audio seconds, response spans and the reservations of one session."""

    pipeline: Pipeline
    call: Call
    target: BoundTarget
    reservation: Reservation | None  # the response part, renewed per response
    slot: Reservation | None = None  # the session part, held until the session ends
    pending_seconds: float = 0.0  # input audio appended since the last settle
    audio_seconds: float = 0.0  # input audio, the whole session
    output_seconds: float = 0.0  # output audio, the whole session
    metered: float = 0.0  # audio both ways, counted against `granted`
    granted: int = 0  # audio seconds reserved on the audio limits so far
    step: Reservation | None = None  # the last audio step, settled to its use at the end
    step_start: int = 0
    responses: int = 0
    # Both directions may pass the reservation at once: one reserves, the other sees it done.
    extending: anyio.Lock = field(default_factory=anyio.Lock)

    def take(self, reservation: Reservation) -> None:
        """Hold the handshake's reservation: the slot for the session, the rest for a response."""
        self.slot, self.reservation = self.pipeline.split(reservation, SESSION_KINDS)

    def appended(self, seconds: float) -> bool:
        """Count input audio; True when the audio passed what is reserved (await `extend`)."""
        self.pending_seconds += seconds
        self.audio_seconds += seconds
        self.metered += seconds
        return self.metered > self.granted

    def played(self, seconds: float) -> bool:
        """Count output audio; True when the audio passed what is reserved (await `extend`)."""
        self.output_seconds += seconds
        self.metered += seconds
        return self.metered > self.granted

    async def extend(self, seconds: float, *, output: bool) -> None:
        """Reserve audio until it covers what was counted: a step, or near the limit what is
        needed. Refused, the frame of `seconds` that needed it is not relayed: it is uncounted.

        Raises:
            QuotaEnded: an audio limit refused.
        """
        async with self.extending:
            try:
                await self._extend()
            except QuotaEnded:
                self.metered -= seconds
                if output:
                    self.output_seconds -= seconds
                else:
                    self.pending_seconds -= seconds
                    self.audio_seconds -= seconds
                raise

    async def _extend(self) -> None:
        need = math.ceil(self.metered - self.granted)
        if need <= 0:
            return
        refusal: GatewayError | None = None
        for amount in dict.fromkeys((max(need, AUDIO_STEP_SECONDS), need)):
            try:
                step = await self.pipeline.reserve(
                    self.call, self._envelope(audio_seconds=amount), only=AUDIO_KINDS
                )
            except GatewayError as exc:
                refusal = exc
                continue
            self.step, self.step_start = step, self.granted  # the previous step is used up
            self.granted += amount
            return
        assert refusal is not None
        raise QuotaEnded(refusal)

    def response_call(self) -> Call:
        """A new response's call: a child span of the session's."""
        self.responses += 1
        child = self.pipeline.child(self.call, RESPONSE_ROUTE, f"r{self.responses}")
        child.span.provider = self.target.provider_name
        child.span.upstream_model = self.target.model
        return child

    async def finish(
        self,
        call: Call,
        usage: Usage | None,
        error: GatewayError | None,
        output_seconds: float = 0.0,
    ) -> None:
        """Record a response's span and settle the reservation it used; when it ended well,
        reserve the next response.

        Raises:
            QuotaEnded: the next response would be over a limit or budget.
        """
        measured = usage or Usage()
        measured.audio_seconds = self.pending_seconds + output_seconds
        if output_seconds:
            call.span.extra["input_audio_seconds"] = round(self.pending_seconds, 3)
            call.span.extra["output_audio_seconds"] = round(output_seconds, 3)
        self.pending_seconds = 0.0
        if usage is None:
            call.span.flags.append("usage_estimated")
        if self.reservation is not None:
            await self.pipeline.settle(call, self.reservation, self.target, measured)
            self.reservation = None
        if error is not None:
            await self.pipeline.fail(call, error, measured)
            return
        if usage is None:
            call.span.status = "client_closed"
            await self.pipeline.record(call, measured)
            return
        await self.pipeline.record(call, measured)
        try:
            self.reservation = await self.pipeline.reserve(
                self.call, self._envelope(), only=RESPONSE_KINDS
            )
        except GatewayError as exc:
            raise QuotaEnded(exc) from exc

    def _envelope(self, **params: object) -> Envelope:
        env = Envelope(
            id=self.call.request_id,
            modality=Modality.VOICE,
            model=self.call.span.model_requested or "",
            stream=True,
            params=dict(params),
        )
        env.principal, env.trace = self.call.principal, self.call.trace
        return env

    async def close(self) -> Usage:
        """Settle what is still held and free the slot; returns what no response used (the
        session's own audio)."""
        leftover = Usage(audio_seconds=self.pending_seconds)
        self.pending_seconds = 0.0
        if self.reservation is not None:
            await self.pipeline.settle(self.call, self.reservation, self.target, leftover)
            self.reservation = None
        if self.step is not None:
            used = Usage(audio_seconds=max(0.0, self.metered - self.step_start))
            await self.pipeline.settle(self.call, self.step, None, used)
            self.step = None
        if self.slot is not None:
            await self.pipeline.settle(self.call, self.slot, None, Usage())
            self.slot = None
        return leftover


def token_split(value: object) -> dict[str, int]:
    """The audio/text split of `response.done`'s tokens, kept on the response's span."""
    out: dict[str, int] = {}
    if not isinstance(value, Mapping):
        return out
    for side in ("input", "output"):
        details = value.get(f"{side}_token_details")
        if isinstance(details, Mapping):
            for kind in ("audio", "text"):
                count = details.get(f"{kind}_tokens")
                if isinstance(count, int) and not isinstance(count, bool):
                    out[f"{side}_{kind}_tokens"] = count
    return out


def response_usage(value: object) -> Usage | None:
    """`response.done`'s usage: input/output tokens, cached input tokens (None: absent)."""
    if not isinstance(value, Mapping):
        return None
    details = value.get("input_token_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, Mapping) else 0

    def count(v: object) -> int:
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    return Usage(
        input_tokens=count(value.get("input_tokens")),
        output_tokens=count(value.get("output_tokens")),
        cached_tokens=count(cached),
    )
