"""Tool-call arguments the simulated model makes up, deterministically, from the prompt.

Every `required` property of the tool's JSON schema is filled: integers and numbers from the
numbers in the prompt, in order, else 1; strings from the double-quoted texts in the prompt, in
order, else "x"; booleans true; an `enum` gives its first value. So a test can steer the arguments
by what it writes in the prompt, and the arguments always validate against a simple schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED_RE = re.compile(r'"([^"]*)"')


class _PromptValues:
    """The numbers and quoted strings of a prompt, handed out in order."""

    def __init__(self, prompt: str) -> None:
        self._numbers: Iterator[str] = iter(_NUMBER_RE.findall(prompt))
        self._strings: Iterator[str] = iter(_QUOTED_RE.findall(prompt))

    def integer(self) -> int:
        number = next(self._numbers, None)
        return int(float(number)) if number is not None else 1

    def number(self) -> int | float:
        number = next(self._numbers, None)
        if number is None:
            return 1
        return float(number) if "." in number else int(number)

    def string(self) -> str:
        return next(self._strings, "x")


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        # `["string", "null"]`: the first non-null type is the one worth filling.
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _value(schema: Mapping[str, Any], values: _PromptValues) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    match _schema_type(schema):
        case "integer":
            return values.integer()
        case "number":
            return values.number()
        case "boolean":
            return True
        case "array":
            return []
        case "object":
            return _object(schema, values)
        case "null":
            return None
        case _:
            return values.string()


def _object(schema: Mapping[str, Any], values: _PromptValues) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    if not isinstance(required, list):
        return {}
    filled: dict[str, Any] = {}
    for name in required:
        if isinstance(name, str):
            prop = properties.get(name)
            filled[name] = _value(prop if isinstance(prop, Mapping) else {}, values)
    return filled


def tool_arguments(parameters: Mapping[str, Any] | None, prompt: str) -> str:
    """The JSON arguments for a call to a tool with schema `parameters`, steered by `prompt`."""
    arguments = _object(parameters or {}, _PromptValues(prompt))
    return orjson.dumps(arguments).decode()
