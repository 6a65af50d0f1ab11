"""Simulator settings: operating mode, response cadence and the tool-call rule (frozen value objects)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

__all__ = ["Mode", "ResponseTiming", "ToolRule", "ToolRuleMode"]


class Mode(enum.Enum):
    """How much work the simulator does per connection."""

    NORMAL = "normal"
    """Full protocol; responses stream at the cadence of `ResponseTiming`."""
    ZERO_LATENCY = "zero_latency"
    """Full protocol; every response is sent at once, before the next client event is read."""
    SINK = "sink"
    """Only timestamps appends and answers `session.update`; cheap enough for hundreds of sessions."""


@dataclass(frozen=True, kw_only=True)
class ResponseTiming:
    """Cadence of generated responses in `Mode.NORMAL` (ignored in the other modes).

    `first_output_delay_ms`: `response.created` to `response.output_item.added` (real traffic: 150-300 ms).
    `audio_chunk_ms`: audio per `response.audio.delta`. `pace`: audio generation speed relative to real time
    (2.0 = one second of audio every 500 ms; `math.inf` = no delay between deltas).
    `reply_audio_ms`: length of the synthesized reply audio.
    """

    first_output_delay_ms: float = 200.0
    audio_chunk_ms: int = 100
    pace: float = 2.0
    reply_audio_ms: int = 1200

    def __post_init__(self) -> None:
        if self.audio_chunk_ms <= 0 or self.reply_audio_ms <= 0:
            raise ValueError("audio_chunk_ms and reply_audio_ms must be positive")
        if self.pace <= 0 or self.first_output_delay_ms < 0:
            raise ValueError("pace must be positive and first_output_delay_ms >= 0")

    @property
    def chunk_delay_s(self) -> float:
        """Seconds between two audio deltas."""
        return 0.0 if math.isinf(self.pace) else self.audio_chunk_ms / 1000.0 / self.pace


class ToolRuleMode(enum.Enum):
    """When a response becomes a function call (only if the session or response declares tools)."""

    FIRST_TURN = "first_turn"
    """Call on the first user turn of the session, never again (good for placeholder transcripts)."""
    EVERY_TURN = "every_turn"
    """Call on every user turn (the answer after a tool output is still a message)."""
    KEYWORD = "keyword"
    """Call the tools whose keywords (default: the words of the tool name) occur in the user's text."""
    NEVER = "never"


@dataclass(frozen=True, kw_only=True)
class ToolRule:
    """Deterministic stand-in for the model's decision to call tools.

    `parallel_calls`: how many declared tools (in declaration order) one response calls when the session
    allows parallel tool calls (`parallel_tool_calls` not false); otherwise one.
    `keywords`: tool name -> words that trigger it in `ToolRuleMode.KEYWORD`.
    `tool_choice` "required" or a named function in the session forces a call whatever the mode;
    "none" forbids it.
    """

    mode: ToolRuleMode = ToolRuleMode.FIRST_TURN
    parallel_calls: int = 1
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parallel_calls < 1:
            raise ValueError("parallel_calls must be >= 1")
