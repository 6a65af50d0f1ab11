"""Tool registry, schema-checked execution, timeouts and replay fixtures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from worker.errors import InvalidJob
from worker.jobs import ToolFixture
from worker.voice.tools import BUILTIN_TOOLS, Tool, ToolRegistry, ToolRunner


def test_resolve_keeps_job_order_and_rejects_unknown_names() -> None:
    registry = ToolRegistry.default()
    assert [t.name for t in registry.resolve(["book_table", "get_weather"])] == ["book_table", "get_weather"]
    with pytest.raises(InvalidJob, match="nope"):
        registry.resolve(["get_weather", "nope"])


async def test_valid_call_runs_the_tool() -> None:
    outcome = await ToolRunner(tools=BUILTIN_TOOLS).run("book_table", '{"party_size": 2, "time": "19:00"}')
    assert outcome.error is None and outcome.result["confirmed"] is True
    assert json.loads(outcome.output())["party_size"] == 2


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"party_size": 0, "time": "7"}', "party_size"),
        ('{"time": "7"}', "required"),
    ],
)
async def test_bad_arguments_become_an_error_result(arguments: str, fragment: str) -> None:
    outcome = await ToolRunner(tools=BUILTIN_TOOLS).run("book_table", arguments)
    assert outcome.error is not None and fragment in outcome.error
    assert "error" in json.loads(outcome.output())


async def test_timeout_and_exception_become_error_results() -> None:
    async def hang(args: dict[str, Any]) -> Any:
        await asyncio.Event().wait()

    async def boom(args: dict[str, Any]) -> Any:
        raise RuntimeError("kaput")

    schema: dict[str, Any] = {"type": "object"}
    tools = [
        Tool(name="hang", description="", parameters=schema, fn=hang, timeout_s=0.01),
        Tool(name="boom", description="", parameters=schema, fn=boom),
    ]
    runner = ToolRunner(tools=tools)
    assert "timed out" in ((await runner.run("hang", "{}")).error or "")
    assert "kaput" in ((await runner.run("boom", "{}")).error or "")
    assert "unknown tool" in ((await runner.run("missing", "{}")).error or "")


async def test_fixtures_match_name_and_arguments_once_each() -> None:
    fixtures = [
        ToolFixture(tool="get_weather", arguments={"city": "Oslo"}, result="oslo"),
        ToolFixture(tool="get_weather", result="any"),
        ToolFixture(tool="get_weather", error="down"),
    ]
    runner = ToolRunner(tools=BUILTIN_TOOLS, fixtures=fixtures)
    first = await runner.run("get_weather", '{"city": "Paris"}')
    second = await runner.run("get_weather", '{"city": "Oslo"}')
    third = await runner.run("get_weather", '{"city": "Oslo"}')
    fourth = await runner.run("get_weather", '{"city": "Oslo"}')
    assert (first.result, first.source) == ("any", "fixture")
    assert second.result == "oslo"
    assert third.error == "down"
    assert fourth.source == "executed"


def test_schemas_are_session_update_entries() -> None:
    entry = BUILTIN_TOOLS[0].schema()
    assert entry["type"] == "function" and entry["parameters"]["required"] == ["city"]
