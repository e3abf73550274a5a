"""Tests of the pure domain values."""

from datetime import UTC, datetime

import pytest

from iomt.domain.analysis import utc_floor
from iomt.domain.imaging import Modality
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import VitalKind, check_plausible, to_canonical
from iomt.errors import ValidationError


def test_celsius_converts_to_fahrenheit() -> None:
    assert to_canonical(VitalKind.TEMPERATURE, 37.0, "Cel") == pytest.approx(98.6)


def test_unknown_unit_names_the_accepted_ones() -> None:
    with pytest.raises(ValidationError, match="use one of"):
        to_canonical(VitalKind.SPO2, 97.0, "ppm")


def test_implausible_value_is_rejected_with_its_range() -> None:
    with pytest.raises(ValidationError, match=r"heart_rate=400 .* \[20, 250\]"):
        check_plausible(VitalKind.HEART_RATE, 400.0)
    check_plausible(VitalKind.HEART_RATE, 72.0)


def test_window_floor_aligns_to_quarter_hours() -> None:
    moment = datetime(2026, 1, 1, 10, 29, 59, tzinfo=UTC)
    assert utc_floor(moment, 15) == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    with pytest.raises(ValueError):
        utc_floor(moment, 7)


def test_levels_and_modalities_parse() -> None:
    assert TriageLevel.from_label("serious") > TriageLevel.MILD
    assert Modality.parse("dx") is Modality.XRAY
