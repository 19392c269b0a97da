"""The simulated model itself: pure functions over plain data, shared by both faces of the sim.

The in-process `SimProvider` and the OpenAI-wire `sim_server` each translate their input into a
`SimChatRequest` and call `chat_reply`, so both give the same text, tool calls and usage, to the
token. Tokens are counted with one rule everywhere (`count_tokens`): a run of word characters or a
single other non-space character is a token. Counting is always done per piece of text, never on
texts glued together, so how a face splits content into parts cannot change a count.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from adapters.egress.sim_options import SimOptions
from adapters.egress.sim_tools import tool_arguments

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# A stream piece is a word with the whitespace before it; trailing whitespace rides on the last.
_WORD_PIECE_RE = re.compile(r"\s*\S+(?:\s+\Z)?")

PER_MESSAGE_TOKENS = 3
IMAGE_TOKENS = 85
AUDIO_TOKENS = 50
VIDEO_TOKENS = 85
ECHO_CHARS = 200
ARGUMENT_PIECE_CHARS = 16

# Single-token words (each matches `\w+` once), so `reply_words=N` costs exactly N tokens.
_VOCABULARY = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "amber", "basil", "cedar", "dune", "ember", "fjord",
)  # fmt: skip


class SimRequestError(ValueError):
    """The request cannot be served as sent; `param` names the offending field when known."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class SimToolCall:
    """A tool call, made by the model now or earlier in the conversation."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class SimToolResult:
    """A tool's answer to the call `tool_call_id`; `name` is set when the wire names the tool."""

    tool_call_id: str
    texts: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SimTurn:
    """One message reduced to what the sim reads: its texts, media counts and tool traffic."""

    role: str
    texts: tuple[str, ...] = ()
    images: int = 0
    audios: int = 0
    videos: int = 0
    tool_calls: tuple[SimToolCall, ...] = ()
    tool_results: tuple[SimToolResult, ...] = ()


@dataclass(frozen=True, slots=True)
class SimTool:
    """A tool offered to the model; `parameters` is its JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto` calls mentioned tools, `none` never calls, `required` always calls, `named` forces."""

    mode: Literal["auto", "none", "required", "named"] = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SimChatRequest:
    """A chat request in the sim's terms."""

    turns: tuple[SimTurn, ...]
    tools: tuple[SimTool, ...] = ()
    max_tokens: int | None = None
    tool_choice: ToolChoice = field(default_factory=ToolChoice)


@dataclass(frozen=True, slots=True)
class SimUsage:
    """Token usage of one reply."""

    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class SimChatReply:
    """The model's answer: text and/or tool calls, why it stopped, and what it cost."""

    text: str
    tool_calls: tuple[SimToolCall, ...]
    finish_reason: str
    usage: SimUsage


@dataclass(frozen=True, slots=True)
class SimToolCallDelta:
    """A piece of a streamed tool call: the first piece names it, later ones add arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class SimDelta:
    """One stream increment, before either face puts it on its own wire."""

    role: str | None = None
    text: str | None = None
    tool_call: SimToolCallDelta | None = None
    finish_reason: str | None = None


def count_tokens(text: str) -> int:
    """The sim's tokenizer: runs of word characters and single punctuation marks."""
    return len(TOKEN_RE.findall(text))


def _turn_tokens(turn: SimTurn) -> int:
    tokens = PER_MESSAGE_TOKENS + sum(count_tokens(t) for t in turn.texts)
    tokens += turn.images * IMAGE_TOKENS + turn.audios * AUDIO_TOKENS + turn.videos * VIDEO_TOKENS
    for call in turn.tool_calls:
        tokens += count_tokens(call.name) + count_tokens(call.arguments)
    for result in turn.tool_results:
        tokens += sum(count_tokens(t) for t in result.texts)
    return tokens


