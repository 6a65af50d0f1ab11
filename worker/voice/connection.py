"""The real Voice Live adapter: `azure.ai.voicelive.aio.connect` behind the `VoiceConnector` port.

Every SDK/aiohttp exception is translated into the worker's taxonomy here and nowhere else
(`translate_error`). The SDK facts this relies on are in research/voicelive.md §1.8: handshake failures
arrive as the SDK's `ConnectionError` whose `__cause__` is aiohttp's `WSServerHandshakeError` (with
`.status`/`.headers`); the SDK applies no handshake timeout; `async for` ends silently on any disconnect.
We read with `recv_bytes()` + `json.loads` to get raw dicts (no typed-model cost per audio delta) and keep
the same "ends when the socket ends" contract.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from azure.ai.voicelive.aio import ConnectionClosed, VoiceLiveConnection, connect
from azure.ai.voicelive.aio import ConnectionError as SdkConnectionError
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from worker.errors import Throttled, Transient, VoiceLiveRejected, WorkerError

__all__ = ["SdkVoiceConnector", "translate_error"]

_log = logging.getLogger(__name__)

#: Incoming frames above the SDK default (4 MiB) would kill the socket with 1006; audio deltas are small,
#: but a long `response.done` with many output items is not, so leave generous room.
_MAX_MSG_BYTES = 16 * 1024 * 1024


class SdkVoiceConnector:
    """Opens Voice Live sessions with the real SDK.

    Args:
        endpoint: the resource root (`https://<res>.services.ai.azure.com`, or `http://127.0.0.1:PORT` for
            the devstack simulator); the SDK appends `/voice-live/realtime` itself.
        credential: `AzureKeyCredential` or an `AsyncTokenCredential` (the caller owns and closes it).
        api_version: overrides the SDK default when given.
        connect_timeout_s: bound on the WebSocket handshake (the SDK ignores its own handshake timeout).
    """

    def __init__(
        self,
        *,
        endpoint: str,
        credential: AzureKeyCredential | AsyncTokenCredential,
        api_version: str | None = None,
        connect_timeout_s: float = 15.0,
    ) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._api_version = api_version
        self.connect_timeout_s = connect_timeout_s

    def __repr__(self) -> str:
        return f"SdkVoiceConnector(endpoint={self._endpoint!r}, credential={type(self._credential).__name__})"

    def connect(self, *, model: str) -> AbstractAsyncContextManager[_SdkConnection]:
        return self._open(model)

    @asynccontextmanager
    async def _open(self, model: str) -> AsyncIterator[_SdkConnection]:
        kwargs: dict[str, Any] = {}
        if self._api_version is not None:
            kwargs["api_version"] = self._api_version
        manager = connect(
            credential=self._credential,
            endpoint=self._endpoint,
            model=model,
            connection_options={"max_msg_size": _MAX_MSG_BYTES},
            **kwargs,
        )
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                sdk_conn = await manager.__aenter__()
        except TimeoutError:
            # Cancelling the SDK mid-handshake leaks its aiohttp ClientSession (research §1.8); there is no
            # handle to close it, the GC reclaims it with an "Unclosed client session" warning.
            raise Transient(f"Voice Live connect timed out after {self.connect_timeout_s:g} s") from None
        except Exception as exc:
            raise translate_error(exc) from exc
        try:
            yield _SdkConnection(sdk_conn)
        finally:
            await manager.__aexit__(None, None, None)


class _SdkConnection:
    def __init__(self, conn: VoiceLiveConnection) -> None:
        self._conn = conn

    async def send(self, event: Mapping[str, Any]) -> None:
        try:
            await self._conn.send(event)
        except Exception as exc:
            raise translate_error(exc) from exc

    async def send_audio(self, frame: bytes) -> None:
        audio = base64.b64encode(frame).decode("ascii")
        await self.send({"type": "input_audio_buffer.append", "audio": audio})

    async def events(self) -> AsyncIterator[Mapping[str, Any]]:
        while True:
            try:
                raw = await self._conn.recv_bytes()
            except (ConnectionClosed, aiohttp.ClientError, RuntimeError) as exc:
                _log.debug("voicelive socket ended: %s", exc)
                return
            if not raw:  # CLOSING and other non-data frames: the socket is going away
                return
            try:
                event = json.loads(raw)
            except ValueError as exc:
                raise Transient(f"Voice Live sent a frame that is not JSON: {exc}") from None
            if isinstance(event, dict):
                yield event


def translate_error(exc: BaseException) -> WorkerError:
    """SDK / aiohttp / azure-core exception → worker taxonomy. The one place this mapping lives."""
    if isinstance(exc, WorkerError):
        return exc
    cause = exc.__cause__ if isinstance(exc, SdkConnectionError) else exc
    if isinstance(cause, aiohttp.WSServerHandshakeError):
        return _from_handshake_status(cause.status, cause.headers, str(cause.message))
    if isinstance(exc, ClientAuthenticationError):
        # Token acquisition failed: a worker identity problem, not a property of the job (see below).
        return Transient(f"Voice Live credential failed to get a token ({exc.message}); check the identity")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Transient("Voice Live timed out")
    return Transient(f"Voice Live connection failed: {exc}")


def _from_handshake_status(status: int, headers: Mapping[str, str] | None, message: str) -> WorkerError:
    if status == 429:
        retry_after = _retry_after_s(headers)
        return Throttled(f"Voice Live refused the connection: HTTP 429 {message}", retry_after_s=retry_after)
    if status in (401, 403):
        # Auth failures are the *worker's* misconfiguration (wrong key, missing role assignment), never the
        # job's. Classifying them as permanent would dead-letter every job in the queue until someone
        # notices; as transient they retry with backoff and surface loudly in logs and metrics instead.
        return Transient(
            f"Voice Live rejected our credentials (HTTP {status}): check VOICELIVE_API_KEY or the "
            "identity's role assignment (Cognitive Services User) on the resource"
        )
    if status in (400, 404):
        # The handshake carries only the model/deployment from the job: a bad one will never succeed.
        return VoiceLiveRejected(f"Voice Live refused the session (HTTP {status}): bad model or deployment?")
    return Transient(f"Voice Live handshake failed: HTTP {status} {message}".rstrip())


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
