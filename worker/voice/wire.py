"""Client events built from a job, and the classification of the server's `error` events.

`classify_error_event` is the single place that decides what an `error` event means for the job:

| error                                                        | outcome                          |
|--------------------------------------------------------------|----------------------------------|
| type/code mentions `rate_limit`                              | `Throttled` (back off)           |
| benign realtime codes (`BENIGN_ERROR_CODES`)                 | warning only, session continues  |
| `session_expired` (the service's 60-min cap; ours rolls over | `Transient` (retry the job)      |
|   before it, so this is always unexpected)                   |                                  |
| `invalid_request_error` answering the job's configuration   | `VoiceLiveRejected` (permanent)  |
|   (before `session.updated`, or `event_id` of session.update |                                  |
|   or a seeded conversation item)                             |                                  |
| anything else (server_error, unknown)                        | `Transient` (retry the job)      |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.audio.formats import AudioFormat
from worker.errors import Throttled, Transient, VoiceLiveRejected, WorkerError
from worker.jobs import AzureVoice, ConversationItem, SessionSpec
from worker.voice.tools import Tool

__all__ = [
    "BENIGN_ERROR_CODES",
    "CONFIG_EVENT_PREFIX",
    "HISTORY_EVENT_PREFIX",
    "classify_error_event",
    "function_output_event",
    "seed_events",
    "session_update_event",
    "voice_payload",
]

#: Client `event_id`s we give to events derived from the job's configuration; an error echoing one of
#: them is the service rejecting the job, not a hiccup.
CONFIG_EVENT_PREFIX = "vlw_config_"

#: Client `event_id` prefix of the conversation re-seeded into a rolled-over session (see rollover.py).
HISTORY_EVENT_PREFIX = "vlw_history_"

#: Errors that leave the session healthy (research/voicelive.md §6.14); recorded as warnings.
BENIGN_ERROR_CODES = frozenset(
    {
        "conversation_already_has_active_response",
        "input_audio_buffer_commit_empty",
        "response_cancel_not_active",
    }
)

_OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)


def voice_payload(voice: str | AzureVoice | None) -> Any:
    """A job voice → the session's `voice`: OpenAI names and Azure neural names get their typed object."""
    if voice is None:
        return None
    if isinstance(voice, AzureVoice):
        return voice.model_dump(exclude_none=True)
    if voice in _OPENAI_VOICES:
        return {"type": "openai", "name": voice}
    if voice.endswith("Neural") or ":" in voice:
        return {"type": "azure-standard", "name": voice}
    return voice


def session_update_event(
    spec: SessionSpec, *, audio_format: AudioFormat, tools: Sequence[Tool]
) -> dict[str, Any]:
    """`session.update` for the job: wire formats from `audio_format`, output pcm16 24 kHz, the rest
    from the job (unset fields are left to the service's defaults)."""
    session: dict[str, Any] = {
        "modalities": list(spec.modalities) if spec.modalities else ["text", "audio"],
        "input_audio_format": audio_format.encoding,
        "input_audio_sampling_rate": audio_format.sample_rate,
        "output_audio_format": "pcm16",
        "turn_detection": (
            spec.turn_detection.model_dump(exclude_none=True) if spec.turn_detection is not None else None
        ),
    }
    if spec.instructions is not None:
        session["instructions"] = spec.instructions
    if spec.voice is not None:
        session["voice"] = voice_payload(spec.voice)
    if spec.input_audio_transcription is not None:
        session["input_audio_transcription"] = spec.input_audio_transcription.model_dump(exclude_none=True)
    if spec.temperature is not None:
        session["temperature"] = spec.temperature
    if spec.max_response_output_tokens is not None:
        session["max_response_output_tokens"] = spec.max_response_output_tokens
    if tools:
        session["tools"] = [t.schema() for t in tools]
    if spec.tool_choice is not None:
        session["tool_choice"] = spec.tool_choice
    return {"type": "session.update", "event_id": f"{CONFIG_EVENT_PREFIX}session", "session": session}


def seed_events(
    items: Sequence[ConversationItem], *, id_prefix: str = f"{CONFIG_EVENT_PREFIX}seed_"
) -> list[dict[str, Any]]:
    """`conversation.item.create` per seeded item (assistant text as `output_text`, others `input_text`).

    `id_prefix` starts each `event_id`: the job's own seed items carry `CONFIG_EVENT_PREFIX` (an error
    about them rejects the job); a rolled-over session's re-seeded history carries `HISTORY_EVENT_PREFIX`."""
    events = []
    for n, item in enumerate(items):
        part = "output_text" if item.role == "assistant" else "input_text"
        events.append(
            {
                "type": "conversation.item.create",
                "event_id": f"{id_prefix}{n}",
                "item": {
                    "type": "message",
                    "role": item.role,
                    "content": [{"type": part, "text": item.text}],
                },
            }
        )
    return events


def function_output_event(call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def classify_error_event(error: Mapping[str, Any], *, configuring: bool) -> WorkerError | None:
    """An `error` event's `error` object → the failure it means, or None when it is benign.

    `configuring` is True until `session.updated` arrived (an invalid request then rejects the config).
    """
    etype = str(error.get("type") or "")
    code = str(error.get("code") or "")
    message = str(error.get("message") or "")[:300]
    label = f"{etype}/{code}" if code else etype or "error"
    if "rate_limit" in etype or "rate_limit" in code:
        return Throttled(f"Voice Live rate limit ({label}): {message}")
    if code in BENIGN_ERROR_CODES:
        return None
    if code == "session_expired":
        return Transient(f"Voice Live session expired ({label}): {message}")
    about_config = str(error.get("event_id") or "").startswith(CONFIG_EVENT_PREFIX)
    if etype == "invalid_request_error" and (configuring or about_config):
        param = f" (param {error['param']})" if error.get("param") else ""
        return VoiceLiveRejected(f"Voice Live rejected the session configuration{param}: {message}")
    return Transient(f"Voice Live error {label}: {message}")
