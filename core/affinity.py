"""Prefix affinity: requests that share a prompt prefix go to the same target.

Upstreams with prompt (KV) caches answer a repeated prefix faster and cheaper when it lands on
the replica that has already seen it. The prefix is the system prompt plus the first user turn,
hashed; the target is chosen by weighted rendezvous hashing (highest random weight): each
target scores `-weight / ln(u)` with `u` a hash of (prefix, target) in (0, 1), and the highest
score wins. Adding or removing one of N targets moves only the prefixes that target wins or
loses, about 1/N of them, and weights keep their share, so canary percentages hold.

Affinity only picks the first candidate; the strategy's order of the rest stays the failover
order, so an open circuit or a failure on the pinned target still fails over.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from core.envelope import Envelope
from core.targets import BoundTarget

_SCALE = float(1 << 64)


def prefix_key(env: Envelope) -> str | None:
    """The hash of the system prompt and the first user turn; None without a user turn."""
    system: list[str] = []
    for message in env.messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
        elif message.role == "user":
            prefix = "\x1e".join([*system, "\x1f", message.text()])
            return hashlib.sha256(prefix.encode()).hexdigest()
    return None


def rendezvous(key: str, targets: Sequence[BoundTarget]) -> BoundTarget | None:
    """The target `key` sticks to among `targets` (None when none has a positive weight)."""
    best: BoundTarget | None = None
    best_score = -math.inf
    for target in targets:
        if target.weight <= 0:
            continue
        digest = hashlib.sha256(f"{key}\x00{target.key}".encode()).digest()
        # Map 64 bits into the open interval (0, 1) so the logarithm is finite and negative.
        u = (int.from_bytes(digest[:8], "big") + 0.5) / _SCALE
        score = -target.weight / math.log(u)
        if score > best_score:
            best, best_score = target, score
    return best


def pin(key: str | None, ordered: Sequence[BoundTarget]) -> list[BoundTarget]:
    """`ordered` with the target `key` sticks to moved to the front."""
    chosen = rendezvous(key, ordered) if key is not None else None
    if chosen is None:
        return list(ordered)
    return [chosen, *(t for t in ordered if t is not chosen)]