def tool_schema_text(parameters: Mapping[str, Any] | None) -> str:
    """The schema as counted: sorted-key compact JSON, identical whatever order the wire used."""
    if not parameters:
        return ""
    return orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS).decode()


def prompt_tokens(request: SimChatRequest) -> int:
    """Tokens of every message (+3 each, fixed costs for media) and of every tool spec."""
    tokens = sum(_turn_tokens(t) for t in request.turns)
    for tool in request.tools:
        tokens += count_tokens(tool.name) + count_tokens(tool.description or "")
        tokens += count_tokens(tool_schema_text(tool.parameters))
    return tokens


def completion_tokens(text: str, tool_calls: tuple[SimToolCall, ...]) -> int:
    """Tokens of the reply text plus each tool call's name and arguments."""
    return count_tokens(text) + sum(
        count_tokens(c.name) + count_tokens(c.arguments) for c in tool_calls
    )


def parse_tool_choice(value: object) -> ToolChoice:
    """Read a tool choice in the OpenAI or the Anthropic shape.

    Raises:
        SimRequestError: a shape neither protocol uses.
    """
    if value is None or value == "auto":
        return ToolChoice("auto")
    if value == "none":
        return ToolChoice("none")
    if value in ("required", "any"):
        return ToolChoice("required")
    if isinstance(value, Mapping):
        kind = value.get("type")
        function = value.get("function")
        if kind == "function" and isinstance(function, Mapping):
            name = function.get("name")  # OpenAI chat completions
        else:
            name = value.get("name")  # Anthropic `tool` and OpenAI Responses `function`
        if kind in ("function", "tool") and isinstance(name, str) and name:
            return ToolChoice("named", name)
        if kind in ("auto", "none", "any", "required"):
            return parse_tool_choice(kind)
    raise SimRequestError(f"unsupported tool_choice: {value!r}", param="tool_choice")


def parse_max_tokens(params: Mapping[str, Any]) -> int | None:
    """`max_completion_tokens` (the newer name) or `max_tokens`, validated.

    Raises:
        SimRequestError: not a positive integer.
    """
    for name in ("max_completion_tokens", "max_tokens"):
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SimRequestError(f"{name} must be an integer >= 1", param=name)
        return value
    return None


def _fingerprint(request: SimChatRequest) -> bytes:
    # Dataclasses serialize natively in orjson; the digest seeds ids and `reply_words`.
    return hashlib.sha256(orjson.dumps(request.turns)).digest()


def _last_user(turns: tuple[SimTurn, ...]) -> SimTurn | None:
    return next((t for t in reversed(turns) if t.role == "user"), None)


def _media_note(count: int, noun: str) -> str | None:
    if not count:
        return None
    return f"[{count} {noun}{'' if count == 1 else 's'}]"


def _echo(turn: SimTurn | None) -> str:
    if turn is None:
        return "sim:"
    text = " ".join(turn.texts)[:ECHO_CHARS]
    notes = [
        _media_note(turn.images, "image"),
        _media_note(turn.audios, "audio"),
        _media_note(turn.videos, "video"),
    ]
    body = " ".join(p for p in [text, *notes] if p)
    return f"sim: {body}" if body else "sim:"


def _trailing_results(turns: tuple[SimTurn, ...]) -> list[SimToolResult]:
    # Parallel calls come back as several tool messages in a row (OpenAI) or as several
    # results in one user message (Anthropic): answer all of them.
    results: list[SimToolResult] = []
    for turn in reversed(turns):
        if not turn.tool_results:
            break
        results[:0] = turn.tool_results
    return results


def _tool_result_reply(turns: tuple[SimTurn, ...], results: list[SimToolResult]) -> str:
    names = {c.id: c.name for t in turns for c in t.tool_calls}
    parts = []
    for result in results:
        name = names.get(result.tool_call_id) or result.name or result.tool_call_id
        content = "".join(result.texts)[:ECHO_CHARS]
        parts.append(f"tool {name} returned {content}")
    return "sim: " + "; ".join(parts)


