"""A small asyncio MQTT 3.1.1 broker embedded in the iomt process.

Why not a library broker: amqtt (0.12) sends the PUBACK of an incoming QoS 1 PUBLISH as soon
as the message is queued (``ProtocolHandler._handle_qos1_message_flow``), before any plugin
sees it, so it cannot tell a device "stored" only after the database commit. This broker does
exactly what iomt needs and no more:

- CONNECT/CONNACK with authentication (username = device id, password = device secret);
  the clean-session flag is accepted, but no session state is kept between connections
  (CONNACK always reports ``session present = 0``, which the spec allows).
- PUBLISH with QoS 0 and 1. For topics the ingest handler claims, the PUBACK is sent only when
  the handler calls :meth:`Connection.ack` (after the commit); PUBACKs of one connection go out
  in the order the PUBLISH packets came in (the handler commits in FIFO order). QoS 2 is not
  supported: such a PUBLISH closes the connection.
- ACL: a device may publish only under ``iomt/devices/{its own id}/`` and subscribe only there.
  A forbidden PUBLISH is reported to ``on_refused`` (dead letter) and the connection is closed
  without a PUBACK (MQTT 3.1.1 has no negative PUBACK; section 3.3.5 allows closing).
- SUBSCRIBE/SUBACK (granted QoS 0: subscribers receive QoS 0 copies), UNSUBSCRIBE, PINGREQ,
  DISCONNECT, keep-alive timeout (1.5 x keep-alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from iomt.ingest import mqtt_codec as codec

log = logging.getLogger(__name__)

#: Topic prefix under which each device owns its own subtree.
DEVICE_TOPIC_PREFIX = "iomt/devices/"


def readings_topic(device_id: str) -> str:
    """Topic on which ``device_id`` publishes reading batches."""
    return f"{DEVICE_TOPIC_PREFIX}{device_id}/readings"


def device_of_readings_topic(topic: str) -> str | None:
    """Return the device id if ``topic`` is ``iomt/devices/{id}/readings``, else None."""
    if not topic.startswith(DEVICE_TOPIC_PREFIX) or not topic.endswith("/readings"):
        return None
    device_id = topic[len(DEVICE_TOPIC_PREFIX) : -len("/readings")]
    if not device_id or "/" in device_id:
        return None
    return device_id


class AccessPolicy(Protocol):
    """Decides who may connect, publish and subscribe."""

    async def authenticate(self, username: str | None, password: bytes | None) -> bool:
        """Return True if these credentials may connect."""
        ...

    def may_publish(self, username: str | None, topic: str) -> bool:
        """Return True if ``username`` may publish to ``topic``."""
        ...

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        """Return True if ``username`` may subscribe to ``topic_filter``."""
        ...


class DeviceAccessPolicy:
    """The iomt policy: devices authenticate with their secret and own only their subtree.

    Parameters
    ----------
    verify
        ``verify(device_id, secret) -> bool``; it may be slow (argon2, a database query), so
        it runs in a worker thread. The store's ``verify_device_secret`` remembers successful
        verifications, so a reconnecting device does not pay argon2 again, and it checks on
        every connect that the device is still active and the secret not rotated.
    """

    def __init__(self, verify: Callable[[str, str], bool]) -> None:
        self._verify = verify

    async def authenticate(self, username: str | None, password: bytes | None) -> bool:
        """Verify ``username`` (device id) and ``password`` (device secret)."""
        if not username or password is None:
            return False
        try:
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return await asyncio.to_thread(self._verify, username, secret)

    def may_publish(self, username: str | None, topic: str) -> bool:
        """Allow only ``iomt/devices/{username}/...``."""
        return username is not None and topic.startswith(f"{DEVICE_TOPIC_PREFIX}{username}/")

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        """Allow only filters inside the device's own subtree."""
        return username is not None and topic_filter.startswith(f"{DEVICE_TOPIC_PREFIX}{username}/")


class OpenAccessPolicy:
    """Anyone may do anything. For benchmarks of the raw broker and local tests only."""

    async def authenticate(self, username: str | None, password: bytes | None) -> bool:
        """Accept every client."""
        return True

    def may_publish(self, username: str | None, topic: str) -> bool:
        """Accept every topic."""
        return True

    def may_subscribe(self, username: str | None, topic_filter: str) -> bool:
        """Accept every filter."""
        return True


@dataclass(frozen=True, slots=True)
class RefusedPublish:
    """A PUBLISH the policy refused (handed to ``on_refused`` for the dead-letter table)."""

    username: str | None
    client_id: str
    topic: str
    payload: bytes
    reason: str


#: ``handler(connection, device_id, payload, packet_id_or_None)``: takes a readings batch.
#: For QoS 1 it must eventually call ``connection.ack(packet_id)`` (after the commit).
PublishHandler = Callable[["Connection", str, bytes, "int | None"], None]


