"""When does a patient's triage window close? (pure bookkeeping, no I/O)

Windows are ``settings.triage_window_minutes`` long and aligned with
:func:`iomt.domain.analysis.utc_floor`. A patient's open window closes when

- a reading arrives that lies in a later window (the device's clock moved on; this also makes
  an accelerated simulation close windows in seconds), or
- the window has ended by the wall clock and the patient sent nothing for ``silence_s``
  seconds (the device went silent). The windows after that are then closed one by one as
  they end, with no readings (the triage step reports everything missing), up to
  ``max_silent_windows``; after that the patient is forgotten until it sends again.

Late readings for a window that is already closed are stored but do not re-open it. After a
restart, :meth:`WindowTracker.resume` re-opens the windows the store shows were still open.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from iomt.domain.analysis import utc_floor


class WindowTracker:
    """Tracks each patient's open window and reports the windows that closed.

    Parameters
    ----------
    minutes
        Window length.
    silence_s
        Seconds without new readings after which an ended window is closed by the timer.
    max_silent_windows
        How many empty windows after a device went silent still get a verdict.
    """

    def __init__(
        self, minutes: int, *, silence_s: float = 30.0, max_silent_windows: int = 4
    ) -> None:
        utc_floor(datetime(2000, 1, 1).astimezone(), minutes)  # validates the length
        self.minutes = minutes
        self.length = timedelta(minutes=minutes)
        self.silence_s = silence_s
        self.max_silent_windows = max_silent_windows
        self._open: dict[int, datetime] = {}
        self._last_activity: dict[int, float] = {}
        self._silent: dict[int, int] = {}

    @property
    def open_windows(self) -> dict[int, datetime]:
        """Patient -> start of the currently open window."""
        return dict(self._open)

    def observe(
        self, newest: Mapping[int, datetime], now_mono: float
    ) -> list[tuple[int, datetime]]:
        """Register new readings (patient -> newest reading time); return closed windows."""
        closed: list[tuple[int, datetime]] = []
        for patient_id, moment in newest.items():
            start = utc_floor(moment, self.minutes)
            self._last_activity[patient_id] = now_mono
            self._silent.pop(patient_id, None)
            current = self._open.get(patient_id)
            if current is None or start > current:
                if current is not None:
                    closed.append((patient_id, current))
                self._open[patient_id] = start
        return closed

    def resume(self, windows: Mapping[int, datetime], now_mono: float) -> None:
        """Re-open windows that were open before a restart (patient -> window start).

        They close like any other: on a later reading, or by the timer once they have ended
        and ``silence_s`` has passed without readings (counted from now).
        """
        for patient_id, start in windows.items():
            current = self._open.get(patient_id)
            if current is None or start > current:
                self._open[patient_id] = start
                self._last_activity[patient_id] = now_mono

    def expire(self, now: datetime, now_mono: float) -> list[tuple[int, datetime]]:
        """Close ended windows of patients that went silent (call periodically)."""
        closed: list[tuple[int, datetime]] = []
        for patient_id, start in list(self._open.items()):
            end = start + self.length
            quiet = now_mono - self._last_activity.get(patient_id, now_mono) >= self.silence_s
            if end > now or not quiet:
                continue
            closed.append((patient_id, start))
            silent = self._silent.get(patient_id, -1) + 1
            if silent >= self.max_silent_windows:
                del self._open[patient_id]
                self._silent.pop(patient_id, None)
                self._last_activity.pop(patient_id, None)
            else:
                self._silent[patient_id] = silent
                self._open[patient_id] = end
        return closed
