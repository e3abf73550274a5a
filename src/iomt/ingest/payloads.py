"""Device payload schemas and their validation into :class:`~iomt.domain.vitals.Reading`.

A device sends its readings as one JSON batch (over MQTT on
``iomt/devices/{device_id}/readings`` or over HTTP)::

    {"readings": [{"seq": 17, "kind": "spo2", "value": 97, "unit": "%",
                   "time": "2026-01-01T10:00:00Z", "lat": 51.5, "lon": -0.12}, ...]}

``time`` is ISO-8601 (a time without zone is taken as UTC) or seconds since the epoch;
``unit`` may be left out (canonical unit); ``lat``/``lon`` are optional.

Policy (decided per reading, not per message): a message that cannot be read as a batch at
all (not JSON, wrong shape, too large, too many readings) is rejected as a whole; inside a
well-formed batch each reading is checked on its own, the good ones are stored and each bad
one is dead-lettered with its index and a precise reason. Nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from iomt.domain.vitals import (
    VITAL_SPECS,
    Reading,
    VitalKind,
    accepted_units,
    check_plausible,
    to_canonical,
)
from iomt.errors import ValidationError

#: Largest accepted message body (bytes).
MAX_PAYLOAD_BYTES = 512 * 1024
#: Most readings accepted in one batch.
MAX_READINGS_PER_BATCH = 5000
#: How far a reading's time may lie ahead of the receiver's clock (device clock skew).
MAX_FUTURE_SKEW = timedelta(minutes=2)
#: How old a reading may be (devices buffer while offline, but not forever).
MAX_AGE = timedelta(days=30)
#: Largest accepted sequence number (fits a signed 64-bit column).
MAX_SEQ = 2**63 - 1

_KINDS = {kind.value: kind for kind in VitalKind}


class ReadingIn(BaseModel):
    """One reading as a device sends it (before unit conversion and plausibility checks)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seq: int = Field(ge=0, le=MAX_SEQ)
    kind: str = Field(max_length=32)
    value: float
    unit: str | None = Field(default=None, max_length=32)
    #: Seconds since the epoch (fast path) or an ISO-8601 time.
    time: float | datetime
    lat: float | None = Field(default=None, ge=-90.0, le=90.0)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0)


class BatchIn(BaseModel):
    """A batch of readings from one device (the fast path parses the whole batch at once)."""

    model_config = ConfigDict(extra="forbid")

    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


class _LooseBatch(BaseModel):
    """Envelope only: used when the strict batch fails, to check readings one by one."""

    model_config = ConfigDict(extra="forbid")

    readings: list[Any] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


@dataclass(frozen=True, slots=True)
class RejectedReading:
    """A reading of an otherwise well-formed batch that failed validation."""

    index: int
    reason: str
    raw: Any


@dataclass(slots=True)
class ParsedBatch:
    """Outcome of validating one message: the good readings and the rejected ones."""

    device_id: str
    readings: list[Reading] = field(default_factory=list)
    rejected: list[RejectedReading] = field(default_factory=list)