class Connection(asyncio.Protocol):
    """One client connection (one asyncio protocol instance per TCP connection)."""

    def __init__(self, broker: MqttBroker) -> None:
        self.broker = broker
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.connected = False  # CONNECT accepted
        self.closed = False
        self.client_id = ""
        self.username: str | None = None
        self.keepalive = 0
        self.last_seen = time.monotonic()
        self.subscriptions: set[str] = set()
        self._out = bytearray()
        self._flush_scheduled = False
        self._connecting = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        # uvloop's transports are not asyncio.Transport subclasses, but offer the same API.
        self.transport = cast(asyncio.Transport, transport)
        self.broker._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; pending acks for it are dropped (the client resends)."""
        self.closed = True
        self.broker._forget(self)

    def data_received(self, data: bytes) -> None:
        """Parse every complete packet in the buffer."""
        self.last_seen = time.monotonic()
        buf = self.buffer
        buf += data
        start = 0
        try:
            while not self.closed and (self.connected or not self._connecting):
                found = codec.split_packet(buf, start)
                if found is None:
                    break
                first, body_start, body_end = found
                self._dispatch(first, buf, body_start, body_end)
                start = body_end
        except (codec.ProtocolError, UnicodeDecodeError) as exc:
            log.warning("MQTT protocol error from %s: %s", self.client_id or "?", exc)
            self.close()
            return
        if start:
            del buf[:start]

    # -- output -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queue bytes; they are written together at the end of this loop iteration."""
        if self.closed:
            return
        self._out += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(bytes(self._out))
        self._out.clear()

    def ack(self, packet_id: int) -> None:
        """Send the PUBACK for ``packet_id`` (no-op if the connection is gone)."""
        self.send(codec.encode_puback(packet_id))

    def close(self) -> None:
        """Flush what is queued and close the connection."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.broker._forget(self)

    # -- packets ------------------------------------------------------------------------------
    def _dispatch(self, first: int, buf: bytearray, start: int, end: int) -> None:
        ptype = first >> 4
        if ptype == codec.PUBLISH:
            if not self.connected:
                raise codec.ProtocolError("PUBLISH before CONNECT")
            topic, packet_id, payload, qos = codec.decode_publish(first, buf, start, end)
            self.broker._on_publish(self, topic, packet_id, payload, qos, bool(first & 0x01))
        elif ptype == codec.CONNECT:
            if self.connected or self._connecting:
                raise codec.ProtocolError("second CONNECT")
            self._connecting = True
            packet = codec.decode_connect(bytes(buf[start:end]))
            if self.transport is not None:
                self.transport.pause_reading()  # nothing else until the CONNACK
            task = asyncio.get_running_loop().create_task(self.broker._on_connect(self, packet))
            self.broker._tasks.add(task)
            task.add_done_callback(self.broker._tasks.discard)
        elif ptype == codec.PINGREQ:
            self.send(codec.PINGRESP_BYTES)
        elif ptype == codec.SUBSCRIBE:
            self._require_connected()
            packet_id, filters = codec.decode_subscribe(bytes(buf[start:end]))
            self.broker._on_subscribe(self, packet_id, filters)
        elif ptype == codec.UNSUBSCRIBE:
            self._require_connected()
            packet_id, names = codec.decode_unsubscribe(bytes(buf[start:end]))
            for name in names:
                self.subscriptions.discard(name)
            self.send(codec.encode_unsuback(packet_id))
        elif ptype == codec.PUBACK:
            pass  # we deliver QoS 0 only, but tolerate stray acks
        elif ptype == codec.DISCONNECT:
            self.close()
        else:
            raise codec.ProtocolError(f"unsupported packet type {ptype}")

    def _require_connected(self) -> None:
        if not self.connected:
            raise codec.ProtocolError("packet before CONNECT")


class MqttBroker:
    """The embedded broker.

    Parameters
    ----------
    policy
        Authentication and ACL (:class:`DeviceAccessPolicy` in the service).
    handler
        Takes each reading batch published on ``iomt/devices/{id}/readings`` and acks QoS 1
        messages after the commit. Without a handler the broker acks QoS 1 at once (plain
        broker, used for the raw-rate benchmark).
    on_refused
        Called with every PUBLISH the policy refused (e.g. to write a dead letter).
    host, port
        Where to listen; port 0 picks a free port (see :attr:`port` after :meth:`start`).
    """

    def __init__(
        self,
        policy: AccessPolicy,
        handler: PublishHandler | None = None,
        *,
        on_refused: Callable[[RefusedPublish], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.policy = policy
        self.handler = handler
        self.on_refused = on_refused
        self.host = host
        self._requested_port = port
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._by_client_id: dict[str, Connection] = {}
        self._subscribers: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._keepalive_task: asyncio.Task[None] | None = None
        self.paused = False
        self.stats = {
            "connects": 0,
            "refused_connects": 0,
            "publishes": 0,
            "refused_publishes": 0,
            "pauses": 0,
        }

    async def start(self) -> None:
        """Start listening."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), self.host, self._requested_port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._keepalive_task = loop.create_task(self._keepalive_loop())
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    @property
    def connection_count(self) -> int:
        """Number of open client connections."""
        return len(self._connections)

    def pause(self) -> None:
        """Stop reading from every client (back-pressure while the store catches up)."""
        if self.paused:
            return
        self.paused = True
        self.stats["pauses"] += 1
        for conn in self._connections:
            if conn.connected and conn.transport is not None and not conn.closed:
                conn.transport.pause_reading()

    def resume(self) -> None:
        """Read from every client again."""
        if not self.paused:
            return
        self.paused = False
        for conn in self._connections:
            if conn.connected and conn.transport is not None and not conn.closed:
                conn.transport.resume_reading()

    # -- callbacks from connections ---------------------------------------------------------
    async def _on_connect(self, conn: Connection, packet: codec.Connect) -> None:
        if packet.protocol_name not in ("MQTT", "MQIsdp") or packet.protocol_level not in (3, 4):
            conn.send(codec.encode_connack(False, codec.REFUSED_PROTOCOL))
            conn.close()
            return
        client_id = packet.client_id or f"auto-{id(conn):x}"
        if not packet.client_id and not packet.clean_session:
            conn.send(codec.encode_connack(False, codec.REFUSED_IDENTIFIER))
            conn.close()
            return
        try:
            ok = await self.policy.authenticate(packet.username, packet.password)
        except Exception:  # the store may be down: refuse rather than crash the broker
            log.exception("device authentication failed with an error")
            ok = False
        if conn.closed:
            return
        if not ok:
            self.stats["refused_connects"] += 1
            log.info("MQTT CONNECT refused for user %r", packet.username)
            conn.send(codec.encode_connack(False, codec.REFUSED_BAD_CREDENTIALS))
            conn.close()
            return
        old = self._by_client_id.get(client_id)
        if old is not None and old is not conn:
            old.close()  # session takeover (spec 3.1.4)
        conn.client_id = client_id
        conn.username = packet.username
        conn.keepalive = packet.keepalive
        conn.connected = True
        self._by_client_id[client_id] = conn
        self.stats["connects"] += 1
        conn.send(codec.encode_connack(False, codec.ACCEPTED))
        if conn.transport is not None and not self.paused:
            conn.transport.resume_reading()
        if conn.buffer:
            conn.data_received(b"")  # packets that arrived right behind the CONNECT

    def _on_publish(
        self,
        conn: Connection,
        topic: str,
        packet_id: int | None,
        payload: bytes,
        qos: int,
        retain: bool,
    ) -> None:
        if qos == 2:
            raise codec.ProtocolError("QoS 2 is not supported by the iomt broker")
        self.stats["publishes"] += 1
        if not self.policy.may_publish(conn.username, topic):
            self.stats["refused_publishes"] += 1
            reason = f"ACL: client {conn.username!r} may not publish to {topic!r}"
            log.warning("%s; closing the connection", reason)
            if self.on_refused is not None:
                self.on_refused(
                    RefusedPublish(conn.username, conn.client_id, topic, payload, reason)
                )
            conn.close()
            return
        if self._subscribers:
            self._fan_out(topic, payload)
        device_id = device_of_readings_topic(topic) if self.handler is not None else None
        if device_id is not None and self.handler is not None:
            self.handler(conn, device_id, payload, packet_id)
        elif packet_id is not None:
            conn.ack(packet_id)

    def _fan_out(self, topic: str, payload: bytes) -> None:
        packet: bytes | None = None
        for sub in self._subscribers:
            if any(codec.topic_matches(f, topic) for f in sub.subscriptions):
                if packet is None:
                    packet = codec.encode_publish(topic, payload)
                sub.send(packet)

    def _on_subscribe(
        self, conn: Connection, packet_id: int, filters: list[tuple[str, int]]
    ) -> None:
        codes = []
        for topic_filter, _qos in filters:
            if codec.valid_filter(topic_filter) and self.policy.may_subscribe(
                conn.username, topic_filter
            ):
                conn.subscriptions.add(topic_filter)
                codes.append(0)  # granted QoS 0
            else:
                codes.append(0x80)
        if conn.subscriptions:
            self._subscribers.add(conn)
        conn.send(codec.encode_suback(packet_id, codes))

    def _forget(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self._subscribers.discard(conn)
        if self._by_client_id.get(conn.client_id) is conn:
            del self._by_client_id[conn.client_id]

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self._connections):
                if (
                    conn.connected
                    and conn.keepalive
                    and now - conn.last_seen > 1.5 * conn.keepalive
                ):
                    log.info("MQTT client %s missed its keep-alive; closing", conn.client_id)
                    conn.close()
