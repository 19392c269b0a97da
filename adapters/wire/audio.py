"""Audio as the Realtime and audio APIs carry it: formats, durations and conversions.

Realtime audio is raw: 16-bit little-endian mono PCM at 24 kHz (GA `audio/pcm`, beta `pcm16`) or
G.711 at 8 kHz (`audio/pcmu` / `g711_ulaw`, `audio/pcma` / `g711_alaw`). The duration of an
appended chunk therefore follows from its byte count alone. Speech recognition here wants 16 kHz
PCM, so everything converts to that (numpy; `audioop` is gone from Python 3.13).
"""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RECOGNIZER_RATE = 16_000


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A raw audio format: its encoding and sample rate (mono)."""

    encoding: str  # "pcm16", "ulaw" or "alaw"
    rate: int

    @property
    def bytes_per_second(self) -> int:
        return self.rate * (2 if self.encoding == "pcm16" else 1)


PCM24K = AudioFormat("pcm16", 24_000)
_NAMES = {
    "audio/pcm": PCM24K,
    "pcm16": PCM24K,
    "audio/pcmu": AudioFormat("ulaw", 8000),
    "g711_ulaw": AudioFormat("ulaw", 8000),
    "audio/pcma": AudioFormat("alaw", 8000),
    "g711_alaw": AudioFormat("alaw", 8000),
}


def audio_format(value: object) -> AudioFormat | None:
    """The format a session names: a beta string (`pcm16`) or a GA object (`{"type": …}`)."""
    if isinstance(value, dict):
        value = value.get("type")
    return _NAMES.get(value) if isinstance(value, str) else None


def b64_size(data: str | bytes) -> int:
    """The decoded size of base64 text, without decoding it."""
    n = len(data)
    if n == 0:
        return 0
    tail = data[-2:]
    pad = tail.count("=") if isinstance(tail, str) else tail.count(b"=")
    return n * 3 // 4 - pad


def b64_size_at(text: str, start: int, end: int) -> int:
    """The decoded size of the base64 in `text[start:end]`, without copying or decoding it."""
    n = end - start
    if n <= 0:
        return 0
    pad = (text[end - 1] == "=") + (n > 1 and text[end - 2] == "=")
    return n * 3 // 4 - pad


def seconds(nbytes: int, fmt: AudioFormat) -> float:
    """How long `nbytes` of `fmt` audio play."""
    return nbytes / fmt.bytes_per_second


def _g711_table(law: str) -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32)
    if law == "ulaw":
        u = ~codes & 0xFF
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        magnitude = ((mantissa << 3) + 0x84) << exponent
        value = np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84)
    else:
        a = codes ^ 0x55
        sign = a & 0x80
        exponent = (a >> 4) & 0x07
        mantissa = a & 0x0F
        magnitude = np.where(
            exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1)
        )
        value = np.where(sign != 0, magnitude, -magnitude)
    return value.astype(np.int16)


_ULAW = _g711_table("ulaw")
_ALAW = _g711_table("alaw")


def to_pcm16(raw: bytes, fmt: AudioFormat) -> npt.NDArray[np.int16]:
    """Samples of `raw` as 16-bit PCM at `fmt.rate`."""
    codes = np.frombuffer(raw, dtype=np.uint8)
    if fmt.encoding == "ulaw":
        return _ULAW[codes]
    if fmt.encoding == "alaw":
        return _ALAW[codes]
    return np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2").astype(np.int16)


def resample(samples: npt.NDArray[np.int16], rate: int, to: int) -> npt.NDArray[np.int16]:
    """Band-limited resampling in the frequency domain (whole clips: a committed turn)."""
    if rate == to or samples.size == 0:
        return samples
    count = max(1, round(samples.size * to / rate))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = count // 2 + 1
    if bins <= spectrum.size:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - spectrum.size, dtype=complex)])
    out = np.fft.irfft(spectrum, count) * (count / samples.size)
    result: npt.NDArray[np.int16] = np.clip(out, -32768, 32767).astype(np.int16)
    return result


def for_recognizer(raw: bytes, fmt: AudioFormat) -> bytes:
    """`raw` audio as 16 kHz 16-bit PCM bytes."""
    return resample(to_pcm16(raw, fmt), fmt.rate, RECOGNIZER_RATE).astype("<i2").tobytes()


def from_pcm16(samples: npt.NDArray[np.int16], fmt: AudioFormat) -> bytes:
    """16-bit samples at `fmt.rate` encoded as `fmt` (G.711 by nearest table entry)."""
    if fmt.encoding == "pcm16":
        return samples.astype("<i2").tobytes()
    table = _ULAW if fmt.encoding == "ulaw" else _ALAW
    order = np.argsort(table)
    ranked = table[order]
    idx = np.clip(np.searchsorted(ranked, samples), 1, 255)
    left, right = ranked[idx - 1], ranked[idx]
    nearest = np.where(np.abs(samples - left) <= np.abs(right - samples), idx - 1, idx)
    return order[nearest].astype(np.uint8).tobytes()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """The 16-bit mono PCM frames of a WAV file and its rate (stereo is mixed down).

    Raises:
        ValueError: not a WAV file, or not 16-bit PCM.
    """
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2:
                raise ValueError("only 16-bit PCM WAV is supported")
            frames = w.readframes(w.getnframes())
            rate, channels = w.getframerate(), w.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a readable WAV file: {exc}") from exc
    if channels > 1:
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).mean(axis=1)
        frames = samples.astype("<i2").tobytes()
    return frames, rate


def write_wav(pcm: bytes, rate: int) -> bytes:
    """16-bit mono PCM as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