def _pydantic_reason(error: pydantic.ValidationError, prefix: str = "") -> str:
    """Turn a pydantic error into one short, precise line (first three problems)."""
    parts = []
    for item in error.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        parts.append(f"{prefix}{loc}: {item['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class _Bounds:
    """Accepted time range of one batch, as epoch seconds and as datetimes."""

    low: float
    high: float
    now: datetime

    @classmethod
    def around(cls, now: datetime) -> _Bounds:
        return cls((now - MAX_AGE).timestamp(), (now + MAX_FUTURE_SKEW).timestamp(), now)


def _check_time(stamp: float, bounds: _Bounds) -> None:
    if stamp > bounds.high:
        moment = datetime.fromtimestamp(stamp, UTC).isoformat()
        raise ValidationError(
            f"time {moment} is more than {MAX_FUTURE_SKEW} ahead of the "
            f"receiver clock {bounds.now.isoformat(timespec='seconds')}"
        )
    if stamp < bounds.low:
        moment = datetime.fromtimestamp(stamp, UTC).isoformat()
        raise ValidationError(f"time {moment} is older than {MAX_AGE.days} days")


def _unit_table() -> dict[tuple[str, str | None], tuple[VitalKind, float, float, float, float]]:
    """(kind, unit) -> (kind, scale, offset, low, high), derived from the domain's public API.

    Lets the hot path convert and range-check a reading with one dict lookup; anything not in
    the table (or out of range) goes through ``to_canonical``/``check_plausible`` for the
    precise error.
    """
    table = {}
    for kind in VitalKind:
        spec = VITAL_SPECS[kind]
        for unit in (None, *accepted_units(kind)):
            offset = to_canonical(kind, 0.0, unit)
            scale = to_canonical(kind, 1.0, unit) - offset
            table[(kind.value, unit)] = (kind, scale, offset, float(spec.low), float(spec.high))
    return table


_UNITS = _unit_table()


def _to_reading(
    device_id: str, item: ReadingIn, bounds: _Bounds, seen: set[tuple[int, str]]
) -> Reading:
    """Check one parsed reading and convert it to canonical units.

    Raises
    ------
    ValidationError
        With the reason (unknown kind, unit, implausible value, time out of range).
    """
    fast = _UNITS.get((item.kind, item.unit))
    if fast is None:
        kind = _KINDS.get(item.kind)
        if kind is None:
            raise ValidationError(f"unknown kind {item.kind!r}; use one of {sorted(_KINDS)}")
        to_canonical(kind, item.value, item.unit)  # raises with the accepted units
        raise AssertionError("unreachable")  # pragma: no cover
    kind, scale, offset, low, high = fast
    value = item.value * scale + offset
    if not low <= value <= high:
        check_plausible(kind, value)  # raises with the range
    raw_time = item.time
    if isinstance(raw_time, datetime):
        if raw_time.tzinfo is None:
            raw_time = raw_time.replace(tzinfo=UTC)
        stamp = raw_time.timestamp()
    else:
        stamp = raw_time
    if not bounds.low <= stamp <= bounds.high:
        _check_time(stamp, bounds)
    if (item.lat is None) != (item.lon is None):
        raise ValidationError("lat and lon must be given together")
    key = (item.seq, item.kind)
    if key in seen:
        raise ValidationError(f"seq {item.seq} kind {item.kind} repeated in the same batch")
    seen.add(key)
    return Reading(
        device_id, item.seq, kind, value, datetime.fromtimestamp(stamp, UTC), item.lat, item.lon
    )


def parse_batch(
    device_id: str, payload: bytes | str, *, now: datetime | None = None
) -> ParsedBatch:
    """Validate one message body from ``device_id``.

    Parameters
    ----------
    device_id
        The authenticated device the message came from (never taken from the payload).
    payload
        The raw JSON body.
    now
        The receiver's clock (default: current UTC time).

    Returns
    -------
    ParsedBatch
        The valid readings (canonical units) and the rejected ones with reasons.

    Raises
    ------
    ValidationError
        If the message as a whole is unusable (too large, not JSON, wrong shape).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"message of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes"
        )
    bounds = _Bounds.around(now or datetime.now(UTC))
    result = ParsedBatch(device_id=device_id)
    try:
        batch = BatchIn.model_validate_json(payload)
    except pydantic.ValidationError:
        return _parse_slow(device_id, payload, bounds)
    seen: set[tuple[int, str]] = set()
    for index, item in enumerate(batch.readings):
        try:
            result.readings.append(_to_reading(device_id, item, bounds, seen))
        except ValidationError as exc:
            result.rejected.append(
                RejectedReading(
                    index, f"readings.{index}: {exc.reason}", item.model_dump(mode="json")
                )
            )
    return result


def _parse_slow(device_id: str, payload: bytes | str, bounds: _Bounds) -> ParsedBatch:
    """Reading-by-reading validation, used only when the strict batch parse fails."""
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"message is not valid JSON: {exc}") from None
    try:
        envelope = _LooseBatch.model_validate(document)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"message is not a readings batch: {_pydantic_reason(exc)}") from None
    result = ParsedBatch(device_id=device_id)
    seen: set[tuple[int, str]] = set()
    for index, raw in enumerate(envelope.readings):
        try:
            item = ReadingIn.model_validate(raw)
            result.readings.append(_to_reading(device_id, item, bounds, seen))
        except pydantic.ValidationError as exc:
            reason = _pydantic_reason(exc, prefix=f"readings.{index}.")
            result.rejected.append(RejectedReading(index, reason, raw))
        except ValidationError as exc:
            result.rejected.append(RejectedReading(index, f"readings.{index}: {exc.reason}", raw))
    return result


def reading_to_wire(reading: Reading) -> dict[str, Any]:
    """Encode a reading the way devices send it (used by the simulator and benchmarks)."""
    body: dict[str, Any] = {
        "seq": reading.seq,
        "kind": reading.kind.value,
        "value": reading.value,
        "time": reading.time.timestamp(),
    }
    if reading.latitude is not None and reading.longitude is not None:
        body["lat"] = reading.latitude
        body["lon"] = reading.longitude
    return body


def encode_batch(readings: Sequence[Reading]) -> bytes:
    """Encode readings as one JSON batch body."""
    body = {"readings": [reading_to_wire(r) for r in readings]}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
