"""Tools the model may call: registry (built-ins + entry points), schema-checked runs, replay fixtures.

A `Tool` is a name, a description, a JSON-schema for its arguments, an async callable and a timeout.
Third-party packages register tools under the entry-point group `voicelive_worker.tools`; each entry point
loads a `Tool` (or a zero-argument callable returning one). Execution never raises for the model's
mistakes: bad arguments, timeouts and tool exceptions become error results sent back to the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Literal

import jsonschema

from worker.errors import InvalidJob
from worker.jobs import ToolFixture

__all__ = [
    "BUILTIN_TOOLS",
    "ENTRY_POINT_GROUP",
    "Tool",
    "ToolOutcome",
    "ToolRegistry",
    "ToolRunner",
]

_log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "voicelive_worker.tools"
ToolFn = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class Tool:
    """A callable the model may invoke. `fn` gets the validated arguments and returns a JSON-able result.
    `timeout_s` None means the runner's default."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: ToolFn
    timeout_s: float | None = None

    def schema(self) -> dict[str, Any]:
        """The `session.update` tool entry."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


@dataclass(frozen=True, kw_only=True)
class ToolOutcome:
    result: Any = None
    error: str | None = None
    source: Literal["executed", "fixture"] = "executed"
    duration_ms: float = 0.0

    def output(self) -> str:
        """The `function_call_output.output` string sent back to the model."""
        if self.error is not None:
            return json.dumps({"error": self.error}, ensure_ascii=False)
        return json.dumps(self.result, ensure_ascii=False, default=str)


# --- built-in demo tools (deterministic, offline) -----------------------------------------------------


def _stable(text: str, modulo: int) -> int:
    return int.from_bytes(hashlib.sha256(text.lower().encode()).digest()[:4], "big") % modulo


async def _get_weather(args: dict[str, Any]) -> dict[str, Any]:
    city, date = args["city"], args.get("date", "today")
    conditions = ["sunny", "cloudy", "rainy", "windy", "foggy"]
    return {
        "city": city,
        "date": date,
        "condition": conditions[_stable(city + date, len(conditions))],
        "temperature_c": 5 + _stable(city, 20),
    }


async def _book_table(args: dict[str, Any]) -> dict[str, Any]:
    ref = hashlib.sha256(f"{args['party_size']}|{args['time']}".encode()).hexdigest()[:8].upper()
    return {"confirmed": True, "party_size": args["party_size"], "time": args["time"], "reference": ref}


async def _get_time(args: dict[str, Any]) -> dict[str, Any]:
    return {"utc": datetime.now(UTC).isoformat(timespec="seconds")}


BUILTIN_TOOLS: tuple[Tool, ...] = (
    Tool(
        name="get_weather",
        description="Get the weather forecast for a city, today or on a given date.",
        parameters={
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "date": {"type": "string", "description": "e.g. 'tomorrow' or 2026-05-01"},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        fn=_get_weather,
    ),
    Tool(
        name="book_table",
        description="Book a restaurant table for a party at a time.",
        parameters={
            "type": "object",
            "properties": {
                "party_size": {"type": "integer", "minimum": 1, "maximum": 20},
                "time": {"type": "string", "minLength": 1, "description": "e.g. '19:00' or '7 pm'"},
            },
            "required": ["party_size", "time"],
            "additionalProperties": False,
        },
        fn=_book_table,
    ),
    Tool(
        name="get_time",
        description="Get the current UTC time.",
        parameters={"type": "object", "properties": {}, "additionalProperties": False},
        fn=_get_time,
    ),
)


class ToolRegistry:
    """Tools by name. `ToolRegistry.default()` = built-ins + entry points (an entry point may override a
    built-in of the same name; a broken entry point is logged and skipped, not fatal)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    @classmethod
    def default(cls) -> ToolRegistry:
        registry = cls(BUILTIN_TOOLS)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
                tool = loaded if isinstance(loaded, Tool) else loaded()
            except Exception:
                _log.exception("tool entry point %s failed to load; skipped", ep.name)
                continue
            if not isinstance(tool, Tool):
                _log.error("tool entry point %s gave %s, not a Tool; skipped", ep.name, type(tool).__name__)
                continue
            registry.add(tool)
        return registry

    def add(self, tool: Tool) -> None:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def resolve(self, names: Sequence[str]) -> list[Tool]:
        """The job's tools, in the job's order; `InvalidJob` naming every unknown one."""
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise InvalidJob(f"unknown tool(s) {unknown}; registered: {self.names}")
        return [self._tools[n] for n in names]


@dataclass(kw_only=True)
class ToolRunner:
    """Runs the session's tools for one job: replay fixtures first, else the tool itself (validated,
    under its timeout). Never raises for a tool's failure; the outcome carries the error."""

    tools: Sequence[Tool]
    fixtures: Sequence[ToolFixture] = ()
    default_timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _used: set[int] = field(default_factory=set)

    def _fixture(self, name: str, args: Any) -> ToolFixture | None:
        for i, fx in enumerate(self.fixtures):
            if i in self._used or fx.tool != name:
                continue
            if fx.arguments is not None and fx.arguments != args:
                continue
            self._used.add(i)
            return fx
        return None

    async def run(self, name: str, arguments: str) -> ToolOutcome:
        start = self.clock()
        outcome = await self._run(name, arguments)
        duration_ms = (self.clock() - start) * 1000.0
        return ToolOutcome(
            result=outcome.result, error=outcome.error, source=outcome.source, duration_ms=duration_ms
        )

    async def _run(self, name: str, arguments: str) -> ToolOutcome:
        try:
            args: Any = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return ToolOutcome(error=f"arguments are not valid JSON: {exc}")
        fixture = self._fixture(name, args)
        if fixture is not None:
            return ToolOutcome(result=fixture.result, error=fixture.error, source="fixture")
        tool = next((t for t in self.tools if t.name == name), None)
        if tool is None:
            return ToolOutcome(error=f"unknown tool {name!r}")
        try:
            jsonschema.validate(args, tool.parameters, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            return ToolOutcome(error=f"invalid arguments ({where}): {exc.message}")
        timeout_s = tool.timeout_s if tool.timeout_s is not None else self.default_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                result = await tool.fn(args)
        except TimeoutError:
            return ToolOutcome(error=f"tool {name} timed out after {timeout_s:g} s")
        except Exception as exc:
            _log.warning("tool %s raised %s", name, type(exc).__name__)
            return ToolOutcome(error=f"tool {name} failed: {type(exc).__name__}: {exc}")
        return ToolOutcome(result=result)
