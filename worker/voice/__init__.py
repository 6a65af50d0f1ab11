"""Voice Live sessions: the connector port and SDK adapter, the session runner, tools and the timeline."""

from worker.voice.connection import SdkVoiceConnector
from worker.voice.ports import FakeVoiceConnector, VoiceConnection, VoiceConnector
from worker.voice.session import SessionOptions, SessionResult, run_session
from worker.voice.timeline import Timeline, to_vtt, tool_calls_jsonl
from worker.voice.tools import Tool, ToolRegistry

__all__ = [
    "FakeVoiceConnector",
    "SdkVoiceConnector",
    "SessionOptions",
    "SessionResult",
    "Timeline",
    "Tool",
    "ToolRegistry",
    "VoiceConnection",
    "VoiceConnector",
    "run_session",
    "to_vtt",
    "tool_calls_jsonl",
]
