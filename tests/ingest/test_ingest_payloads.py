"""Payload validation: per-reading decisions, whole-message refusals, units and times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from iomt.domain.vitals import VitalKind
from iomt.errors import ValidationError
from iomt.ingest import mqtt_codec as codec
from iomt.ingest.payloads import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH, parse_batch

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _body(*readings: dict[str, object]) -> bytes:
    return json.dumps({"readings": list(readings)}).encode()


def test_good_batch_in_canonical_units_with_epoch_and_iso_times() -> None:
    parsed = parse_batch(
        "w1",
        _body(
            {
                "seq": 1,
                "kind": "temperature",
                "value": 37.0,
                "unit": "Cel",
                "time": NOW.timestamp(),
                "lat": 1.5,
                "lon": 2.5,
            },
            {"seq": 1, "kind": "spo2", "value": 96, "time": "2026-05-01T11:59:00"},
            {
                "seq": 2,
                "kind": "proximity",
                "value": 2,
                "unit": "m",
                "time": "2026-05-01T13:59:00+02:00",
            },
        ),
        now=NOW,
    )
    assert not parsed.rejected
    temp, spo2, prox = parsed.readings
    assert temp.kind is VitalKind.TEMPERATURE and temp.value == pytest.approx(98.6)
    assert (temp.latitude, temp.longitude) == (1.5, 2.5)
    assert spo2.time == NOW - timedelta(minutes=1)  # no zone: UTC
    assert prox.time == NOW - timedelta(minutes=1) and prox.value == pytest.approx(6.5617, 1e-3)
    assert all(r.device_id == "w1" for r in parsed.readings)


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        ({"seq": 1, "kind": "hr", "value": 70}, "unknown kind 'hr'"),
        ({"seq": 1, "kind": "spo2", "value": 101}, "outside the plausible range"),
        ({"seq": 1, "kind": "spo2", "value": 97, "unit": "ppm"}, "unit 'ppm' is not accepted"),
        ({"seq": -1, "kind": "spo2", "value": 97}, "readings.1.seq"),
        ({"seq": 1, "kind": "spo2", "value": "NaN"}, "readings.1.value"),
        ({"seq": 1, "kind": "spo2", "value": 97, "lat": 91, "lon": 0}, "readings.1.lat"),
        ({"seq": 1, "kind": "spo2", "value": 97, "lat": 50}, "lat and lon must be given together"),
        ({"seq": 1, "kind": "spo2", "value": 97, "colour": "red"}, "readings.1.colour"),
        ({"seq": 0, "kind": "spo2", "value": 97}, "repeated in the same batch"),
    ],
)
def test_a_bad_reading_is_rejected_with_its_reason_and_the_rest_kept(
    reading: dict[str, object], reason: str
) -> None:
    good = {"seq": 0, "kind": "spo2", "value": 97, "time": NOW.isoformat()}
    parsed = parse_batch("w1", _body(good, {"time": NOW.isoformat(), **reading}), now=NOW)
    assert len(parsed.readings) == 1
    (rejected,) = parsed.rejected
    assert rejected.index == 1
    assert reason in rejected.reason


def test_times_outside_the_accepted_range_are_rejected() -> None:
    future = {
        "seq": 1,
        "kind": "spo2",
        "value": 97,
        "time": (NOW + timedelta(minutes=5)).isoformat(),
    }
    old = {"seq": 2, "kind": "spo2", "value": 97, "time": (NOW - timedelta(days=40)).timestamp()}
    parsed = parse_batch("w1", _body(future, old), now=NOW)
    assert not parsed.readings
    assert "ahead of the receiver clock" in parsed.rejected[0].reason
    assert "older than 30 days" in parsed.rejected[1].reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"readings": []}', "not a readings batch"),
        (b'{"items": [1]}', "not a readings batch"),
        (b"[1, 2]", "not a readings batch"),
        (b"x" * (MAX_PAYLOAD_BYTES + 1), "exceeds the limit"),
        (
            json.dumps({"readings": [{}] * (MAX_READINGS_PER_BATCH + 1)}).encode(),
            "not a readings batch",
        ),
    ],
)
def test_unusable_messages_are_refused_as_a_whole(payload: bytes, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        parse_batch("w1", payload, now=NOW)


def test_mqtt_codec_lengths_topics_and_packets() -> None:
    for n in (0, 127, 128, 16383, 16384, codec.MAX_PACKET_BYTES):
        encoded = codec.encode_length(n)
        buf = bytearray(b"\x30" + encoded + b"x" * n)
        assert codec.split_packet(buf, 0) == (0x30, 1 + len(encoded), 1 + len(encoded) + n)
    with pytest.raises(codec.ProtocolError, match="exceeds"):
        codec.split_packet(bytearray(b"\x30" + codec.encode_length(2_097_152)), 0)
    assert codec.split_packet(bytearray(b"\x30\x05ab"), 0) is None  # incomplete
    packet = bytearray(codec.encode_publish("a/b", b"payload", qos=1, packet_id=7))
    first, start, end = codec.split_packet(packet, 0) or (0, 0, 0)
    assert codec.decode_publish(first, packet, start, end) == ("a/b", 7, b"payload", 1)
    assert codec.topic_matches("iomt/devices/+/readings", "iomt/devices/d1/readings")
    assert not codec.topic_matches("iomt/devices/+/readings", "iomt/devices/d1/x/readings")
    assert codec.topic_matches("iomt/#", "iomt/devices/d1/readings")
    assert codec.topic_matches("#", "anything")
    assert not codec.valid_filter("iomt/#/x") and not codec.valid_filter("io+mt")
