"""The triage hook: closed windows -> TriageStep -> stored verdicts -> alerts.

:class:`TriageScheduler` listens to the ingest service's commits, tracks every patient's open
window (:class:`~iomt.ingest.windows.WindowTracker`) and, for the windows that closed, builds
:class:`~iomt.domain.analysis.WindowVitals` from the store, calls the step once for all of
them, stores the verdicts and has the alert dispatcher handed in (``alerts``) apply the alert
rules (:mod:`iomt.alerts.rules`) to them in the same transaction. A timer closes the windows
of patients whose devices went silent.

The window state is kept in memory and rebuilt from the store on start: a patient whose newest
reading (within the last few windows) lies in a window without a verdict gets that window
re-opened, so a window that was open when the service stopped or crashed is still assessed,
by the patient's next later reading or by the silence timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from iomt.domain.analysis import TriageStep, utc_floor
from iomt.domain.triage import TriageLevel
from iomt.ingest.service import IngestService
from iomt.ingest.windows import WindowTracker
from iomt.store.clinical import assessed_windows, list_verdicts, store_verdict
from iomt.store.readings import newest_reading_times, readings_for_window

log = logging.getLogger(__name__)


class TriageScheduler:
    """Runs the triage step on closed windows.

    Parameters
    ----------
    service
        The ingest service (its commits feed the tracker; its writer thread runs the step).
    step
        The triage step (built-in threshold rule or the FLCD engine).
    window_minutes
        Window length (``settings.triage_window_minutes``).
    alerts
        An :class:`iomt.alerts.dispatch.AlertDispatcher` (or None: verdicts only).
    tick_s
        How often the silence timer runs.
    silence_s
        Seconds without readings after which an ended window closes (default 2 ticks).
    """

    def __init__(
        self,
        service: IngestService,
        step: TriageStep,
        *,
        window_minutes: int,
        alerts: Any = None,
        tick_s: float = 5.0,
        silence_s: float | None = None,
    ) -> None:
        self.service = service
        self.step = step
        self.alerts = alerts
        self.tick_s = tick_s
        self.tracker = WindowTracker(
            window_minutes, silence_s=silence_s if silence_s is not None else 2 * tick_s
        )
        self.verdicts = 0
        self.alerts_raised = 0
        self._pending: list[tuple[int, datetime]] = []
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Re-open unassessed windows, subscribe to commits, start the worker and the timer."""
        self._wake = asyncio.Event()
        unassessed = await self.service.run_in_writer(self.unassessed_windows)
        if unassessed:
            log.info("re-opened %d triage windows left open before the start", len(unassessed))
        self.tracker.resume(unassessed, time.monotonic())
        self.service.on_commit.append(self._on_commit)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()), loop.create_task(self._timer())]

    async def stop(self) -> None:
        """Stop the timer and the worker (windows still open are not assessed)."""
        if self._on_commit in self.service.on_commit:
            self.service.on_commit.remove(self._on_commit)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _enqueue(self, closed: list[tuple[int, datetime]]) -> None:
        if closed:
            self._pending.extend(closed)
            assert self._wake is not None
            self._wake.set()

    def _on_commit(self, newest: Mapping[int, datetime]) -> None:
        self._enqueue(self.tracker.observe(newest, time.monotonic()))

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self._enqueue(self.tracker.expire(datetime.now(UTC), time.monotonic()))

    async def _worker(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                closed, self._pending = self._pending, []
                try:
                    raised = await self.service.run_in_writer(partial(self.assess, closed))
                except Exception:
                    log.exception("triage of %d windows failed", len(closed))
                    continue
                if raised and self.alerts is not None:
                    self.alerts.published(raised)

    def unassessed_windows(self, now: datetime | None = None) -> dict[int, datetime]:
        """Patients whose newest window has readings but no verdict: ``{patient: start}``.

        Only windows that the silence timer would still close count (the newest reading is
        within ``max_silent_windows + 1`` windows of ``now``); older gaps are left alone.
        """
        tracker = self.tracker
        since = (now or datetime.now(UTC)) - tracker.length * (tracker.max_silent_windows + 1)
        with self.service.sessions() as session:
            newest = newest_reading_times(session, since=since)
            windows = {pid: utc_floor(moment, tracker.minutes) for pid, moment in newest.items()}
            done = assessed_windows(session, windows=windows)
        return {pid: start for pid, start in windows.items() if (pid, start) not in done}

    def assess(self, closed: list[tuple[int, datetime]]) -> list[dict[str, Any]]:
        """Assess closed windows in one transaction; returns the alerts raised (as dicts).

        Runs on the ingest writer thread (it writes verdicts and alerts).
        """
        raised: list[dict[str, Any]] = []
        with self.service.sessions() as session:
            length = self.tracker.length
            windows = [
                readings_for_window(session, patient_id=pid, start=start, end=start + length)
                for pid, start in closed
            ]
            verdicts = self.step.assess(windows)
            for window, verdict in zip(windows, verdicts, strict=True):
                previous = next(
                    (
                        TriageLevel.from_label(row.level)
                        for row in list_verdicts(
                            session, patient_id=window.patient_id, method=verdict.method, limit=3
                        )
                        if row.window_start < window.start
                    ),
                    None,
                )
                row, _changed = store_verdict(
                    session,
                    patient_id=window.patient_id,
                    window_start=window.start,
                    window_end=window.end,
                    verdict=verdict,
                    location=window.location,
                )
                self.verdicts += 1
                if self.alerts is None:
                    continue
                alert = self.alerts.raise_for_verdict(
                    session, window=window, verdict=verdict, verdict_id=row.id, previous=previous
                )
                if alert is not None:
                    raised.append(alert)
                    self.alerts_raised += 1
            session.commit()
        return raised