def _words(seed: bytes, count: int) -> str:
    words: list[str] = []
    block = 0
    while len(words) < count:
        digest = hashlib.sha256(seed + block.to_bytes(8, "big")).digest()
        words.extend(_VOCABULARY[b % len(_VOCABULARY)] for b in digest)
        block += 1
    return " ".join(words[:count])


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE) is not None


def _tools_to_call(request: SimChatRequest) -> list[SimTool]:
    choice = request.tool_choice
    if not request.tools or choice.mode == "none":
        return []
    if choice.mode == "named":
        named = [t for t in request.tools if t.name == choice.name]
        if not named:
            raise SimRequestError(
                f"tool_choice names tool '{choice.name}', which is not offered",
                param="tool_choice",
            )
        return named
    last = request.turns[-1] if request.turns else None
    if last is None or last.role != "user" or last.tool_results:
        return [request.tools[0]] if choice.mode == "required" else []
    text = " ".join(last.texts)
    mentioned = [t for t in request.tools if _mentions(text, t.name)]
    if not mentioned and choice.mode == "required":
        return [request.tools[0]]
    return mentioned


def _call_id(seed: bytes, index: int, name: str) -> str:
    digest = hashlib.sha256(seed + f"{index}:{name}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def _truncate(text: str, max_tokens: int | None) -> tuple[str, bool]:
    if max_tokens is None:
        return text, False
    ends = [m.end() for m in TOKEN_RE.finditer(text)]
    if len(ends) <= max_tokens:
        return text, False
    return text[: ends[max_tokens - 1]], True


def chat_reply(request: SimChatRequest, options: SimOptions) -> SimChatReply:
    """The deterministic reply to a chat request.

    Tool calls when offered tools are mentioned in the last user message (or forced); otherwise
    `"sim: "` + the last user text (or the tool results it answers), or `reply_words` words;
    cut to `max_tokens` with finish reason `length`.

    Raises:
        SimRequestError: `tool_choice` names a tool that is not offered.
    """
    seed = _fingerprint(request)
    prompt = prompt_tokens(request)
    cached = int(prompt * options.cached_fraction)
    calling = _tools_to_call(request)
    if calling:
        user = _last_user(request.turns)
        prompt_text = " ".join(user.texts) if user else ""
        calls = tuple(
            SimToolCall(
                _call_id(seed, i, t.name), t.name, tool_arguments(t.parameters, prompt_text)
            )
            for i, t in enumerate(calling)
        )
        usage = SimUsage(prompt, completion_tokens("", calls), cached)
        return SimChatReply("", calls, "tool_calls", usage)
    results = _trailing_results(request.turns)
    if options.reply_words is not None:
        text = _words(seed, options.reply_words)
    elif results:
        text = _tool_result_reply(request.turns, results)
    else:
        text = _echo(_last_user(request.turns))
    text, cut = _truncate(text, request.max_tokens)
    usage = SimUsage(prompt, completion_tokens(text, ()), cached)
    return SimChatReply(text, (), "length" if cut else "stop", usage)


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def stream_deltas(reply: SimChatReply) -> list[SimDelta]:
    """The reply as stream increments: role, words, tool-call pieces, then the finish reason.

    Usage is not among them: each face adds it in its own way (the OpenAI wire only on request).
    """
    deltas = [SimDelta(role="assistant")]
    deltas.extend(SimDelta(text=w) for w in _WORD_PIECE_RE.findall(reply.text))
    for index, call in enumerate(reply.tool_calls):
        deltas.append(SimDelta(tool_call=SimToolCallDelta(index, call.id, call.name)))
        deltas.extend(
            SimDelta(tool_call=SimToolCallDelta(index, arguments=p))
            for p in _pieces(call.arguments, ARGUMENT_PIECE_CHARS)
        )
    deltas.append(SimDelta(finish_reason=reply.finish_reason))
    return deltas
