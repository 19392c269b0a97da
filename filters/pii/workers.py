"""A pool of PII analysis worker processes (`filters.pii.worker`), fed over pipes.

Analysis is pure Python: on the event loop it is a large part of a request's CPU, and a thread
does not help (the GIL). A worker process takes it to another core; the loop only encodes a
batch, writes it to a pipe and parses the reply.

Each worker has at most one batch in flight. Texts that arrive meanwhile wait in its queue and go
together as the next batch when the reply comes back, so under load one message carries many
texts and they share its fixed cost (a write, a wake-up and a read: ~60 µs of loop CPU). New
texts go to the least loaded worker.

A worker that dies, answers garbage, or whose batch is out for a whole deadline (a second at
least) fails what it holds (`WorkerFailed`) and is restarted on the next use; one that dies
before it is ready is retried only after a pause that doubles each time, so a broken install
does not spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from filters.pii.entities import Detection

logger = logging.getLogger(__name__)

WORKER_MODULE = "filters.pii.worker"
# A frame is a 4-byte big-endian length and an orjson body; a worker's first frame says it is ready.
HEADER = struct.Struct(">I")
READY = b'"ready"'
MAX_FRAME = 1 << 28
# How long a closing pool waits for its workers to finish on their own before killing them.
CLOSE_SECONDS = 2.0
FIRST_RETRY_SECONDS = 1.0
# A batch out this long at least counts as stuck, however short the deadline: a restart costs a
# second or two of CPU, and must not follow every late answer of a very short deadline.
MIN_STALL_SECONDS = 1.0
# Timers fire up to a few ms early by the loop's clock (uvloop rounds them to whole ms).
TIMER_SLACK = 0.005
MAX_RETRY_SECONDS = 60.0
_SURROGATE = re.compile("[\ud800-\udfff]")


class WorkerFailed(Exception):
    """A worker could not answer: it died, answered garbage, stalled or could not start.

    The message names the cause, never a text.
    """


@dataclass(eq=False, slots=True)
class _Job:
    """Texts of one analysis, the entities looked for, and where their answer goes."""

    texts: Sequence[str]
    entities: tuple[str, ...]
    future: asyncio.Future[list[tuple[Detection, ...]]]


class _Worker(asyncio.SubprocessProtocol):
    """One worker process, seen from the event loop: its queue, its batch in flight, its pipes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ready.add_done_callback(_retrieve)  # a start failure is reported by the pool
        self.exited: asyncio.Future[None] = loop.create_future()
        self.alive = True
        self.messages = 0
        self.sent_at = 0.0
        self._loop = loop
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._queue: list[_Job] = []
        self._inflight: list[_Job] = []

    @property
    def load(self) -> int:
        return len(self._queue) + len(self._inflight)

    @property
    def pid(self) -> int | None:
        return None if self._transport is None else self._transport.get_pid()

    # -- the loop's side ---------------------------------------------------------------

    def submit(self, job: _Job) -> None:
        self._queue.append(job)
        if not self._inflight and self.ready.done():
            self._send()

    def overdue(self, job: _Job, stall_after: float) -> None:
        """`job`'s caller gave up; if its batch has been out a whole deadline, restart."""
        if job in self._inflight and self._loop.time() - self.sent_at >= stall_after - TIMER_SLACK:
            logger.warning("PII worker gave no answer in %.0f ms; restarting it", stall_after * 1e3)
            self.kill(WorkerFailed("worker stalled"))

    def close_input(self) -> None:
        """End the worker's stdin: it finishes its batch and exits (nobody waits for it now)."""
        self._fail(WorkerFailed("PII workers closed"))
        if self._stdin is not None:
            self._stdin.close()

    def kill(self, exc: WorkerFailed) -> None:
        self._fail(exc)
        if self._transport is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                self._transport.kill()
            self._transport.close()

    def fail_start(self, exc: WorkerFailed) -> None:
        """The process could not even be started."""
        self._fail(exc)
        if not self.exited.done():
            self.exited.set_result(None)

    def _send(self) -> None:
        if self._stdin is None:
            return
        jobs = [j for j in self._queue if not j.future.done()]  # timed-out callers are gone
        self._queue = []
        if not jobs:
            return
        self._stdin.write(encode_batch(jobs))
        self._inflight = jobs
        self.sent_at = self._loop.time()
        self.messages += 1

    # -- the process's side (asyncio.SubprocessProtocol) --------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement these interfaces without subclassing asyncio's.
        self._transport = cast(asyncio.SubprocessTransport, transport)
        self._stdin = cast(asyncio.WriteTransport, self._transport.get_pipe_transport(0))

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        buffer = self._buffer
        buffer += data
        while self.alive and len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if size > MAX_FRAME:
                self._garbage()
            elif len(buffer) < end:
                return
            else:
                body = bytes(buffer[HEADER.size : end])
                del buffer[:end]
                self._frame(body)

    def process_exited(self) -> None:
        code = None if self._transport is None else self._transport.get_returncode()
        if self.alive:
            logger.warning("PII worker exited (code %s)", code)
        self._fail(WorkerFailed(f"worker exited (code {code})"))
        if not self.exited.done():
            self.exited.set_result(None)

    def _frame(self, body: bytes) -> None:
        if not self.ready.done():
            if body != READY:
                self._garbage()
                return
            self.ready.set_result(None)
        else:
            jobs, self._inflight = self._inflight, []
            try:
                answers = decode_answers(jobs, orjson.loads(body))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                self._inflight = jobs
                self._garbage()
                return
            for job, answer in zip(jobs, answers, strict=True):
                if not job.future.done():
                    if answer is None:
                        job.future.set_exception(WorkerFailed("analysis raised in the worker"))
                    else:
                        job.future.set_result(answer)
        self._send()

    def _garbage(self) -> None:
        logger.warning("PII worker answered an unreadable message; restarting it")
        self.kill(WorkerFailed("worker answered garbage"))

    def _fail(self, exc: WorkerFailed) -> None:
        if not self.alive:
            return
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(exc)
        jobs = self._inflight + self._queue
        self._inflight, self._queue = [], []
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)


