"""Embeddings of the simulated model: deterministic unit vectors from a hash of the input."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass

from adapters.egress.sim_model import count_tokens

DEFAULT_DIMENSIONS = 16
MAX_DIMENSIONS = 8192


@dataclass(frozen=True, slots=True)
class EmbeddingInput:
    """One input to embed: the text hashed into the vector and its token count."""

    text: str
    tokens: int


def text_input(text: str) -> EmbeddingInput:
    """An input given as text."""
    return EmbeddingInput(text, count_tokens(text))


def token_input(tokens: list[int]) -> EmbeddingInput:
    """An input given pre-tokenized: each integer is one token already."""
    return EmbeddingInput(" ".join(str(t) for t in tokens), len(tokens))


def embedding_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit-length vector of `dimensions` floats, the same for the same text every time.

    Raises:
        ValueError: `dimensions` outside 1..MAX_DIMENSIONS.
    """
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise ValueError(f"dimensions must be 1..{MAX_DIMENSIONS}")
    raw: list[float] = []
    block = 0
    data = text.encode()
    while len(raw) < dimensions:
        digest = hashlib.sha256(block.to_bytes(8, "big") + data).digest()
        # Each 32-bit word becomes a value in [-1, 1).
        raw.extend(n / 2**31 - 1.0 for (n,) in struct.iter_unpack("<I", digest))
        block += 1
    raw = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def encode_base64(vector: list[float]) -> str:
    """The vector as OpenAI sends it for `encoding_format: base64`: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
