"""PII filter benchmark (printed, not asserted; not collected by pytest).

    python tests/perf/pii.py

Added latency per request for a new 300-character and a new 4 KB message (pattern mode; NER when
its model package is installed), the per-turn cost across a 20-turn replayed session, and recall
and precision per entity type on fixtures/pii/matrix.json.

Pattern mode also gets the analyzer alone on a new ~90-character prompt holding an e-mail and a
phone number (the gateway benchmark's `--unique` prompt), CPU per text, both with our pattern
engine and with Presidio's own engine (`analyze_reference`): once with a phone number new every
time, once with the same number (as in that benchmark; the phone verdicts are remembered); with a
lettered token, and with the in-process benchmark's `f"{n:08x}"` one (mostly all digits).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from core.access import Principal
from core.envelope import Envelope, Message, Modality, TextPart
from core.filtering import FilterContext
from filters.pii import PIIAnalyzer, PIIFilter
from filters.pii.engine import NER_MODEL
from filters.pii.entities import DEFAULT_ENTITIES

ROOT = Path(__file__).parents[2]
SENTENCE = "Please call +1 212-555-0147 or write to jane.roe@example.com about order {n}. "


def _envelope(texts: list[str]) -> Envelope:
    return Envelope(
        id="bench",
        modality=Modality.CHAT,
        model="m",
        messages=[Message("user", [TextPart(t)]) for t in texts],
    )


def _context() -> FilterContext:
    principal = Principal(key_id="k", key_name="bench", org_path="a/b/c")
    return FilterContext("req", principal, "span", {})


def _text(chars: int, n: int) -> str:
    out = ""
    while len(out) < chars:
        out += SENTENCE.format(n=n) + "Nothing personal here, just words to fill the line. "
        n += 1
    return out[:chars]


async def _latency(pii: PIIFilter, chars: int, runs: int = 50) -> str:
    """Added time p50 (wall) and the process's CPU time p50: CPU is steadier on a busy machine."""
    wall, cpu = [], []
    for i in range(runs):
        env = _envelope([_text(chars, i * 1000)])  # a new text every time: no cache hit
        start, cpu_start = time.perf_counter(), time.process_time()
        await pii.on_request(env, _context())
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - cpu_start) * 1000)
    return f"p50 {statistics.median(wall):.2f} ms added (CPU {statistics.median(cpu):.2f} ms)"


async def _session(pii: PIIFilter) -> tuple[float, float, int, int]:
    history: list[str] = []
    costs: list[tuple[float, int]] = []
    for turn in range(1, 21):
        history.append(f"Turn {turn}: call me on +1 212-555-01{turn:02d} about order {turn}.")
        before = pii.analyses
        start = time.perf_counter()
        await pii.on_request(_envelope(list(history)), _context())
        costs.append(((time.perf_counter() - start) * 1000, pii.analyses - before))
        history.append(f"Noted, turn {turn}.")
    return costs[1][0], costs[19][0], costs[1][1], costs[19][1]


async def _quality(pii: PIIFilter) -> dict[str, tuple[int, int, int]]:
    matrix = json.loads((ROOT / "fixtures/pii/matrix.json").read_text())
    scores: dict[str, tuple[int, int, int]] = {}
    for v in matrix["values"]:
        if v.get("ner_only") and "PERSON" not in pii.entities:
            continue
        env = _envelope([v["text"]])
        await pii.on_request(env, _context())
        kinds = [f.kind for f in env.findings]
        tp = int(v["entity"] in kinds)
        fp = sum(1 for k in kinds if k != v["entity"])
        tp0, fp0, n0 = scores.get(v["entity"], (0, 0, 0))
        scores[v["entity"]] = (tp0 + tp, fp0 + fp, n0 + 1)
    return scores


def _prompts(new_phone: bool, first: int, hex8: bool = False) -> Iterator[str]:
    """The `--unique` prompt; `hex8`: with the in-process benchmark's token (`f"{n:08x}"`, n from
    0: mostly digits, so each token is also a phone-number candidate, twice per prompt)."""
    for n in itertools.count(first):
        phone = f"202-555-{n % 10_000:04d}" if new_phone else "202-555-0147"
        token = f"{n:08x}" if hex8 else f"{n:x}q"
        yield f"Write to user-{token}@example.com or call {phone} about ticket {token}."


def _analyzer_cpu(
    analyze: Callable[[str], object], prompts: Iterator[str], runs: int
) -> tuple[float, float]:
    """CPU p50 and mean in microseconds of `analyze` on the next `runs` prompts (the mean is what
    throughput pays: with 08x tokens, the costlier all-digit ones are a minority)."""
    cpu = []
    for _ in range(runs):
        text = next(prompts)
        start = time.thread_time()
        analyze(text)
        cpu.append(time.thread_time() - start)
    return statistics.median(cpu) * 1e6, statistics.fmean(cpu) * 1e6


def analyzer_figures(runs: int = 300) -> None:
    analyzer = PIIAnalyzer()
    analyzer.load()
    entities = list(DEFAULT_ENTITIES)
    for label, new_phone, hex8 in (
        ("new phone each time", True, False),
        ("same phone", False, False),
        ("08x token, same phone", False, True),
        ("08x token, new phone each time", True, True),
    ):
        # Disjoint prompt streams: neither path sees a number the other one saw.
        ours = _analyzer_cpu(
            lambda t: analyzer.analyze(t, entities), _prompts(new_phone, 1, hex8), runs
        )
        theirs = _analyzer_cpu(
            lambda t: analyzer.analyze_reference(t, entities),
            _prompts(new_phone, 5001, hex8),
            runs,
        )
        print(f"[pattern] analyzer, 90-char e-mail + phone prompt, {label}: CPU p50 "
              f"{ours[0]:.0f} us, mean {ours[1]:.0f} us (Presidio's engine p50 {theirs[0]:.0f} us, "
              f"mean {theirs[1]:.0f} us)")  # fmt: skip


async def main() -> None:
    analyzer_figures()
    modes = [("pattern", False)]
    if importlib.util.find_spec(NER_MODEL) is not None:
        modes.append(("NER", True))
    else:
        print("NER: not installed")
    for name, ner in modes:
        pii = PIIFilter(secret=b"bench", ner=ner, timeout_ms=10_000)
        await pii.warm()
        print(f"[{name}] new 300-char message: {await _latency(pii, 300)}")
        print(f"[{name}] new 4 KB message:     {await _latency(pii, 4096, 20)}")
        t2, t20, a2, a20 = await _session(pii)
        print(f"[{name}] 20-turn replay: turn 2 {t2:.2f} ms ({a2} analysed), "
              f"turn 20 {t20:.2f} ms ({a20} analysed)")  # fmt: skip
        for entity, (tp, fp, n) in sorted((await _quality(pii)).items()):
            precision = tp / (tp + fp) if tp + fp else 0.0
            print(f"[{name}] {entity:16} recall {tp}/{n}  precision {precision:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