def _detection(entity: object, start: object, end: object, score: object) -> Detection:
    if not (isinstance(entity, str) and type(start) is int and type(end) is int):
        raise TypeError("not a detection")
    if not isinstance(score, int | float):
        raise TypeError("not a detection")
    return Detection(entity, start, end, float(score))


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def encode_frame(body: bytes) -> bytes:
    """`body` behind its length."""
    return HEADER.pack(len(body)) + body


def encode_batch(jobs: Sequence[_Job]) -> bytes:
    """One framed batch (see `filters.pii.worker`) of every text of `jobs`."""
    sets: dict[tuple[str, ...], int] = {}
    items = [(sets.setdefault(job.entities, len(sets)), text) for job in jobs for text in job.texts]
    try:
        body = orjson.dumps((list(sets), items))
    except TypeError:
        # A lone surrogate is not UTF-8. It is no part of any entity either: the replacement
        # character stands in for it, one code point for one, so every offset stays right.
        items = [(i, _SURROGATE.sub("\ufffd", text)) for i, text in items]
        body = orjson.dumps((list(sets), items))
    return encode_frame(body)


def decode_answers(jobs: Sequence[_Job], reply: Any) -> list[list[tuple[Detection, ...]] | None]:
    """Each job's detections per text, from a worker's reply; None for a job a text failed.

    Raises:
        ValueError, TypeError: the reply does not fit the batch.
    """
    if not isinstance(reply, list) or len(reply) != sum(len(j.texts) for j in jobs):
        raise ValueError("reply does not match the batch")
    answers: list[list[tuple[Detection, ...]] | None] = []
    at = 0
    for job in jobs:
        entries = reply[at : at + len(job.texts)]
        at += len(job.texts)
        if any(e is None for e in entries):
            answers.append(None)
            continue
        answers.append([tuple(_detection(*d) for d in found) for found in entries])
    return answers


@dataclass(slots=True)
class _Slot:
    """One place in the pool: its current worker, and when a failed start may be retried."""

    worker: _Worker | None = None
    retry_at: float = 0.0
    pause: float = FIRST_RETRY_SECONDS
    spawning: asyncio.Task[None] | None = field(default=None, repr=False)


