"""Fault switches tests flip from any thread and the reactor consumes: auth, busy, lock loss, pause."""

from __future__ import annotations

import threading

__all__ = ["Faults"]


class Faults:
    """Thread-safe one-shot and standing faults. Counts are "how many of the next operations fail"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._auth_rejections = 0
        self._lock_losses = 0
        self._server_busy = 0
        self._paused = False

    def reject_auth(self, times: int = 1) -> None:
        """Answer the next `times` `$cbs` put-tokens with 401, whatever the key."""
        with self._lock:
            self._auth_rejections += times

    def lose_next_lock(self, times: int = 1) -> None:
        """Make the next `times` renews or settles find their lock gone (the message is redelivered)."""
        with self._lock:
            self._lock_losses += times

    def server_busy(self, times: int = 1) -> None:
        """Answer the next `times` sends or `$management` requests with `com.microsoft:server-busy`."""
        with self._lock:
            self._server_busy += times

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._paused = paused

    def clear(self) -> None:
        with self._lock:
            self._auth_rejections = self._lock_losses = self._server_busy = 0
            self._paused = False

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def take_auth_rejection(self) -> bool:
        return self._take("_auth_rejections")

    def take_lock_loss(self) -> bool:
        return self._take("_lock_losses")

    def take_server_busy(self) -> bool:
        return self._take("_server_busy")

    def _take(self, name: str) -> bool:
        with self._lock:
            left: int = getattr(self, name)
            if left <= 0:
                return False
            setattr(self, name, left - 1)
            return True
