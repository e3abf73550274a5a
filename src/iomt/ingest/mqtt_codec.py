"""MQTT 3.1.1 packet encoding and decoding: only the packets the embedded broker needs.

Reference: OASIS MQTT Version 3.1.1 (2014), section 2 (fixed header, remaining length) and
section 3 (control packets). Decoding works on a ``bytearray`` receive buffer without copying
more than the topic and payload of each PUBLISH.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Control packet types (high nibble of the first byte).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

# CONNACK return codes.
ACCEPTED = 0
REFUSED_PROTOCOL = 1
REFUSED_IDENTIFIER = 2
REFUSED_UNAVAILABLE = 3
REFUSED_BAD_CREDENTIALS = 4
REFUSED_NOT_AUTHORIZED = 5

#: Largest packet the broker accepts (remaining length), larger ones close the connection.
MAX_PACKET_BYTES = 1024 * 1024

PINGRESP_BYTES = bytes((PINGRESP << 4, 0))
_PUBACK_HEAD = bytes((PUBACK << 4, 2))
_U16 = struct.Struct("!H")


class ProtocolError(Exception):
    """The peer sent something that is not valid MQTT 3.1.1 (the connection is closed)."""


@dataclass(frozen=True, slots=True)
class Connect:
    """A decoded CONNECT packet."""

    protocol_name: str
    protocol_level: int
    clean_session: bool
    keepalive: int
    client_id: str
    username: str | None
    password: bytes | None
    will_topic: str | None
    will_message: bytes | None


def split_packet(buffer: bytearray, start: int) -> tuple[int, int, int] | None:
    """Find the packet starting at ``start`` in ``buffer``.

    Returns
    -------
    tuple or None
        ``(first_byte, body_start, body_end)`` if the whole packet is in the buffer, else None.

    Raises
    ------
    ProtocolError
        If the remaining-length field is malformed or the packet is too large.
    """
    size = len(buffer)
    if size - start < 2:
        return None
    first = buffer[start]
    multiplier = 1
    length = 0
    pos = start + 1
    while True:
        if pos >= size:
            return None
        byte = buffer[pos]
        pos += 1
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            break
        multiplier *= 128
        if multiplier > 128**3:
            raise ProtocolError("malformed remaining length")
    if length > MAX_PACKET_BYTES:
        raise ProtocolError(f"packet of {length} bytes exceeds {MAX_PACKET_BYTES}")
    end = pos + length
    if end > size:
        return None
    return first, pos, end


def encode_length(length: int) -> bytes:
    """Encode the variable-length 'remaining length' field."""
    out = bytearray()
    while True:
        byte = length % 128
        length //= 128
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_str(data: bytes | bytearray | memoryview, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise ProtocolError("truncated string")
    (n,) = _U16.unpack_from(data, pos)
    end = pos + 2 + n
    if end > len(data):
        raise ProtocolError("truncated string")
    return bytes(data[pos + 2 : end]), end


def decode_connect(body: bytes) -> Connect:
    """Decode the variable header and payload of a CONNECT packet."""
    name, pos = _read_str(body, 0)
    if pos + 4 > len(body):
        raise ProtocolError("truncated CONNECT")
    level = body[pos]
    flags = body[pos + 1]
    (keepalive,) = _U16.unpack_from(body, pos + 2)
    pos += 4
    if flags & 0x01:
        raise ProtocolError("reserved CONNECT flag set")
    client_id, pos = _read_str(body, pos)
    will_topic = will_message = None
    if flags & 0x04:
        raw_topic, pos = _read_str(body, pos)
        will_topic = raw_topic.decode("utf-8", "replace")
        will_message, pos = _read_str(body, pos)
    username: str | None = None
    password: bytes | None = None
    if flags & 0x80:
        raw_user, pos = _read_str(body, pos)
        username = raw_user.decode("utf-8", "replace")
    if flags & 0x40:
        password, pos = _read_str(body, pos)
    return Connect(
        protocol_name=name.decode("utf-8", "replace"),
        protocol_level=level,
        clean_session=bool(flags & 0x02),
        keepalive=keepalive,
        client_id=client_id.decode("utf-8", "replace"),
        username=username,
        password=password,
        will_topic=will_topic,
        will_message=will_message,
    )


def decode_publish(
    first: int, buffer: bytearray, start: int, end: int
) -> tuple[str, int | None, bytes, int]:
    """Decode a PUBLISH packet body ``buffer[start:end]``.

    Returns
    -------
    tuple
        ``(topic, packet_id or None for QoS 0, payload, qos)``.
    """
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if start + 2 > end:
        raise ProtocolError("truncated PUBLISH")
    (n,) = _U16.unpack_from(buffer, start)
    pos = start + 2 + n
    if pos > end:
        raise ProtocolError("truncated PUBLISH topic")
    topic = buffer[start + 2 : pos].decode("utf-8")
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise ProtocolError("truncated PUBLISH packet id")
        (packet_id,) = _U16.unpack_from(buffer, pos)
        pos += 2
    return topic, packet_id, bytes(buffer[pos:end]), qos


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """Decode SUBSCRIBE: ``(packet_id, [(topic_filter, requested_qos), ...])``."""
    if len(body) < 2:
        raise ProtocolError("truncated SUBSCRIBE")
    (packet_id,) = _U16.unpack_from(body, 0)
    pos = 2
    filters: list[tuple[str, int]] = []
    while pos < len(body):
        raw, pos = _read_str(body, pos)
        if pos >= len(body):
            raise ProtocolError("SUBSCRIBE filter without QoS")
        filters.append((raw.decode("utf-8"), body[pos] & 0x03))
        pos += 1
    if not filters:
        raise ProtocolError("SUBSCRIBE without topic filters")
    return packet_id, filters


def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    """Decode UNSUBSCRIBE: ``(packet_id, [topic_filter, ...])``."""
    if len(body) < 2:
        raise ProtocolError("truncated UNSUBSCRIBE")
    (packet_id,) = _U16.unpack_from(body, 0)
    pos = 2
    filters: list[str] = []
    while pos < len(body):
        raw, pos = _read_str(body, pos)
        filters.append(raw.decode("utf-8"))
    return packet_id, filters


def encode_connack(session_present: bool, code: int) -> bytes:
    """Encode CONNACK."""
    return bytes((CONNACK << 4, 2, 1 if session_present and code == ACCEPTED else 0, code))


def encode_puback(packet_id: int) -> bytes:
    """Encode PUBACK for ``packet_id``."""
    return _PUBACK_HEAD + _U16.pack(packet_id)


def encode_suback(packet_id: int, codes: list[int]) -> bytes:
    """Encode SUBACK with one return code (granted QoS or 0x80 failure) per filter."""
    body = _U16.pack(packet_id) + bytes(codes)
    return bytes((SUBACK << 4,)) + encode_length(len(body)) + body


def encode_unsuback(packet_id: int) -> bytes:
    """Encode UNSUBACK."""
    return bytes((UNSUBACK << 4, 2)) + _U16.pack(packet_id)


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None) -> bytes:
    """Encode PUBLISH (QoS 0 unless ``packet_id`` is given)."""
    raw_topic = topic.encode("utf-8")
    head = _U16.pack(len(raw_topic)) + raw_topic
    if qos:
        if packet_id is None:
            raise ValueError("QoS > 0 needs a packet id")
        head += _U16.pack(packet_id)
    length = len(head) + len(payload)
    return bytes(((PUBLISH << 4) | (qos << 1),)) + encode_length(length) + head + payload


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Match ``topic`` against an MQTT filter with ``+`` and ``#`` wildcards."""
    if topic_filter == topic:
        return True
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


def valid_filter(topic_filter: str) -> bool:
    """Check the wildcard rules of a topic filter (``#`` last and alone in its level)."""
    if not topic_filter:
        return False
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True
