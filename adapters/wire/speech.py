"""Offline speech: recognition with pocketsphinx, and generated audio standing in for speech.

pocketsphinx ships its en-us model inside its wheel: nothing is downloaded. A decoder takes about
half a second to load and is not thread-safe, so recognizers keep a small pool of loaded decoders
and decode off the event loop. Imported only where speech is used (privacy mode, the sim).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import anyio.to_thread
import numpy as np
from pocketsphinx import Decoder

from adapters.wire.audio import RECOGNIZER_RATE

WORD_SECONDS = 0.18
_DIGITS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_EMAIL = re.compile(r"\b([a-z0-9]+) at ([a-z0-9]+(?: dot [a-z0-9]+)+)\b")


def written_form(words: str) -> str:
    """What a transcription service would write for recognized words: digit runs as digits
    ("two one two" → "212") and spoken addresses as addresses ("jo at example dot com").

    The PII recognizers look for written numbers and addresses; pocketsphinx spells them out.
    """
    out: list[str] = []
    run: list[str] = []
    for word in [*words.split(), ""]:
        digit = _DIGITS.get(word)
        if digit is not None:
            run.append(word)
            continue
        if len(run) >= 2:
            out.append("".join(_DIGITS[w] for w in run))
        else:
            out.extend(run)
        run = []
        if word:
            out.append(word)
    text = " ".join(out)
    return _EMAIL.sub(lambda m: f"{m.group(1)}@{m.group(2).replace(' dot ', '.')}", text)


class Recognizer:
    """Speech to text on 16 kHz 16-bit mono PCM, with up to `size` decoders loaded at once."""

    def __init__(self, size: int = 2) -> None:
        self._idle: list[Decoder] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def _decoder(self) -> Iterator[Decoder]:
        with self._slots:
            with self._lock:
                decoder = self._idle.pop() if self._idle else None
            if decoder is None:
                decoder = Decoder(samprate=RECOGNIZER_RATE, loglevel="FATAL")
            try:
                yield decoder
            finally:
                with self._lock:
                    self._idle.append(decoder)

    def warm(self) -> None:
        """Load one decoder now (blocking)."""
        with self._decoder():
            pass

    def recognize_sync(self, pcm16k: bytes) -> str:
        """The words heard in `pcm16k` (blocking; empty for silence)."""
        if len(pcm16k) < 2:
            return ""
        with self._decoder() as decoder:
            decoder.start_utt()
            decoder.process_raw(pcm16k, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return written_form(hyp.hypstr.strip()) if hyp is not None else ""

    async def recognize(self, pcm16k: bytes) -> str:
        """The words heard in `pcm16k`, decoded in a worker thread."""
        return await anyio.to_thread.run_sync(self.recognize_sync, pcm16k)


def tone_speech(text: str, rate: int) -> bytes:
    """Generated audio for `text`: one short tone per word (16-bit PCM at `rate`).

    Not speech, but audio of a plausible length and shape for each word, so clients get real
    audio deltas to play and the durations that metering counts.
    """
    words = text.split() or [""]
    n = int(WORD_SECONDS * rate)
    t = np.arange(n) / rate
    envelope = np.sin(np.pi * np.arange(n) / n)
    pieces = []
    for word in words:
        pitch = 180 + hashlib.blake2b(word.encode(), digest_size=1).digest()[0] * 2
        pieces.append(np.sin(2 * np.pi * pitch * t) * envelope * 8000)
    return np.concatenate(pieces).astype("<i2").tobytes()
