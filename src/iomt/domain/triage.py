"""Triage levels shared by the fuzzy engine, NEWS2, alerts and the dashboard."""

from __future__ import annotations

from enum import IntEnum


class TriageLevel(IntEnum):
    """Final verdict of a triage window, ordered by urgency."""

    NORMAL = 0
    MILD = 1
    SERIOUS = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """Lower-case name, as stored and shown."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> TriageLevel:
        """Parse ``"normal" | "mild" | "serious" | "critical"``."""
        return cls[label.upper()]
