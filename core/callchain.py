"""Call chains across protocols: a model's tool call, then that tool's run over MCP.

When a chat completion in an agent session (trace) replies with tool calls, the pipeline notes
`(trace, tool name) → the completion's span`. When the same session then calls that tool over
MCP, the tool call's span takes that completion's span as its parent, so the session reads as
one tree: model call → tool calls → next model call. The map is small, bounded and in memory:
a parent that fell out of it (or a gateway restart) leaves the tool span a root of its trace.
"""

from __future__ import annotations

from collections import OrderedDict

from core.mcp import TOOL_SEPARATOR

DEFAULT_CAPACITY = 10_000


class CallChain:
    """The latest completion span that asked for each tool, per trace (LRU-bounded)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._parents: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._parents)

    def note(self, trace_id: str, tool: str, span_id: str) -> None:
        """The completion `span_id` of trace `trace_id` asked for `tool`."""
        key = (trace_id, tool)
        self._parents[key] = span_id
        self._parents.move_to_end(key)
        while len(self._parents) > self._capacity:
            self._parents.popitem(last=False)

    def parent_of(self, trace_id: str, tool: str) -> str | None:
        """The span that asked for `tool` (`<server>__<tool>` or the bare tool name), taken once.

        A model sees tools either by their federated name or by the upstream's own name, so the
        full name is looked up first, then the name without its `<server>__` prefix.
        """
        names = [tool]
        server, sep, bare = tool.partition(TOOL_SEPARATOR)
        if sep and server and bare:
            names.append(bare)
        for name in names:
            parent = self._parents.pop((trace_id, name), None)
            if parent is not None:
                return parent
        return None
