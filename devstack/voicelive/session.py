"""The session object: defaults sent in `session.created`, and `session.update` merge + validation (§3.2)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from .audio import INPUT_FORMATS, OUTPUT_FORMATS

__all__ = ["SessionError", "default_session", "merge_session", "reported_model"]

JSON = dict[str, Any]

_DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. (devstack simulator)"
)
_OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
_VOICE_TYPES = ("openai", "azure-standard", "azure-custom", "azure-personal", "azure-realtime-native")
_TURN_TYPES = (
    "server_vad",
    "semantic_vad",
    "azure_semantic_vad",
    "azure_semantic_vad_en",
    "azure_semantic_vad_multilingual",
)
_MODALITIES = ("audio", "text", "animation", "avatar")
_RATES = (8000, 16000, 24000)
_TOOL_CHOICES = ("auto", "none", "required")


class SessionError(ValueError):
    """An invalid `session.update`: carries the `param` path and the error `code` for the `error` event."""

    def __init__(self, message: str, *, param: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def reported_model(model: str | None) -> str | None:
    """The service reports the gpt-realtime family by deployment name (`<model>-global-standard`)."""
    if model and model.startswith("gpt-realtime"):
        return model + "-global-standard"
    return model


def _server_vad(**over: Any) -> JSON:
    td: JSON = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 400,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
        "idle_timeout_ms": None,
        "speech_duration_ms": None,
        "auto_truncate": False,
        "appended_text_after_truncation": None,
    }
    td.update(over)
    return td


def default_session(
    *, session_id: str, model: str | None, ttl_s: int, wall: Callable[[], float] = time.time
) -> JSON:
    """The full session of `session.created` (2026-09 recordings: VAD 0.5/300/200 at creation)."""
    return {
        "id": session_id,
        "model": reported_model(model),
        "modalities": ["audio"],
        "instructions": _DEFAULT_INSTRUCTIONS,
        "voice": {"name": "alloy", "type": "openai"},
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": None,
        "input_audio_noise_reduction": None,
        "turn_detection": _server_vad(prefix_padding_ms=300, silence_duration_ms=200),
        "tools": [],
        "tool_choice": "auto",
        "max_response_output_tokens": "inf",
        "expires_at": int(wall()) + ttl_s,
        "object": "realtime.session",
        "input_audio_sampling_rate": 24000,
        "animation": None,
        "input_audio_echo_cancellation": None,
        "avatar": None,
        "output_audio_timestamp_types": None,
        "truncation_strategy": None,
        "include": None,
        "greeting": None,
        "handoff": None,
    }


def _turn_detection(value: Any) -> JSON | None:
    """Fill omitted parameters with the type's defaults; an update replaces the whole object (cassette)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("type", "server_vad") not in _TURN_TYPES:
        raise SessionError("Invalid turn_detection type", param="session.turn_detection.type")
    given = {k: v for k, v in value.items() if v is not None}
    kind = given.get("type", "server_vad")
    threshold = given.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise SessionError("threshold must be between 0 and 1", param="session.turn_detection.threshold")
    if kind == "server_vad":
        return _server_vad(**given)
    if kind == "semantic_vad":
        # OpenAI semantic VAD echoes only these keys (trace test_openai_audio_settings_apply_on_voice_live).
        base: JSON = {"type": kind, "eagerness": "auto", "create_response": True, "interrupt_response": True}
        base["auto_truncate"] = False
        return base | given
    azure: JSON = _server_vad(prefix_padding_ms=420, speech_duration_ms=80) | {
        "type": kind,
        "remove_filler_words": False,
        "end_of_utterance_detection": None,
    }
    return azure | given


def _voice(value: Any) -> JSON:
    if isinstance(value, str):
        if value not in _OPENAI_VOICES:
            raise SessionError(f"Unknown voice {value!r}", param="session.voice")
        return {"name": value, "type": "openai"}
    if (
        isinstance(value, Mapping)
        and value.get("type") in _VOICE_TYPES
        and isinstance(value.get("name"), str)
    ):
        if value["type"] == "openai" and value["name"] not in _OPENAI_VOICES:
            raise SessionError(f"Unknown voice {value['name']!r}", param="session.voice.name")
        return dict(value)
    raise SessionError("Invalid voice", param="session.voice")


def _transcription(value: Any) -> JSON | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("model"), str):
        raise SessionError(
            "input_audio_transcription.model is required", param="session.input_audio_transcription"
        )
    base: JSON = {"model": None, "language": None, "prompt": None, "delay": None, "custom_speech": None}
    return base | {"phrase_list": None} | dict(value)


def _tools(value: Any) -> list[JSON]:
    if not isinstance(value, list):
        raise SessionError("tools must be a list", param="session.tools")
    out: list[JSON] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise SessionError("Each tool needs a name", param=f"session.tools[{i}].name")
        if tool.get("type", "function") != "function":
            out.append(dict(tool))  # MCP and other tool types are echoed but never called
            continue
        out.append(
            {"name": tool["name"], "description": tool.get("description"), "type": "function"} | dict(tool)
        )
    return out


def _check_choice(field: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        raise SessionError(f"Invalid value for {field}: {value!r}", param=f"session.{field}")
    return value


def _modalities(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or any(m not in _MODALITIES for m in value):
        raise SessionError("Invalid modalities", param="session.modalities")
    return sorted(
        set(value), key=_MODALITIES.index
    )  # the service echoes ["audio","text"] for ["text","audio"]


def _tool_choice(value: Any) -> Any:
    if value in _TOOL_CHOICES:
        return value
    if isinstance(value, Mapping) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return dict(value)
    raise SessionError("Invalid tool_choice", param="session.tool_choice")


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "voice": _voice,
    "turn_detection": _turn_detection,
    "input_audio_transcription": _transcription,
    "tools": _tools,
    "modalities": _modalities,
    "tool_choice": _tool_choice,
    "input_audio_format": lambda v: _check_choice("input_audio_format", v, INPUT_FORMATS),
    "output_audio_format": lambda v: _check_choice("output_audio_format", v, OUTPUT_FORMATS),
    "input_audio_sampling_rate": lambda v: _check_choice("input_audio_sampling_rate", v, _RATES),
}
_FROZEN_AFTER_AUDIO = ("input_audio_format", "input_audio_sampling_rate")


def merge_session(current: JSON, update: Any, *, audio_started: bool) -> JSON:
    """A new effective session, or `SessionError` (and the current session stays as it was).

    Unknown keys are kept and echoed (the service echoes fields it knows; we cannot tell which those are).
    `model` is ignored (it cannot change after the handshake); an empty `instructions` keeps the current one
    (trace test_message_history_seeding). Input format/rate cannot change once audio has been appended.
    """
    if not isinstance(update, Mapping):
        raise SessionError("session must be an object", param="session")
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key in ("model", "id", "object", "expires_at") or (key == "instructions" and value == ""):
            continue
        if key in _FROZEN_AFTER_AUDIO and audio_started and value != current.get(key):
            raise SessionError(f"{key} cannot change after audio was appended", param=f"session.{key}")
        check = _FIELDS.get(key)
        merged[key] = check(value) if check is not None else copy.deepcopy(value)
    return merged
