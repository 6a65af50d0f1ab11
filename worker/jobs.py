"""Job contract v1 (the queue message body) and Manifest v1 (the commit point of a job's outputs).

Both are strict pydantic models: unknown keys are rejected, never dropped, so a sender's typo fails loudly
as `InvalidJob` instead of silently running a different job. `parse_job` is the only way a message body
becomes a `Job`; it classifies every failure (`InvalidMessage`, `InvalidJob`, `InputForbidden`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.blobs import BlobPolicy, BlobRef
from worker.errors import InvalidJob, InvalidMessage

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ArtifactEntry",
    "ConversationItem",
    "InputRef",
    "Job",
    "Manifest",
    "OutputRef",
    "OutputsSpec",
    "ParsedJob",
    "SessionSpec",
    "StreamingSpec",
    "ToolFixture",
    "TurnDetection",
    "parse_job",
    "read_job_file",
]

MAX_MESSAGE_BYTES = 256 * 1024
MAX_INSTRUCTIONS_CHARS = 64 * 1024
MAX_TOOLS = 64
MAX_METADATA_PAIRS = 32
MAX_CONVERSATION_ITEMS = 100
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ShortText = Annotated[str, StringConstraints(max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class InputRef(_Strict):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class OutputRef(_Strict):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class TurnDetection(_Strict):
    """Server turn detection. `null` in the job (not this object) selects manual turns."""

    type: Literal[
        "server_vad", "azure_semantic_vad", "azure_semantic_vad_en", "azure_semantic_vad_multilingual"
    ] = "server_vad"
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    prefix_padding_ms: Annotated[int, Field(ge=0, le=5000)] | None = None
    silence_duration_ms: Annotated[int, Field(ge=0, le=10000)] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class InputTranscription(_Strict):
    model: ShortText = "azure-speech"
    language: ShortText | None = None


class AzureVoice(_Strict):
    type: Literal["azure-standard", "azure-custom", "openai"]
    name: ShortText
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    endpoint_id: ShortText | None = None


class SessionSpec(_Strict):
    """The validated subset of Voice Live `RequestSession` a job may set."""

    model: ShortText | None = None
    instructions: Annotated[str, StringConstraints(max_length=MAX_INSTRUCTIONS_CHARS)] | None = None
    voice: ShortText | AzureVoice | None = None
    modalities: list[Literal["text", "audio"]] | None = Field(default=None, min_length=1, max_length=2)
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)
    input_audio_transcription: InputTranscription | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    max_response_output_tokens: Annotated[int, Field(ge=1, le=100_000)] | Literal["inf"] | None = None
    tool_choice: Literal["auto", "none", "required"] | None = None

    @property
    def manual_turns(self) -> bool:
        return self.turn_detection is None


class ConversationItem(_Strict):
    role: Literal["system", "user", "assistant"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_INSTRUCTIONS_CHARS)]


class StreamingSpec(_Strict):
    """How the input is put on the wire. `pace` 1.0 = real time, >1 faster, 0 = unpaced."""

    pace: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0
    frame_ms: Literal[10, 20, 40, 60, 100] = 20
    sample_rate: Literal[24000, 16000, 8000] = 24000
    audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] = "pcm16"
    channel: Literal["mix"] | Annotated[int, Field(ge=0, le=7)] = "mix"
    trailing_silence_ms: Annotated[int, Field(ge=0, le=30_000)] = 2000
    response_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = 30.0

    @model_validator(mode="after")
    def _g711_is_8k(self) -> StreamingSpec:
        if self.audio_format != "pcm16" and self.sample_rate != 8000:
            raise ValueError(f"{self.audio_format} input requires sample_rate 8000")
        return self


class OutputsSpec(_Strict):
    response_audio: bool = True
    conversation_audio: bool = True
    events: bool = False
    report: bool = True


class ToolFixture(_Strict):
    """A pinned tool result for replay runs: the first unused fixture matching name (and arguments) wins."""

    tool: ToolName
    arguments: dict[str, Any] | None = None
    result: Any = None
    error: Annotated[str, StringConstraints(max_length=4096)] | None = None


class Job(_Strict):
    version: Literal[1]
    job_id: JobId
    input: InputRef
    output: OutputRef | None = None
    session: SessionSpec = Field(default_factory=SessionSpec)
    conversation: list[ConversationItem] = Field(default_factory=list, max_length=MAX_CONVERSATION_ITEMS)
    tools: list[ToolName] = Field(default_factory=list, max_length=MAX_TOOLS)
    tool_fixtures: list[ToolFixture] = Field(default_factory=list, max_length=256)
    streaming: StreamingSpec = Field(default_factory=StreamingSpec)
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)
    metadata: dict[ShortText, ShortText] = Field(default_factory=dict, max_length=MAX_METADATA_PAIRS)

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[str]) -> list[str]:
        if len(set(tools)) != len(tools):
            raise ValueError("tool names must be unique")
        return tools


class ParsedJob(BaseModel):
    """A job whose URLs passed the blob policy: where to read and where to write."""

    model_config = ConfigDict(frozen=True)

    job: Job
    input: BlobRef
    output: BlobRef


def read_job_file(path: Path) -> dict[str, Any]:
    """A job template from a local JSON file (for `process --job` / `enqueue --job`); `InvalidMessage`
    when it cannot be read or is not a JSON object. The caller completes and validates it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidMessage(f"cannot read job file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"job file {path} must hold a JSON object")
    return data


def parse_job(body: bytes | str, *, policy: BlobPolicy) -> ParsedJob:
    """Message body → validated job with resolved blob references. Raises only classified errors."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message body is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"message body is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"message body must be a JSON object, got {type(data).__name__}")
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        raise InvalidJob(_describe(exc)) from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise InvalidJob(f"job does not validate: {exc}") from None
    input_ref = policy.check_input(job.input.url)
    output_ref = policy.check_output(job.output.url) if job.output else policy.default_output(job.job_id)
    return ParsedJob(job=job, input=input_ref, output=output_ref)


def _describe(exc: ValidationError) -> str:
    """The first few validation errors as `loc: message`, without echoing (possibly huge) input values."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<body>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


# --- Manifest v1 -----------------------------------------------------------------------------------


class ArtifactEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    size: int
    sha256: str
    content_type: str


class InputInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    etag: str | None = None
    size: int | None = None
    container: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    declared_duration_s: float | None = None


class SessionInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    model: str | None = None
    voice: str | None = None


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rtf: float | None = None
    pacing_lag_p50_ms: float | None = None
    pacing_lag_p99_ms: float | None = None
    pacing_lag_max_ms: float | None = None
    end_drift_ms: float | None = None
    audio_streamed_s: float | None = None
    user_turns: int = 0
    responses: int = 0
    tool_calls: int = 0
    first_response_latency_ms: float | None = None


class Timings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    started_at: datetime
    finished_at: datetime
    connect_ms: float | None = None
    stream_s: float | None = None
    total_s: float


class Manifest(BaseModel):
    """`manifest.json`, written last. Readers trust outputs only when `status == "succeeded"`."""

    model_config = ConfigDict(extra="forbid")

    manifest_version: Literal[1] = 1
    job_id: str
    status: Literal["succeeded", "failed"]
    reason: str | None = None
    error: str | None = None
    attempt: int = 1
    timings: Timings
    input: InputInfo
    session: SessionInfo = Field(default_factory=SessionInfo)
    metrics: Metrics = Field(default_factory=Metrics)
    usage: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    artifacts: list[ArtifactEntry] = Field(default_factory=list)
    trace_id: str | None = None
    worker_version: str
    metadata: dict[str, str] = Field(default_factory=dict)


def schema_for(kind: Literal["job", "manifest"]) -> dict[str, Any]:
    """The published JSON Schema (schemas/*.v1.schema.json is generated from this)."""
    model: type[BaseModel] = Job if kind == "job" else Manifest
    schema = model.model_json_schema(mode="validation" if kind == "job" else "serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://github.com/voicelive-batch-worker/schemas/{kind}.v1.schema.json"
    return schema
