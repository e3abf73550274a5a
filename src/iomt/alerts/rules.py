"""Alert rules: which verdicts and findings become alerts for the patient's clinicians.

- A window verdict of ``serious`` or ``critical`` raises an alert of that severity.
- A verdict two or more levels above the previous window's is flagged as a rapid
  deterioration (a jump of two levels always lands on serious or critical, so it adds
  emphasis, not a second alert).
- A ``critical`` verdict is an emergency: the alert carries the patient's last known location
  (the FLCD papers dispatch an ambulance to it).
- A positive image finding raises a ``serious`` alert.

The rules are pure: they return :class:`AlertDraft` values; :mod:`iomt.alerts.dispatch`
stores and delivers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from iomt.domain.analysis import ImageFinding, TriageVerdict
from iomt.domain.triage import TriageLevel


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """An alert to raise (not yet stored)."""

    patient_id: int
    severity: str
    title: str
    body: str
    dedup_key: str
    emergency: bool = False
    location: tuple[float, float] | None = None
    verdict_id: int | None = None
    finding_id: int | None = None


def verdict_alert(
    *,
    patient_id: int,
    verdict_id: int,
    window_start: datetime,
    window_end: datetime,
    verdict: TriageVerdict,
    previous: TriageLevel | None,
    location: tuple[float, float] | None,
) -> AlertDraft | None:
    """Return the alert a window verdict raises, or None."""
    level = verdict.level
    jump = int(level) - int(previous) if previous is not None else 0
    if level < TriageLevel.SERIOUS and jump < 2:
        return None
    emergency = level is TriageLevel.CRITICAL
    title = f"{level.label.capitalize()} triage verdict"
    if jump >= 2 and previous is not None:
        title += f" (rapid deterioration from {previous.label})"
    lines = [
        f"Window {window_start.isoformat(timespec='minutes')} - "
        f"{window_end.isoformat(timespec='minutes')}: {level.label} "
        f"(value {verdict.value:g}, method {verdict.method}).",
    ]
    shown = {k: v for k, v in verdict.aggregates.items() if v is not None}
    if shown:
        lines.append("Aggregates: " + ", ".join(f"{k}={v:g}" for k, v in sorted(shown.items())))
    if verdict.missing:
        lines.append("Missing: " + ", ".join(verdict.missing))
    if emergency:
        if location is not None:
            lines.append(f"EMERGENCY: last known location {location[0]:.6f}, {location[1]:.6f}.")
        else:
            lines.append("EMERGENCY: no location known for this patient.")
    return AlertDraft(
        patient_id=patient_id,
        severity=level.label,
        title=title,
        body="\n".join(lines),
        dedup_key=f"verdict:{patient_id}:{window_start.isoformat()}:{verdict.method}:{level.label}",
        emergency=emergency,
        location=location if emergency else None,
        verdict_id=verdict_id,
    )


def finding_alert(
    *,
    patient_id: int,
    study_id: int,
    finding_id: int,
    finding: ImageFinding,
    location: tuple[float, float] | None = None,
) -> AlertDraft | None:
    """Return the alert a positive image finding raises, or None."""
    if not finding.positive:
        return None
    threshold = f" >= threshold {finding.threshold:g}" if finding.threshold is not None else ""
    return AlertDraft(
        patient_id=patient_id,
        severity="serious",
        title=f"Positive imaging finding: {finding.label}",
        body=(
            f"Study {study_id}: {finding.label} with probability {finding.probability:.3f}"
            f"{threshold} (model {finding.model_id} {finding.model_version})."
        ),
        dedup_key=f"finding:{finding_id}",
        location=location,
        finding_id=finding_id,
    )
