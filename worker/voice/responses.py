"""Response requests: queued in order, and `response.create` sent only while no response is active."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from worker.voice.timeline import UserTurn
from worker.voice.tracker import RESPONSE_TAG, Tracker, Trigger

__all__ = ["ResponseRequests"]

#: (our tag for it, what triggered it, the user turn or item id it answers)
_Request = tuple[str, Trigger, UserTurn | str | None]


class ResponseRequests:
    """The session's response requests. `pump` sends the next one when the tracker has no active
    response and none of ours is in flight (sent, not yet `response.created`); call it again whenever
    that may have changed. `send` sends a client event on the current leg."""

    def __init__(self, tracker: Tracker, *, send: Callable[[Mapping[str, Any]], Awaitable[None]]) -> None:
        self._tracker = tracker
        self._send = send
        self._queue: deque[_Request] = deque()
        self._in_flight: _Request | None = None  # sent, not yet created
        self._n_requests = 0

    @property
    def pending(self) -> bool:
        """A response was requested and not yet created."""
        return self._in_flight is not None or bool(self._queue)

    async def request(self, trigger: Trigger, answers: UserTurn | str | None = None) -> None:
        self._n_requests += 1
        self._queue.append((str(self._n_requests), trigger, answers))
        await self.pump()

    async def pump(self) -> None:
        if self._in_flight is not None or self._tracker.active_responses or not self._queue:
            return
        self._in_flight = self._queue.popleft()
        self._tracker.expect_response(*self._in_flight)
        tag = self._in_flight[0]
        await self._send({"type": "response.create", "response": {"metadata": {RESPONSE_TAG: tag}}})

    def created(self) -> None:
        """`response.created`: the request in flight (if it was ours) is answered."""
        self._in_flight = None

    def refused(self) -> None:
        """Our `response.create` lost a race with a server-VAD response: ask again when that one is done."""
        if self._in_flight is not None:
            self._tracker.forget_expected(self._in_flight[0])
            self._queue.appendleft(self._in_flight)
            self._in_flight = None

    def carry_over(self) -> None:
        """At rollover: a request sent but never created is asked of the next session instead."""
        if self._in_flight is not None:
            self._queue.appendleft(self._in_flight)
            self._in_flight = None
