"""The error taxonomy that settlement keys on.

    WorkerError
    ├── Permanent(reason, detail)        → failed manifest + dead-letter with the reason
    │   ├── InvalidMessage               body is not a JSON object / not UTF-8 / too large
    │   ├── InvalidJob                   JSON that breaks the Job v1 contract (unknown key, bad job_id, ...)
    │   ├── InputNotFound                the input blob or file does not exist
    │   ├── InputForbidden               URL outside the allow-list, hostile URL, access denied
    │   ├── InputTooLarge                input bigger than MAX_INPUT_BYTES
    │   ├── UnsupportedAudio             undecodable, empty or absurd audio
    │   └── VoiceLiveRejected            the service refused the session configuration
    ├── Transient(detail, retry_after_s) → nothing committed; scheduled retry, RetriesExhausted at the cap
    │   └── Throttled                    429 / rate limit: back off, honour Retry-After
    └── LockLost                         the message lock is gone: cancel, never settle

Adapters translate SDK exceptions into these at their edge; nothing above them sees an `azure.*` error.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

__all__ = [
    "InputForbidden",
    "InputNotFound",
    "InputTooLarge",
    "InvalidJob",
    "InvalidMessage",
    "LockLost",
    "Permanent",
    "Reason",
    "Throttled",
    "Transient",
    "UnsupportedAudio",
    "VoiceLiveRejected",
    "WorkerError",
]

#: Dead-letter descriptions are capped by Service Bus (4 KiB); keep ours short and readable.
MAX_DETAIL_CHARS = 1024


class Reason(StrEnum):
    """Reason codes written to manifests, dead-letter reasons and metrics. Stable: others key on them."""

    INVALID_MESSAGE = "InvalidMessage"
    INVALID_JOB = "InvalidJob"
    INPUT_NOT_FOUND = "InputNotFound"
    INPUT_FORBIDDEN = "InputForbidden"
    INPUT_TOO_LARGE = "InputTooLarge"
    UNSUPPORTED_AUDIO = "UnsupportedAudio"
    VOICELIVE_REJECTED = "VoiceLiveRejected"
    RETRIES_EXHAUSTED = "RetriesExhausted"


class WorkerError(Exception):
    """Base of every classified failure; `detail` is safe to log (no secrets, no transcript text)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"
        super().__init__(self.detail)


class Permanent(WorkerError):
    """Retrying cannot help: the job is dead-lettered with `reason`."""

    reason: ClassVar[Reason]

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class InvalidMessage(Permanent):
    reason = Reason.INVALID_MESSAGE


class InvalidJob(Permanent):
    reason = Reason.INVALID_JOB


class InputNotFound(Permanent):
    reason = Reason.INPUT_NOT_FOUND


class InputForbidden(Permanent):
    reason = Reason.INPUT_FORBIDDEN


class InputTooLarge(Permanent):
    reason = Reason.INPUT_TOO_LARGE


class UnsupportedAudio(Permanent):
    reason = Reason.UNSUPPORTED_AUDIO


class VoiceLiveRejected(Permanent):
    reason = Reason.VOICELIVE_REJECTED


class Transient(WorkerError):
    """May succeed later: retried with backoff. `retry_after_s` is a floor the server asked for."""

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Throttled(Transient):
    """The service said slow down (HTTP 429, rate_limit_exceeded). Backs off without burning attempts."""


class LockLost(WorkerError):
    """The message lock expired or renewal failed; the broker will redeliver, so we must not settle."""


PERMANENT_BY_REASON: dict[Reason, type[Permanent]] = {
    cls.reason: cls
    for cls in (
        InvalidMessage,
        InvalidJob,
        InputNotFound,
        InputForbidden,
        InputTooLarge,
        UnsupportedAudio,
        VoiceLiveRejected,
    )
}
