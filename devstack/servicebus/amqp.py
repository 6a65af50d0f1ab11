"""The proton event handler: connections, SASL, routing to $cbs, $management and queues, settlement."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from cproton_ffi import ffi as _proton_ffi  # type: ignore[import-not-found]
from cproton_ffi import lib as _proton_lib
from proton import Condition, Delivery, Endpoint, Handler, Link, Message, ProtonException, symbol

from .cbs import verify_token
from .codec import read_info, render, unpack_batch
from .faults import Faults
from .management import LOCK_LOST, SERVER_BUSY, ManagementNode
from .queues import LockLost, QueueStore, ReceiveMode

__all__ = ["AmqpHandler", "LinkKind"]

_log = logging.getLogger(__name__)
_CREDIT_WINDOW = 200
_TRACKING: Any = {symbol("com.microsoft:tracking-id"): "devstack"}  # non-empty info: the SDK indexes into it


class LinkKind(Enum):
    CBS = "cbs"
    MANAGEMENT = "management"
    QUEUE = "queue"


@dataclass(frozen=True)
class _LinkInfo:
    kind: LinkKind
    entity: str
    mode: ReceiveMode


def raw_tag(delivery: Any) -> bytes:
    """The delivery tag as bytes (proton's `Delivery.tag` decodes it as UTF-8, which GUID bytes are not)."""
    tag = _proton_lib.pn_delivery_tag(delivery._impl)
    return bytes(_proton_ffi.unpack(tag.start, tag.size))


def entity_path(address: str | None) -> str:
    """`amqps://host:port/q` or `q` → `q` (lower-case, no slashes at the ends)."""
    address = address or ""
    if "://" in address:
        address = address.split("://", 1)[1].partition("/")[2]
    return address.strip("/").lower()


def _classify(link: Link) -> _LinkInfo:
    address = entity_path(link.remote_target.address if link.is_receiver else link.remote_source.address)
    mode = (
        ReceiveMode.RECEIVE_AND_DELETE
        if link.remote_snd_settle_mode == Link.SND_SETTLED
        else ReceiveMode.PEEK_LOCK
    )
    if address == "$cbs":
        return _LinkInfo(LinkKind.CBS, "$cbs", mode)
    if address.endswith("/$management"):
        return _LinkInfo(LinkKind.MANAGEMENT, address.removesuffix("/$management"), mode)
    return _LinkInfo(LinkKind.QUEUE, address, mode)


class AmqpHandler(Handler):
    """Speaks the Service Bus dialect of AMQP 1.0 on the reactor thread.

    Args:
        store: queue state (mutated only here).
        faults: switches tests flip.
        keys: SharedAccessKeyName → key accepted in `$cbs` tokens.
        on_change: called after anything that may change queue state.
        clock: epoch seconds for token expiry checks.
    """

    def __init__(
        self,
        *,
        store: QueueStore,
        faults: Faults,
        keys: Mapping[str, str],
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._store = store
        self._faults = faults
        self._keys = dict(keys)
        self._on_change = on_change
        self._clock = clock
        self._management = ManagementNode(store=store, faults=faults)
        self.connections: set[Any] = set()
        self.senders: dict[str, list[Any]] = {}  # entity → our sender links (client receivers)

    # ---- connection and session lifecycle -------------------------------------------------------------

    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")  # auth happens in $cbs, not in SASL

    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()
        self.connections.add(connection)

    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event: Any) -> None:
        connection = event.connection
        self._forget_connection(connection)
        if not connection.state & Endpoint.LOCAL_CLOSED:
            connection.close()

    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._forget_connection(event.connection)

    def _forget_connection(self, connection: Any) -> None:
        self.connections.discard(connection)
        for links in self.senders.values():
            links[:] = [link for link in links if link.connection != connection]

    # ---- links ----------------------------------------------------------------------------------------

    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        info = _classify(link)
        link.sb_info = info
        # The SDK detaches links whose attach lacks a source or target: echo both.
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if info.kind is LinkKind.QUEUE and link.is_receiver:
            link.max_message_size = self._store.options(info.entity).max_message_size
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT_WINDOW)
        elif info.kind is LinkKind.QUEUE:
            self.senders.setdefault(info.entity, []).append(link)
        _log.debug(
            "attached %s %s link to %s", info.kind.value, "in" if link.is_receiver else "out", info.entity
        )

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._drop_sender(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    def _drop_sender(self, link: Any) -> None:
        info: _LinkInfo | None = getattr(link, "sb_info", None)
        if info is not None and info.kind is LinkKind.QUEUE and link.is_sender:
            links = self.senders.get(info.entity, [])
            if link in links:
                links.remove(link)

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        info: _LinkInfo | None = getattr(link, "sb_info", None)
        if link.is_sender and info is not None and info.kind is LinkKind.QUEUE:
            self.pump(info.entity)
            if link.drain_mode:
                link.drained()

    # ---- deliveries -----------------------------------------------------------------------------------

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        info: _LinkInfo | None = getattr(link, "sb_info", None)
        if info is None:
            return
        if link.state & Endpoint.LOCAL_CLOSED:
            # A forced detach: ignore late dispositions so the client's $management fallback finds the lock.
            delivery.settle()
            return
        if link.is_receiver:
            if delivery.readable and not delivery.partial:
                self._on_transfer(link, info, delivery)
        elif delivery.updated or delivery.remote_state:
            self._on_disposition(info, delivery)

    def _on_transfer(self, link: Any, info: _LinkInfo, delivery: Any) -> None:
        raw = bytes(link.recv(delivery.pending))
        link.advance()
        try:
            if info.kind is LinkKind.QUEUE:
                self._enqueue(info.entity, raw, delivery)
            else:
                request = Message()
                request.decode(raw)
                self._answer(link, info, request)
                delivery.update(Delivery.ACCEPTED)
                delivery.settle()
        except (ValueError, ProtonException) as exc:
            # A malformed message must not take the reactor (and every other client) down.
            _log.warning("rejecting undecodable transfer on %s: %s", info.entity, exc, exc_info=True)
            self._reject(delivery, "amqp:decode-error", str(exc))
        if link.credit < _CREDIT_WINDOW // 2:
            link.flow(_CREDIT_WINDOW - link.credit)
        self._on_change()

    def _enqueue(self, entity: str, raw: bytes, delivery: Any) -> None:
        limit = self._store.options(entity).max_message_size
        if len(raw) > limit:
            self._reject(
                delivery, "amqp:link:message-size-exceeded", f"message of {len(raw)} bytes > {limit}"
            )
            return
        if self._faults.take_server_busy():
            self._reject(delivery, SERVER_BUSY, "server busy (injected)")
            return
        for message in unpack_batch(raw) or [raw]:
            info = read_info(message)
            self._store.enqueue(
                entity,
                message,
                message_id=info.message_id,
                scheduled_at=info.scheduled_enqueue_s,
                ttl_s=info.ttl_s,
            )
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        self.pump(entity)

    @staticmethod
    def _reject(delivery: Any, condition: str, description: str) -> None:
        delivery.local.condition = Condition(condition, description, _TRACKING)
        delivery.update(Delivery.REJECTED)
        delivery.settle()

    def _answer(self, link: Any, info: _LinkInfo, request: Message) -> None:
        if info.kind is LinkKind.CBS:
            reply = self._put_token(request)
        else:
            reply = self._management.handle(info.entity, request).to_message(request.id)
        target = self._reply_link(link.connection, info)
        if target is None:
            _log.warning("no reply link for %s on this connection; dropping the response", info.kind.value)
            return
        outgoing = target.delivery(uuid.uuid4().bytes)
        target.send(reply.encode())
        target.advance()
        outgoing.settle()  # the SDK never dispositions responses

    def _put_token(self, request: Message) -> Message:
        token = request.body if isinstance(request.body, str) else ""
        verdict = verify_token(token, keys=self._keys, now=self._clock())
        if verdict.ok and self._faults.take_auth_rejection():
            verdict = type(verdict)(401, "Unauthorized (injected)")
        properties: dict[Any, Any] = dict(request.properties or {})
        audience = properties.get("name")
        _log.debug("put-token for %s: %s", audience, verdict.status)
        properties = {"status-code": verdict.status, "status-description": verdict.description}
        return Message(correlation_id=request.id, properties=properties)

    @staticmethod
    def _reply_link(connection: Any, info: _LinkInfo) -> Any:
        link = connection.link_head(Endpoint.LOCAL_ACTIVE)
        while link is not None:
            other: _LinkInfo | None = getattr(link, "sb_info", None)
            if (
                link.is_sender
                and other is not None
                and (other.kind, other.entity) == (info.kind, info.entity)
            ):
                return link
            link = link.next(Endpoint.LOCAL_ACTIVE)
        return None

    # ---- sending messages to receivers ----------------------------------------------------------------

    def pump(self, entity: str) -> None:
        """Hand active messages to receiver links with credit, round-robin."""
        if self._faults.paused:
            return
        links = self.senders.get(entity, [])
        progress = True
        while progress:
            progress = False
            for link in list(links):
                if link.credit <= 0 or not link.state & Endpoint.LOCAL_ACTIVE:
                    continue
                message = self._store.acquire(entity, link.sb_info.mode)
                if message is None:
                    return
                tag = (
                    message.lock_token or uuid.uuid4()
                ).bytes_le  # lock token = delivery tag, .NET byte order
                delivery = link.delivery(tag)
                link.send(render(message))
                link.advance()
                if link.sb_info.mode is ReceiveMode.RECEIVE_AND_DELETE:
                    delivery.settle()
                progress = True
                self._on_change()

    def pump_all(self) -> None:
        for entity in list(self.senders):
            self.pump(entity)

    def _on_disposition(self, info: _LinkInfo, delivery: Any) -> None:
        state = delivery.remote_state
        if len(raw_tag(delivery)) != 16 or delivery.local_state:
            delivery.settle()
            return
        if state is None or state == Delivery.RELEASED:
            if delivery.settled or state == Delivery.RELEASED:  # a closing receiver gives back its prefetch
                self._settle(delivery, Delivery.RELEASED)
                delivery.settle()
            return
        outcome = self._settle(delivery, state)
        if delivery.settled:  # the client settled first: nothing to echo
            delivery.settle()
            return
        if outcome == LOCK_LOST:
            delivery.local.condition = Condition(LOCK_LOST, "The lock supplied is invalid.", _TRACKING)
            delivery.update(Delivery.REJECTED)
        else:
            # 7.15 waits for the same outcome echoed; a dead-letter echo must be `rejected` *without* error.
            delivery.update(state)
        delivery.settle()

    def _settle(self, delivery: Any, state: Any) -> str | None:
        token = uuid.UUID(bytes_le=raw_tag(delivery))
        if self._faults.take_lock_loss():
            self._store.lose_lock(token)
        try:
            if state == Delivery.ACCEPTED:
                self._store.complete(token)
            elif state == Delivery.RELEASED:
                self._store.release(token)
            elif state == Delivery.MODIFIED and delivery.remote.undeliverable:
                self._store.defer(token)
            elif state == Delivery.MODIFIED:
                self._store.abandon(token)
            elif state == Delivery.REJECTED:
                reason, description = _dead_letter_info(delivery.remote.condition)
                self._store.dead_letter(token, reason=reason, description=description)
            else:
                return None
        except LockLost:
            return LOCK_LOST
        finally:
            self._on_change()
            self.pump_all()
        return None

    # ---- faults ---------------------------------------------------------------------------------------

    def detach_links(self, entity: str | None, condition: str) -> int:
        """Close queue links (both directions) as the service does on `amqp:link:detach-forced`."""
        count = 0
        for link in self._queue_links():
            if entity is None or link.sb_info.entity == entity_path(entity):
                link.condition = Condition(condition, "detached by devstack fault injection", _TRACKING)
                link.close()
                self._drop_sender(link)
                count += 1
        return count

    def close_connections(self, condition: str) -> int:
        count = 0
        for connection in list(self.connections):
            connection.condition = Condition(condition, "closed by devstack", _TRACKING)
            connection.close()
            self._forget_connection(connection)
            count += 1
        return count

    def _queue_links(self) -> Iterator[Any]:
        for connection in list(self.connections):
            link = connection.link_head(Endpoint.LOCAL_ACTIVE)
            while link is not None:
                following = link.next(Endpoint.LOCAL_ACTIVE)
                info: _LinkInfo | None = getattr(link, "sb_info", None)
                if info is not None and info.kind is LinkKind.QUEUE:
                    yield link
                link = following


def _dead_letter_info(condition: Any) -> tuple[str | None, str | None]:
    if condition is None:
        return None, None
    info = condition.info or {}
    reason = info.get("DeadLetterReason", info.get(symbol("DeadLetterReason")))
    description = info.get("DeadLetterErrorDescription", condition.description)
    return (None if reason is None else str(reason)), (None if description is None else str(description))
