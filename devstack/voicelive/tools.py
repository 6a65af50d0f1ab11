"""The simulated model's tool decisions: which declared tools to call, and schema-valid arguments for them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .options import ToolRule, ToolRuleMode

__all__ = ["arguments_for", "choose_tools"]

JSON = dict[str, Any]
_MAX_DEPTH = 6


def _sample(schema: Any, name: str, depth: int) -> Any:
    """A deterministic value of the schema's type (const/enum/default/examples first)."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return f"example {name}"
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _sample(schema[key][0], name, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _by_type(kind, schema, name, depth)


def _by_type(kind: str, schema: Mapping[str, Any], name: str, depth: int) -> Any:
    if kind == "object":
        return _object(schema, depth)
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [_sample(schema.get("items", {}), name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _string(schema: Mapping[str, Any], name: str) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return "2026-01-01"
    if fmt == "date-time":
        return "2026-01-01T12:00:00Z"
    if fmt == "email":
        return "caller@example.com"
    text = f"example {name}"
    min_len = int(schema.get("minLength", 0))
    max_len = int(schema.get("maxLength", max(len(text), min_len)))
    return (text + "x" * max(0, min_len - len(text)))[:max_len]


def _object(schema: Mapping[str, Any], depth: int) -> JSON:
    props = schema.get("properties") or {}
    required = schema.get("required") or []
    return {key: _sample(props.get(key, {}), key, depth + 1) for key in required}


def arguments_for(tool: Mapping[str, Any]) -> JSON:
    """Arguments with every required property of the tool's `parameters` schema, each of a valid type."""
    params = tool.get("parameters") or {}
    return _object(params, 0) if isinstance(params, Mapping) else {}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _keyword_hit(rule: ToolRule, tool: Mapping[str, Any], words: set[str]) -> bool:
    name = str(tool.get("name", ""))
    keywords = rule.keywords.get(name) or tuple(w for w in _words(name.replace("_", " ")) if len(w) > 2)
    return any(k.lower() in words for k in keywords)


def choose_tools(
    rule: ToolRule,
    *,
    tools: Sequence[Mapping[str, Any]],
    tool_choice: Any,
    parallel_allowed: bool,
    user_turn: int,
    user_text: str,
) -> list[Mapping[str, Any]]:
    """The function tools this response calls (empty list: answer with a message).

    `user_turn` is the 1-based index of the user turn being answered; `user_text` its text or transcript.
    """
    functions = [t for t in tools if t.get("type", "function") == "function"]
    if not functions or tool_choice == "none":
        return []
    limit = rule.parallel_calls if parallel_allowed else 1
    if isinstance(tool_choice, Mapping):
        return [t for t in functions if t.get("name") == tool_choice.get("name")][:1]
    if tool_choice == "required":
        return functions[:limit]
    if rule.mode is ToolRuleMode.NEVER:
        return []
    if rule.mode is ToolRuleMode.FIRST_TURN:
        return functions[:limit] if user_turn == 1 else []
    if rule.mode is ToolRuleMode.EVERY_TURN:
        return functions[:limit]
    words = _words(user_text)
    return [t for t in functions if _keyword_hit(rule, t, words)][:limit]
