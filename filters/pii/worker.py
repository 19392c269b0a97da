"""One PII analysis worker process: `python -m filters.pii.worker [--ner] [--score-threshold X]`.

Started by `filters.pii.workers.AnalysisPool`, never by hand. It loads `PIIAnalyzer` once, says
so with a first frame `"ready"`, then answers batches read from stdin on stdout, one reply per
batch, until stdin reaches its end: the gateway closed it, or died (so no worker outlives it).

Frames are a 4-byte big-endian length and an orjson body (`workers.encode_frame`). A batch is
`[entity_sets, [[set_index, text], …]]`; its reply is one entry per text, in order: a list of
`[entity, start, end, score]`, or null when that text's analysis raised (only the exception's
type is written to stderr: its message may quote the text).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import IO, Any

import orjson

from filters.pii.engine import DEFAULT_SCORE_THRESHOLD, PIIAnalyzer
from filters.pii.workers import HEADER, READY, encode_frame


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's body, or None at the end of the stream (a cut-off frame ends it too)."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def answer(analyzer: PIIAnalyzer, batch: Any) -> list[list[list[object]] | None]:
    """The reply to one batch (see the module docstring)."""
    entity_sets, items = batch
    replies: list[list[list[object]] | None] = []
    for index, text in items:
        try:
            found = analyzer.analyze(text, entity_sets[index])
        except Exception as exc:  # one text's failure is that text's answer, not the worker's
            print(f"PII worker: analysis failed: {type(exc).__name__}", file=sys.stderr)
            replies.append(None)
            continue
        replies.append([[d.entity, d.start, d.end, d.score] for d in found])
    return replies


def serve(analyzer: PIIAnalyzer, requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer every batch on `requests` until it ends."""
    analyzer.load()
    replies.write(encode_frame(READY))
    replies.flush()
    while (frame := _read_frame(requests)) is not None:
        replies.write(encode_frame(orjson.dumps(answer(analyzer, orjson.loads(frame)))))
        replies.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ner", action="store_true")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the gateway shuts down, and says when to stop by
    # closing stdin; in-flight analyses of its drain must still be answered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The replies get stdout's descriptor to themselves; anything a library prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    analyzer = PIIAnalyzer(ner=args.ner, score_threshold=args.score_threshold)
    try:
        with replies:
            serve(analyzer, sys.stdin.buffer, replies)
    except BrokenPipeError:
        pass  # the gateway went away mid-reply: nobody is left to answer
    return 0


if __name__ == "__main__":
    sys.exit(main())
