"""Merging the stream chunks that arrived together, so that they travel on together.

An upstream's reply often reaches the gateway many events to one socket read. Each chunk then
costs a pass through every stream stage and a write to the client; merging adjacent chunks of
one read into one costs nothing in latency (nothing waits for more data) and saves most of that.

A merge must not change what a client rebuilds from the stream, on any wire, so only these
chunks join the one before them (the *run*):

- both belong to the same choice (`index`) and `scope`, and neither carries `extra` (refusals,
  reasoning and thinking, another wire's deltas): those keep their own chunk, in place;
- a chunk that only carries usage joins any run that has no usage yet (even a finished one:
  usage comes after the finish on every wire);
- otherwise the run must not be finished or carry usage, and the chunk must not bring a `role`
  (a role opens a message); text joins text, or a run holding only a role;
- tool-call deltas join a run without text, and only to continue the run's last tool call: same
  tool index, no `id` or `name` (those open a call). A merged chunk never carries more tool
  deltas than one of its originals did, so a client reading `tool_calls[0]` reads it all;
- text never joins a run holding tool calls (a chunk's text is encoded before its tool calls:
  the order would change). Empty text counts as none.

A finish reason may ride on the run's last chunk: the OpenAI wire allows it on a content chunk,
and the Anthropic encoder only records it. Usage may too: both ingresses send it in their own
closing event, whichever chunk brought it.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.envelope import StreamChunk, ToolCallDelta


def coalesce(chunks: Iterable[StreamChunk]) -> list[StreamChunk]:
    """`chunks` with each mergeable run merged into one chunk, in order.

    Pure: the inputs are never changed. A chunk that merges with nothing is returned as it is;
    a merged one is a new chunk.
    """
    out: list[StreamChunk] = []
    owned = False  # whether out[-1] is a copy made here, which may grow in place
    for chunk in chunks:
        if out and _joins(out[-1], chunk):
            if not owned:
                out[-1] = _copy(out[-1])
                owned = True
            _absorb(out[-1], chunk)
        else:
            out.append(chunk)
            owned = False
    return out


def _joins(run: StreamChunk, c: StreamChunk) -> bool:
    """Whether `c` may be merged into `run`, the chunk before it."""
    if run.index != c.index or run.scope is not c.scope or run.extra or c.extra:
        return False
    if c.usage_only:
        return run.usage is None
    if run.finish_reason is not None or run.usage is not None or c.role is not None:
        return False
    if c.text and run.tool_calls:
        return False
    if not c.tool_calls:
        return True
    if run.text:
        return False
    if not run.tool_calls:
        return True
    last = run.tool_calls[-1].index
    return all(d.index == last and d.id is None and d.name is None for d in c.tool_calls)


def _copy(c: StreamChunk) -> StreamChunk:
    calls = _copied(c.tool_calls)
    return StreamChunk(c.index, c.role, c.text, calls, c.finish_reason, c.usage, {}, c.scope)


def _copied(calls: list[ToolCallDelta]) -> list[ToolCallDelta]:
    return [ToolCallDelta(d.index, d.id, d.name, d.arguments) for d in calls]


def _absorb(run: StreamChunk, c: StreamChunk) -> None:
    if c.text is not None:
        run.text = c.text if run.text is None else run.text + c.text
    if c.tool_calls:
        if run.tool_calls:
            last = run.tool_calls[-1]
            last.arguments += "".join(d.arguments for d in c.tool_calls)
        else:
            run.tool_calls = _copied(c.tool_calls)
    if c.finish_reason is not None:
        run.finish_reason = c.finish_reason
    if c.usage is not None:
        run.usage = c.usage
