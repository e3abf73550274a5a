"""Vital signs: kinds, canonical units, unit conversion and physiological plausibility.

Every reading is stored in the canonical unit of its kind. Devices may send other units
(e.g. temperature in Celsius); :func:`to_canonical` converts and :func:`check_plausible`
rejects values no living patient (or no working sensor) produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from iomt.errors import ValidationError


class VitalKind(StrEnum):
    """What a reading measures."""

    TEMPERATURE = "temperature"
    SPO2 = "spo2"
    HEART_RATE = "heart_rate"
    RESP_RATE = "resp_rate"
    #: Distance to the nearest other person, in feet (proximity sensor).
    PROXIMITY = "proximity"
    SYSTOLIC_BP = "systolic_bp"
    #: ACVPU consciousness, coded 0 = alert, 1 = new confusion, 2 = voice, 3 = pain,
    #: 4 = unresponsive.
    CONSCIOUSNESS = "consciousness"
    #: 1 if the patient is on supplemental oxygen, else 0.
    SUPPLEMENTAL_O2 = "supplemental_o2"


@dataclass(frozen=True, slots=True)
class VitalSpec:
    """Canonical unit, accepted alternative units and plausible range of one vital kind."""

    kind: VitalKind
    unit: str
    ucum: str
    low: float
    high: float
    loinc: str | None


#: Canonical units follow the FLCD paper (temperature in degrees Fahrenheit, distance in feet).
VITAL_SPECS: dict[VitalKind, VitalSpec] = {
    VitalKind.TEMPERATURE: VitalSpec(
        VitalKind.TEMPERATURE, "degF", "[degF]", 77.0, 113.0, "8310-5"
    ),
    VitalKind.SPO2: VitalSpec(VitalKind.SPO2, "%", "%", 50.0, 100.0, "2708-6"),
    VitalKind.HEART_RATE: VitalSpec(VitalKind.HEART_RATE, "/min", "/min", 20.0, 250.0, "8867-4"),
    VitalKind.RESP_RATE: VitalSpec(VitalKind.RESP_RATE, "/min", "/min", 2.0, 70.0, "9279-1"),
    VitalKind.PROXIMITY: VitalSpec(VitalKind.PROXIMITY, "ft", "[ft_i]", 0.0, 1000.0, None),
    VitalKind.SYSTOLIC_BP: VitalSpec(
        VitalKind.SYSTOLIC_BP, "mm[Hg]", "mm[Hg]", 40.0, 300.0, "8480-6"
    ),
    VitalKind.CONSCIOUSNESS: VitalSpec(VitalKind.CONSCIOUSNESS, "code", "{score}", 0, 4, None),
    VitalKind.SUPPLEMENTAL_O2: VitalSpec(
        VitalKind.SUPPLEMENTAL_O2, "bool", "{boolean}", 0, 1, None
    ),
}

#: Alternative unit spellings accepted from devices, mapped to a converter into canonical units.
_CONVERTERS: dict[tuple[VitalKind, str], tuple[float, float]] = {
    # (kind, unit) -> (scale, offset): canonical = value * scale + offset
    (VitalKind.TEMPERATURE, "degF"): (1.0, 0.0),
    (VitalKind.TEMPERATURE, "[degF]"): (1.0, 0.0),
    (VitalKind.TEMPERATURE, "F"): (1.0, 0.0),
    (VitalKind.TEMPERATURE, "Cel"): (1.8, 32.0),
    (VitalKind.TEMPERATURE, "degC"): (1.8, 32.0),
    (VitalKind.TEMPERATURE, "C"): (1.8, 32.0),
    (VitalKind.SPO2, "%"): (1.0, 0.0),
    (VitalKind.HEART_RATE, "/min"): (1.0, 0.0),
    (VitalKind.HEART_RATE, "bpm"): (1.0, 0.0),
    (VitalKind.RESP_RATE, "/min"): (1.0, 0.0),
    (VitalKind.RESP_RATE, "breaths/min"): (1.0, 0.0),
    (VitalKind.PROXIMITY, "ft"): (1.0, 0.0),
    (VitalKind.PROXIMITY, "[ft_i]"): (1.0, 0.0),
    (VitalKind.PROXIMITY, "m"): (1.0 / 0.3048, 0.0),
    (VitalKind.SYSTOLIC_BP, "mm[Hg]"): (1.0, 0.0),
    (VitalKind.SYSTOLIC_BP, "mmHg"): (1.0, 0.0),
    (VitalKind.CONSCIOUSNESS, "code"): (1.0, 0.0),
    (VitalKind.SUPPLEMENTAL_O2, "bool"): (1.0, 0.0),
}


def accepted_units(kind: VitalKind) -> list[str]:
    """Return the unit spellings accepted for ``kind``."""
    return [unit for (k, unit) in _CONVERTERS if k is kind]


def to_canonical(kind: VitalKind, value: float, unit: str | None) -> float:
    """Convert ``value`` in ``unit`` to the canonical unit of ``kind``.

    Raises
    ------
    ValidationError
        If the unit is not accepted for this kind.
    """
    if unit is None:
        unit = VITAL_SPECS[kind].unit
    try:
        scale, offset = _CONVERTERS[(kind, unit)]
    except KeyError:
        raise ValidationError(
            f"unit {unit!r} is not accepted for {kind.value}; use one of {accepted_units(kind)}"
        ) from None
    return value * scale + offset


def check_plausible(kind: VitalKind, value: float) -> None:
    """Reject values outside the physiological (or sensor) range of ``kind``.

    Raises
    ------
    ValidationError
        With the value, the kind and the accepted range.
    """
    spec = VITAL_SPECS[kind]
    if not (spec.low <= value <= spec.high):
        raise ValidationError(
            f"{kind.value}={value:g} {spec.unit} is outside the plausible range "
            f"[{spec.low:g}, {spec.high:g}]"
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated vital-sign reading in canonical units.

    ``device_id`` and ``seq`` identify it: a device numbers its readings, and a resent
    reading with the same ``(device_id, seq)`` is stored once.
    """

    device_id: str
    seq: int
    kind: VitalKind
    value: float
    time: datetime
    latitude: float | None = None
    longitude: float | None = None
