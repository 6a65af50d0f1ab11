"""`ServiceBusBroker`: the proton reactor in a thread, plus lifecycle, inspection and faults for asyncio."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self, TypeVar

from proton import Handler
from proton.reactor import ApplicationEvent, Container, EventInjector

from .amqp import AmqpHandler, entity_path
from .faults import Faults
from .queues import DEAD_LETTER_SUFFIX, Counters, QueueOptions, QueueSnapshot, QueueStore

__all__ = ["DEV_KEY", "DEV_KEY_NAME", "BrokerState", "ServiceBusBroker"]

_log = logging.getLogger(__name__)
DEV_KEY_NAME = "RootManageSharedAccessKey"
DEV_KEY = "ZGV2c3RhY2stc2VydmljZWJ1cy1sb2NhbC1vbmx5LWtleQ=="  # public, loopback-only dev key
_T = TypeVar("_T")
_COMMAND_TIMEOUT_S = 10.0
_SHUTDOWN_GRACE_S = 1.0  # how long aclose() waits for clients to answer our close before hanging up


@dataclass(frozen=True, kw_only=True)
class BrokerState:
    """A consistent snapshot taken on the reactor thread."""

    queues: Mapping[str, QueueSnapshot]
    counters: Counters
    connections: int
    receivers: int
    paused: bool = False

    def queue(self, name: str) -> QueueSnapshot:
        """The named queue (case-insensitive); an empty snapshot if it was never used."""
        key = entity_path(name)
        return self.queues.get(key) or QueueSnapshot(
            name=key, active=0, scheduled=0, locked=0, deferred=0, messages=()
        )

    def dead_letters(self, name: str) -> QueueSnapshot:
        return self.queue(entity_path(name).removesuffix(DEAD_LETTER_SUFFIX) + DEAD_LETTER_SUFFIX)

    @property
    def locks_held(self) -> int:
        return sum(q.locked for q in self.queues.values())


class _Reactor(Handler):
    """Root handler: listening, the tick timer, cross-thread commands, change notification."""

    def __init__(self, broker: ServiceBusBroker, amqp: AmqpHandler) -> None:
        super().__init__()
        self.handlers = [amqp]
        self._broker = broker
        self._amqp = amqp
        self.acceptor: Any = None
        self.container: Any = None
        self.timer: Any = None
        self.stopping = False

    def on_reactor_init(self, event: Any) -> None:
        broker = self._broker
        try:
            self.acceptor = event.container.listen(f"{broker.host}:{broker.requested_port}")
            broker.bound_port = self.acceptor._selectable._delegate.getsockname()[1]
        except OSError as exc:
            broker.startup_error = exc
            broker.started.set()
            event.container.stop()
            return
        self.container = event.container
        event.container.selectable(broker.injector)
        self.timer = event.container.schedule(broker.tick_s, self)
        broker.started.set()

    def on_timer_task(self, event: Any) -> None:
        if self.stopping:
            return
        if self._broker.store.tick():
            self._amqp.pump_all()
            self._broker.mark_changed()
        self.timer = event.container.schedule(self._broker.tick_s, self)

    def on_sb_command(self, event: Any) -> None:
        self._broker.run_commands()

    def on_reactor_quiesced(self, event: Any) -> None:
        self._broker.notify_waiters()


class _Hangup(Handler):
    """Drops connections whose peer never answered our close (an idle SDK client reads nothing)."""

    def __init__(self, connections: list[Any]) -> None:
        super().__init__()
        self._connections = connections

    def on_timer_task(self, event: Any) -> None:
        for connection in self._connections:
            transport = connection.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()


class ServiceBusBroker:
    """A local Service Bus namespace on AMQP 1.0 that the real `azure-servicebus` SDK talks to.

    Args:
        host, port: where to listen; port 0 picks a free port (read `port` after `start()`).
        key_name, key: the SharedAccessKey the SDK must sign `$cbs` tokens with.
        queues: queues with their own options; any other queue is created on first use with the defaults.
        lock_duration_s, max_delivery_count, default_ttl_s, max_message_size: defaults for other queues.
        default_queue: the queue named in `env()` as SERVICEBUS_QUEUE.
        clock: epoch seconds; drives lock expiry, scheduling and TTL.
        tick_s: how often the reactor checks lock expiry and scheduled messages.

    The reactor runs in its own thread between `start()` and `aclose()`; every method here is safe to call
    from asyncio code. Use `async with` or call `aclose()`: it closes every connection and joins the thread.
    """

    name = "servicebus"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        key_name: str = DEV_KEY_NAME,
        key: str = DEV_KEY,
        queues: Mapping[str, QueueOptions] | None = None,
        lock_duration_s: float = 30.0,
        max_delivery_count: int = 10,
        default_ttl_s: float | None = None,
        max_message_size: int = 256 * 1024,
        default_queue: str = "audio-jobs",
        clock: Callable[[], float] = time.time,
        tick_s: float = 0.05,
    ) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.host = host
        self.requested_port = port
        self._key_name = key_name
        self._key = key
        self.default_queue = default_queue
        self.tick_s = tick_s
        defaults = QueueOptions(
            lock_duration_s=lock_duration_s,
            max_delivery_count=max_delivery_count,
            default_ttl_s=default_ttl_s,
            max_message_size=max_message_size,
        )
        self.store = QueueStore(clock=clock, default_options=defaults, queues=queues)
        self.faults = Faults()
        self._amqp = AmqpHandler(
            store=self.store,
            faults=self.faults,
            keys={key_name: key},
            on_change=self.mark_changed,
            clock=clock,
        )
        self.injector = EventInjector()
        self.started = threading.Event()
        self.startup_error: OSError | None = None
        self.crash: Exception | None = None
        self.bound_port = 0
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()
        self._changed = False
        self._thread: threading.Thread | None = None
        self._root = _Reactor(self, self._amqp)
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return (
            f"ServiceBusBroker({self.host}:{self.bound_port}, key_name={self._key_name!r}, key=***, {state})"
        )

    # ---- lifecycle ------------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Bind and start the reactor thread; returns once the port listens. Raises OSError if bind fails."""
        if self._closed:
            raise RuntimeError("ServiceBusBroker cannot be restarted after aclose()")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"servicebus-broker-{id(self):x}", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self.started.wait)
        if self.startup_error is not None:
            await asyncio.to_thread(self._thread.join)
            raise self.startup_error
        _log.info("servicebus broker listening on %s:%d", self.host, self.bound_port)

    def _run(self) -> None:
        try:
            Container(self._root).run()
        except Exception as exc:
            self.crash = exc  # surfaced by the next state()/fault call instead of dying silently
            _log.exception("servicebus broker reactor crashed")
            self.started.set()
            self._changed = True
            self.notify_waiters()

    async def aclose(self) -> None:
        """Close every connection and the listener, then join the reactor thread. Safe to call twice."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is None or not thread.is_alive():
            return
        self._commands.put(self._shutdown)
        self.injector.trigger(ApplicationEvent("sb_command"))
        await asyncio.to_thread(thread.join)
        self.notify_waiters()

    def _shutdown(self) -> None:
        # Order matters: stop accepting, close peers (so close frames go out), then let the reactor run dry.
        root = self._root
        root.stopping = True
        if root.timer is not None:
            root.timer.cancel()
        if root.acceptor is not None:
            root.acceptor.close()
        connections = list(self._amqp.connections)
        self._amqp.close_connections("amqp:connection:forced")
        self.injector.close()
        if connections and root.container is not None:
            root.container.schedule(_SHUTDOWN_GRACE_S, _Hangup(connections))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ---- settings -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.bound_port

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.bound_port};SharedAccessKeyName={self._key_name};"
            f"SharedAccessKey={self._key};UseDevelopmentEmulator=true"
        )

    def env(self) -> dict[str, str]:
        return {
            "SERVICEBUS_CONNECTION_STRING": self.connection_string,
            "SERVICEBUS_QUEUE": self.default_queue,
        }

    # ---- cross-thread plumbing (reactor side) ---------------------------------------------------------

    def run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def mark_changed(self) -> None:
        self._changed = True

    def notify_waiters(self) -> None:
        if not self._changed and self.is_running:
            return
        self._changed = False
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    async def _call(self, function: Callable[[], _T]) -> _T:
        """Run `function` on the reactor thread and return its result."""
        if not self.is_running:
            raise RuntimeError("ServiceBusBroker is not running") from self.crash
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def deliver(result: _T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def command() -> None:
            try:
                result = function()
            except Exception as exc:
                loop.call_soon_threadsafe(deliver, None, exc)
            else:
                loop.call_soon_threadsafe(deliver, result, None)

        self._commands.put(command)
        self.injector.trigger(ApplicationEvent("sb_command"))
        async with asyncio.timeout(_COMMAND_TIMEOUT_S):
            return await future

    # ---- inspection -----------------------------------------------------------------------------------

    def _snapshot(self) -> BrokerState:
        return BrokerState(
            queues=self.store.snapshot(),
            counters=replace(self.store.counters),
            connections=len(self._amqp.connections),
            receivers=sum(len(links) for links in self._amqp.senders.values()),
            paused=self.faults.paused,
        )

    async def state(self) -> BrokerState:
        """A fresh, consistent snapshot of every queue, counter and connection."""
        return await self._call(self._snapshot)

    async def wait_for(
        self,
        predicate: Callable[[BrokerState], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 -- part of the devstack inspection contract
    ) -> BrokerState:
        """Wait until `predicate(state)` holds; woken by broker changes, not by polling.
        Raises TimeoutError (with the last state) after `timeout` seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._waiters_lock:
            self._waiters.add(waiter)
        state: BrokerState | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    waiter[1].clear()
                    state = await self.state()
                    if predicate(state):
                        return state
                    await waiter[1].wait()
        except TimeoutError as exc:
            raise TimeoutError(f"broker condition not met in {timeout}s; last state: {state}") from exc
        finally:
            with self._waiters_lock:
                self._waiters.discard(waiter)

    # ---- fault injection ------------------------------------------------------------------------------

    async def detach_links(
        self, queue: str | None = None, *, condition: str = "amqp:link:detach-forced"
    ) -> int:
        """Force-detach every queue link (or those of `queue`); returns how many were detached."""
        return await self._call(lambda: self._amqp.detach_links(queue, condition))

    async def close_connections(self, *, condition: str = "amqp:connection:forced") -> int:
        """Force-close every client connection (with an error carrying `info`); returns how many."""
        return await self._call(lambda: self._amqp.close_connections(condition))

    def reject_auth(self, times: int = 1) -> None:
        """Answer the next `times` put-tokens with 401 (the SDK raises ServiceBusAuthenticationError)."""
        self.faults.reject_auth(times)

    def lose_next_lock(self, times: int = 1) -> None:
        """The next `times` renew/settle operations find their lock expired (MessageLockLostError)."""
        self.faults.lose_next_lock(times)

    def server_busy(self, times: int = 1) -> None:
        """The next `times` sends or management requests fail with `com.microsoft:server-busy`."""
        self.faults.server_busy(times)

    def pause_delivery(self) -> None:
        """Stop handing messages to receivers (credit accumulates) until `resume_delivery()`."""
        self.faults.set_paused(True)

    async def resume_delivery(self) -> None:
        self.faults.set_paused(False)
        await self._call(self._amqp.pump_all)
