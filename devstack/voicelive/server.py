"""`VoiceLiveSimulator`: the aiohttp server, the upgrade handshake (auth, faults, rate limit), lifecycle."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection
from types import TracebackType

from aiohttp import web

from ._ids import new_id
from .connection import ConnectionSettings, RealtimeConnection, close_socket
from .faults import CloseAfter, ConnectRateLimiter, FaultControl, Refuse
from .options import Mode, ResponseTiming, ToolRule
from .recognizer import Recognizer, make_recognizer
from .records import ConnectionRecord, Watchable
from .session import default_session
from .sink import serve_sink

__all__ = ["VoiceLiveSimulator"]

log = logging.getLogger("devstack.voicelive")
_PATH_SUFFIX = "/voice-live/realtime"
_AGENT_PARAMS = ("agent-name", "agent-project-name")


class VoiceLiveSimulator:
    """A Voice Live service on loopback that the real `azure-ai-voicelive` SDK connects to.

    Reach it with `connect(endpoint=sim.endpoint, credential=AzureKeyCredential(key), model=...)`.
    Args (all keyword-only):
        host, port: bind address; port 0 picks a free port (read `.port` / `.endpoint` after `start()`).
        api_keys: accepted `api-key` values (header or query). The first one goes into `env()`.
        bearer_tokens: accepted `Authorization: Bearer` tokens; None (default) accepts any non-empty token.
        mode: `Mode.NORMAL`, `Mode.ZERO_LATENCY` (responses at once) or `Mode.SINK` (appends only).
        timing: response cadence in normal mode. tool_rule: when responses become function calls.
        connects_per_minute: new connections per key and minute before HTTP 429 (service quota: 30);
            None disables the limit.
        session_ttl_s: session lifetime (then `error` session_expired and close 1001).
        clock: monotonic seconds for append timestamps and the rate limit; wall_clock for `expires_at`.
        recognizer: what `input_audio_transcription` reports per user audio item: "placeholder" (default,
            deterministic text "utterance N (D.DD s)" sent at once), "pocketsphinx" (real offline English
            recognition, asynchronous; needs the devstack dependency group) or any `Recognizer` (the
            simulator then starts and closes it too). With a real recogniser a response decides its text and
            tool calls once the transcript of the user turn is there.
    Faults are chosen per connection with `sim.faults` (see `faults.py`). Observed connections are in
    `sim.connections` (every handshake attempt, in order); wait on them with `wait_for_connections`.
    """

    name = "voicelive"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Collection[str] = ("devstack-key",),
        bearer_tokens: Collection[str] | None = None,
        mode: Mode = Mode.NORMAL,
        timing: ResponseTiming | None = None,
        tool_rule: ToolRule | None = None,
        connects_per_minute: int | None = 30,
        session_ttl_s: int = 3600,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        recognizer: str | Recognizer = "placeholder",
    ) -> None:
        if not api_keys and bearer_tokens is not None and not bearer_tokens:
            raise ValueError("api_keys and bearer_tokens are both empty: nobody could connect")
        self.host = host
        self.port = port
        self.api_keys = tuple(api_keys)
        self._bearer = None if bearer_tokens is None else frozenset(bearer_tokens)
        self.mode = mode
        self._timing = timing or ResponseTiming()
        self._tool_rule = tool_rule or ToolRule()
        self._session_ttl_s = session_ttl_s
        self._clock = clock
        self._wall = wall_clock
        self.recognizer = make_recognizer(recognizer) if isinstance(recognizer, str) else recognizer
        self.faults = FaultControl()
        self.limiter = ConnectRateLimiter(per_minute=connects_per_minute, clock=clock)
        self.connections: list[ConnectionRecord] = []
        self._watch: Watchable[VoiceLiveSimulator] = Watchable(self)
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"VoiceLiveSimulator({self.endpoint!r}, mode={self.mode.value}, open={len(self._sockets)})"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._closed or self._runner is not None:
            raise RuntimeError("VoiceLiveSimulator can be started once")
        if self.recognizer is not None:
            await self.recognizer.start()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("voicelive simulator listening on %s (%s)", self.endpoint, self.mode.value)

    async def aclose(self) -> None:
        """Stop admitting, close every WebSocket (1001), await their handlers, stop the server. Idempotent."""
        self._closed = True
        for record in self.connections:
            if record.close_code is None and record.handshake_status == 101:
                record.close_code = 1001
        await asyncio.gather(*(ws.close(code=1001) for ws in list(self._sockets)), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()  # waits for the handlers, which end once their socket closed
            self._runner = None
        if self.recognizer is not None:
            await self.recognizer.aclose()

    async def __aenter__(self) -> VoiceLiveSimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def env(self) -> dict[str, str]:
        return {
            "VOICELIVE_ENDPOINT": self.endpoint,
            "VOICELIVE_API_KEY": self.api_keys[0] if self.api_keys else "",
        }

    async def wait_for_connections(self, count: int = 1, *, within_s: float = 10.0) -> list[ConnectionRecord]:
        """All records, once at least `count` handshake attempts were seen (`TimeoutError` otherwise)."""
        await self._watch.wait_until(lambda s: len(s.connections) >= count, within_s=within_s)
        return list(self.connections)

    # -- handshake ------------------------------------------------------------------------------------------

    def _credential(self, request: web.Request) -> tuple[str | None, bool]:
        """(rate-limit key, accepted) from `api-key` or `Authorization: Bearer` (header or query)."""
        key = request.headers.get("api-key") or request.query.get("api-key")
        if key is not None:
            return key, key in self.api_keys
        auth = request.headers.get("Authorization") or request.query.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        ok = bool(token) and (self._bearer is None or token in self._bearer)
        return ("entra" if ok else None), ok

    def _refusal(self, request: web.Request, record: ConnectionRecord) -> web.Response | None:
        if self._closed:
            return _json_error(503, "ServiceUnavailable", "The simulator is shutting down.")
        if not request.path.endswith(_PATH_SUFFIX):
            return _json_error(404, "NotFound", f"Resource not found: {request.path}")
        try:
            record.faults = self.faults.take(request.query)
        except ValueError as exc:
            return _json_error(400, "BadFaultSpec", str(exc))
        for fault in record.faults:
            if isinstance(fault, Refuse):
                return _json_error(
                    fault.status, f"Injected{fault.status}", "Injected fault.", fault.retry_after_s
                )
        key, ok = self._credential(request)
        record.key = key
        if not ok:
            return _json_error(
                401, "PermissionDenied", "Access denied due to invalid subscription key or token."
            )
        if "api-version" not in request.query:
            return _json_error(400, "BadRequest", "The api-version query parameter is required.")
        if "model" not in request.query and not all(p in request.query for p in _AGENT_PARAMS):
            return _json_error(
                400, "BadRequest", "Either model or agent-name + agent-project-name is required."
            )
        wait_s = self.limiter.admit(key or "")
        if wait_s is not None:
            return _json_error(429, "TooManyRequests", "Too many new connections per minute.", wait_s)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = ConnectionRecord(
            index=len(self.connections),
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
        )
        self.connections.append(record)
        refusal = self._refusal(request, record)
        if refusal is not None:
            record.handshake_status = refusal.status
            record.closed.set()
            self._watch.changed()
            return refusal
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, autoping=True)
        await ws.prepare(request)
        record.handshake_status = 101
        record.accepted_at = self._clock()
        self._sockets.add(ws)
        self._watch.changed()
        try:
            await self._serve(ws, request, record)
        finally:
            self._sockets.discard(ws)
            if record.close_code is None:
                record.close_code = ws.close_code
            record.closed.set()
            record.watch.changed()
        return ws

    async def _serve(self, ws: web.WebSocketResponse, request: web.Request, record: ConnectionRecord) -> None:
        model = request.query.get("model")
        if self.mode is Mode.SINK:

            async def close(fault: CloseAfter) -> None:
                await close_socket(ws, request, record, fault.kind)

            session = default_session(
                session_id=new_id("sess", 21), model=model, ttl_s=self._session_ttl_s, wall=self._wall
            )
            await serve_sink(ws, record, session=session, clock=self._clock, close=close)
            return
        settings = ConnectionSettings(
            model=model,
            timing=self._timing,
            zero_latency=self.mode is Mode.ZERO_LATENCY,
            tool_rule=self._tool_rule,
            session_ttl_s=self._session_ttl_s,
            clock=self._clock,
            wall_clock=self._wall,
            recognizer=self.recognizer,
        )
        await RealtimeConnection(ws=ws, request=request, record=record, settings=settings).serve()


def _json_error(status: int, code: str, message: str, retry_after_s: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)
