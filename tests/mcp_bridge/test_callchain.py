"""A completion's tool call names the parent of the MCP call that runs it, once."""

from __future__ import annotations

from core.callchain import CallChain


def test_the_tool_call_of_a_trace_is_the_parent_of_its_next_run_only() -> None:
    chain = CallChain()
    chain.note("trace-a", "calc__add", "span-1")
    assert chain.parent_of("trace-b", "calc__add") is None  # another session
    assert chain.parent_of("trace-a", "calc__add") == "span-1"
    assert chain.parent_of("trace-a", "calc__add") is None  # taken


def test_a_model_that_named_the_bare_tool_still_parents_the_federated_call() -> None:
    chain = CallChain()
    chain.note("t", "add", "span-bare")
    chain.note("t", "calc__add", "span-full")
    assert chain.parent_of("t", "calc__add") == "span-full"
    assert chain.parent_of("t", "calc__add") == "span-bare"
    assert chain.parent_of("t", "calc__add") is None


def test_a_later_completion_replaces_the_parent_and_the_map_is_bounded() -> None:
    chain = CallChain(capacity=3)
    chain.note("t", "calc__add", "first")
    chain.note("t", "calc__add", "second")
    assert chain.parent_of("t", "calc__add") == "second"
    for n in range(5):
        chain.note("t", f"tool{n}", f"s{n}")
    assert len(chain) == 3
    assert chain.parent_of("t", "tool0") is None  # evicted, oldest first
    assert chain.parent_of("t", "tool4") == "s4"