class AnalysisPool:
    """`size` worker processes answering `PIIAnalyzer.analyze` for the filter.

    `ner` and `score_threshold` are the analyzer's settings; `stall_after` (the filter's
    timeout, but at least `MIN_STALL_SECONDS`) is how long a batch may be out before a caller
    giving up restarts its worker.
    `command` replaces the worker's command line (tests use it to start a misbehaving one).
    """

    def __init__(
        self,
        size: int,
        *,
        ner: bool,
        score_threshold: float,
        stall_after: float,
        command: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise ValueError("a pool has at least one worker")
        self._slots = [_Slot() for _ in range(size)]
        flags = [f"--score-threshold={score_threshold!r}", *(["--ner"] if ner else [])]
        self._command = list(command) or [sys.executable, "-m", WORKER_MODULE, *flags]
        self._stall_after = max(stall_after, MIN_STALL_SECONDS)
        self._closed = False
        self._retired_messages = 0
        self.starts = 0  # worker processes started so far, restarts included

    @property
    def messages(self) -> int:
        """Batches sent to workers so far (a batch carries one or more texts)."""
        live = sum(s.worker.messages for s in self._slots if s.worker is not None)
        return self._retired_messages + live

    @property
    def pids(self) -> tuple[int, ...]:
        """The process ids of the workers started and not yet known to be gone."""
        workers = (s.worker for s in self._slots)
        return tuple(w.pid for w in workers if w is not None and w.alive and w.pid is not None)

    async def start(self) -> None:
        """Start every worker not running yet and wait until each has loaded the analyzer.

        Raises:
            WorkerFailed: a worker exited before it was ready (its stderr says why).
        """
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            if slot.worker is None or not slot.worker.alive:
                self._restart(slot, loop)
        await asyncio.gather(*(s.worker.ready for s in self._slots if s.worker is not None))

    async def analyze(
        self, texts: Sequence[str], entities: tuple[str, ...]
    ) -> list[tuple[Detection, ...]]:
        """`PIIAnalyzer.analyze(text, entities)` for each text, in a worker.

        Raises:
            WorkerFailed: no worker could answer (see the class docstring).
        """
        loop = asyncio.get_running_loop()
        worker = self._pick(loop)
        job = _Job(texts, entities, loop.create_future())
        worker.submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            worker.overdue(job, self._stall_after)
            raise

    async def aclose(self) -> None:
        """Close the workers' input, give them `CLOSE_SECONDS` to exit, then kill the rest."""
        self._closed = True
        spawning = [s.spawning for s in self._slots if s.spawning is not None]
        await asyncio.gather(*spawning, return_exceptions=True)
        workers = [s.worker for s in self._slots if s.worker is not None]
        for worker in workers:
            worker.close_input()
        exits = [w.exited for w in workers if not w.exited.done()]
        if exits:
            await asyncio.wait(exits, timeout=CLOSE_SECONDS)
        for worker in workers:
            worker.kill(WorkerFailed("PII workers closed"))
        exits = [w.exited for w in workers if not w.exited.done()]
        if exits:  # killed: reaped at once
            await asyncio.wait(exits, timeout=CLOSE_SECONDS)

    def _pick(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        if self._closed:
            raise WorkerFailed("PII workers closed")
        now = loop.time()
        best: _Worker | None = None
        for slot in self._slots:
            worker = slot.worker
            if worker is None or not worker.alive:
                if now < slot.retry_at:
                    continue
                worker = self._restart(slot, loop)
            if best is None or worker.load < best.load:
                best = worker
        if best is None:
            raise WorkerFailed("PII workers failed to start; retrying later")
        return best

    def _restart(self, slot: _Slot, loop: asyncio.AbstractEventLoop) -> _Worker:
        if slot.worker is not None:
            self._retired_messages += slot.worker.messages
        worker = slot.worker = _Worker(loop)
        self.starts += 1
        worker.ready.add_done_callback(lambda ready: self._started(slot, ready, loop))
        slot.spawning = loop.create_task(self._spawn(worker, loop))
        return worker

    def _started(
        self, slot: _Slot, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop
    ) -> None:
        if ready.cancelled() or ready.exception() is None:
            slot.pause = FIRST_RETRY_SECONDS
            return
        if self._closed:
            return  # stopped while starting: not a failure
        logger.error("PII worker failed to start; next try in %.0f s", slot.pause)
        slot.retry_at = loop.time() + slot.pause
        slot.pause = min(slot.pause * 2, MAX_RETRY_SECONDS)

    async def _spawn(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.subprocess_exec(
                lambda: worker,
                *self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # the worker's own messages go to the gateway's log
            )
        except OSError as exc:
            logger.error("PII worker could not be started: %s", type(exc).__name__)
            worker.fail_start(WorkerFailed("worker could not be started"))
