"""The built-in threshold triage rule, used until the FLCD fuzzy engine is plugged in.

It exists so that the spine (readings -> windows -> verdicts -> alerts) runs end to end
without the ``iomt.triage`` engine. It is deliberately simple and NOT a clinical method:
each vital's window median is compared with fixed thresholds and the worst level wins.
The real step (``iomt.triage``) implements the same :class:`~iomt.domain.analysis.TriageStep`
protocol and replaces it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from iomt.domain.analysis import TriageVerdict, WindowVitals
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import VitalKind

#: (kind, test, level): the first matching row per kind gives that kind's level.
_RULES: tuple[tuple[VitalKind, str, float, TriageLevel], ...] = (
    (VitalKind.SPO2, "<", 88.0, TriageLevel.CRITICAL),
    (VitalKind.SPO2, "<", 92.0, TriageLevel.SERIOUS),
    (VitalKind.SPO2, "<", 95.0, TriageLevel.MILD),
    (VitalKind.TEMPERATURE, ">=", 104.0, TriageLevel.CRITICAL),
    (VitalKind.TEMPERATURE, ">=", 102.2, TriageLevel.SERIOUS),
    (VitalKind.TEMPERATURE, ">=", 100.4, TriageLevel.MILD),
    (VitalKind.HEART_RATE, ">=", 140.0, TriageLevel.CRITICAL),
    (VitalKind.HEART_RATE, ">=", 120.0, TriageLevel.SERIOUS),
    (VitalKind.HEART_RATE, ">=", 100.0, TriageLevel.MILD),
    (VitalKind.RESP_RATE, ">=", 30.0, TriageLevel.CRITICAL),
    (VitalKind.RESP_RATE, ">=", 25.0, TriageLevel.SERIOUS),
    (VitalKind.RESP_RATE, ">=", 21.0, TriageLevel.MILD),
)

#: The vitals this rule looks at (a window without them is reported as missing).
CORE_KINDS = (VitalKind.TEMPERATURE, VitalKind.SPO2, VitalKind.HEART_RATE, VitalKind.RESP_RATE)


class ThresholdTriage:
    """Built-in placeholder :class:`~iomt.domain.analysis.TriageStep` (window median vs thresholds).

    ``value`` is the number of vitals outside their normal band plus the level, so that a
    worse window has a larger value; ``explanation`` names the level of each vital.
    """

    name = "builtin-threshold"
    version = "v1"

    def assess(self, windows: Sequence[WindowVitals]) -> list[TriageVerdict]:
        """Return one verdict per window, in order."""
        return [self._assess_one(window) for window in windows]

    def _assess_one(self, window: WindowVitals) -> TriageVerdict:
        aggregates: dict[str, float | None] = {}
        per_kind: dict[str, str] = {}
        missing: list[str] = []
        level = TriageLevel.NORMAL
        abnormal = 0
        for kind in CORE_KINDS:
            values = window.values.get(kind) or ()
            if not values:
                aggregates[kind.value] = None
                missing.append(kind.value)
                continue
            median = float(statistics.median(values))
            aggregates[kind.value] = median
            kind_level = _level_of(kind, median)
            per_kind[kind.value] = kind_level.label
            if kind_level > TriageLevel.NORMAL:
                abnormal += 1
            level = max(level, kind_level)
        return TriageVerdict(
            level=level,
            value=float(level) + abnormal,
            method=f"{self.name}/{self.version}",
            aggregates=aggregates,
            missing=missing,
            explanation={"levels": per_kind, "rule": "window median against fixed thresholds"},
        )


def _level_of(kind: VitalKind, value: float) -> TriageLevel:
    for rule_kind, test, bound, level in _RULES:
        if rule_kind is not kind:
            continue
        if (test == "<" and value < bound) or (test == ">=" and value >= bound):
            return level
    return TriageLevel.NORMAL
