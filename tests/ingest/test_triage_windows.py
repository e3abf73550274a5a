"""Window closing, the built-in triage rule, and the triage hook end to end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ingest_helpers import Seeded, wait_until

from iomt.alerts.dispatch import AlertDispatcher
from iomt.alerts.feed import AlertFeed
from iomt.domain.analysis import WindowVitals, utc_floor
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import Reading, VitalKind
from iomt.ingest.builtin_triage import ThresholdTriage
from iomt.ingest.payloads import encode_batch
from iomt.ingest.runtime import IngestRuntime
from iomt.ingest.windows import WindowTracker
from iomt.store.alerting import list_alerts
from iomt.store.clinical import list_verdicts
from iomt.store.readings import insert_readings

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_tracker_closes_on_later_reading() -> None:
    tracker = WindowTracker(15)
    assert tracker.observe({1: T0 + timedelta(minutes=3)}, 0.0) == []
    assert tracker.observe({1: T0 + timedelta(minutes=14)}, 1.0) == []
    assert tracker.observe({1: T0 + timedelta(minutes=16)}, 2.0) == [(1, T0)]
    # an older reading does not reopen or close anything
    assert tracker.observe({1: T0 + timedelta(minutes=1)}, 3.0) == []
    assert tracker.open_windows == {1: T0 + timedelta(minutes=15)}


def test_tracker_closes_silent_patients_then_gives_up() -> None:
    tracker = WindowTracker(15, silence_s=10, max_silent_windows=2)
    tracker.observe({1: T0 + timedelta(minutes=5)}, 0.0)
    # window not ended yet
    assert tracker.expire(T0 + timedelta(minutes=14), 100.0) == []
    # ended, but the patient was active a moment ago
    tracker.observe({1: T0 + timedelta(minutes=6)}, 95.0)
    assert tracker.expire(T0 + timedelta(minutes=16), 100.0) == []
    # ended and silent: closed; the following empty windows close as they end, then it stops
    assert tracker.expire(T0 + timedelta(minutes=16), 200.0) == [(1, T0)]
    assert tracker.expire(T0 + timedelta(minutes=31), 300.0) == [(1, T0 + timedelta(minutes=15))]
    assert tracker.expire(T0 + timedelta(minutes=46), 400.0) == [(1, T0 + timedelta(minutes=30))]
    assert tracker.expire(T0 + timedelta(hours=5), 500.0) == []


def test_threshold_triage_levels_and_missing() -> None:
    window = WindowVitals(
        patient_id=1,
        start=T0,
        end=T0 + timedelta(minutes=15),
        values={VitalKind.SPO2: [91.0, 90.5, 91.5], VitalKind.HEART_RATE: [80.0]},
    )
    (verdict,) = ThresholdTriage().assess([window])
    assert verdict.level is TriageLevel.SERIOUS
    assert set(verdict.missing) == {"temperature", "resp_rate"}
    assert verdict.aggregates["spo2"] == 91.0
    empty = WindowVitals(patient_id=1, start=T0, end=T0, values={})
    (nothing,) = ThresholdTriage().assess([empty])
    assert nothing.level is TriageLevel.NORMAL
    assert len(nothing.missing) == 4


def _readings(device: str, start_seq: int, moment: datetime, spo2: float) -> list[Reading]:
    return [
        Reading(device, start_seq, VitalKind.SPO2, spo2, moment, 51.5, -0.12),
        Reading(device, start_seq, VitalKind.HEART_RATE, 88.0, moment, 51.5, -0.12),
        Reading(device, start_seq, VitalKind.TEMPERATURE, 98.8, moment, 51.5, -0.12),
        Reading(device, start_seq, VitalKind.RESP_RATE, 16.0, moment, 51.5, -0.12),
    ]


async def test_closed_windows_get_verdicts_and_critical_alerts_carry_location(
    seeded: Seeded,
) -> None:
    feed = AlertFeed()
    dispatcher = AlertDispatcher(seeded.sessions, feed=feed)
    runtime = IngestRuntime(
        seeded.settings, seeded.sessions, triage_step=ThresholdTriage(), alerts=dispatcher
    )
    await runtime.start()
    events = []

    async def listen() -> None:
        async for event in feed.subscribe():
            events.append(event)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    try:
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        start = base.replace(minute=0, second=0)
        # window 1: normal; window 2: SpO2 85 (critical); a reading in window 3 closes window 2
        plan = [(start + timedelta(minutes=1), 97.0), (start + timedelta(minutes=16), 85.0)]
        seq = 0
        for moment, spo2 in plan:
            for k in range(3):
                seq += 1
                body = encode_batch(_readings("wear-1", seq, moment + timedelta(minutes=k), spo2))
                await runtime.service.ingest("wear-1", body)
        await runtime.service.ingest(
            "wear-1", encode_batch(_readings("wear-1", 99, start + timedelta(minutes=31), 97.0))
        )

        def verdict_levels() -> list[str]:
            with seeded.sessions() as session:
                rows = list_verdicts(session, patient_id=seeded.patient_id)
                return [row.level for row in reversed(rows)]

        await wait_until(lambda: verdict_levels() == ["normal", "critical"])
        await wait_until(lambda: len(events) == 1)
        alert = events[0]
        assert alert["severity"] == "critical" and alert["emergency"]
        assert (alert["latitude"], alert["longitude"]) == (51.5, -0.12)
        assert "rapid deterioration from normal" in alert["title"]
        with seeded.sessions() as session:
            (stored,) = list_alerts(session)
            assert stored.latitude == 51.5
    finally:
        listener.cancel()
        await runtime.stop()


def test_tracker_resume_reopens_windows_that_then_close_as_usual() -> None:
    tracker = WindowTracker(15, silence_s=10)
    tracker.resume({1: T0, 2: T0}, 0.0)
    assert tracker.open_windows == {1: T0, 2: T0}
    assert tracker.observe({1: T0 + timedelta(minutes=20)}, 1.0) == [(1, T0)]
    assert tracker.expire(T0 + timedelta(minutes=20), 5.0) == []  # silent for 5 s only
    assert tracker.expire(T0 + timedelta(minutes=20), 11.0) == [(2, T0)]
    tracker.resume({1: T0}, 12.0)  # older than the open window: ignored
    assert tracker.open_windows[1] == T0 + timedelta(minutes=15)


async def test_a_window_left_open_by_a_crash_is_assessed_after_the_restart(
    seeded: Seeded,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    crashed = utc_floor(now - timedelta(minutes=20), 15)  # ended, never assessed
    with seeded.sessions() as session:  # what the previous run stored before it died
        insert_readings(
            session,
            readings=_readings("wear-1", 1, crashed + timedelta(minutes=2), 85.0),
            patient_id_by_device={"wear-1": seeded.patient_id},
        )
        session.commit()
    runtime = IngestRuntime(seeded.settings, seeded.sessions, triage_step=ThresholdTriage())
    await runtime.start()
    try:
        assert runtime.triage.tracker.open_windows == {seeded.patient_id: crashed}
        # the device carries on in a later window: that closes the re-opened one
        await runtime.service.ingest("wear-1", encode_batch(_readings("wear-1", 2, now, 97.0)))

        def verdicts() -> list[tuple[datetime, str]]:
            with seeded.sessions() as session:
                rows = list_verdicts(session, patient_id=seeded.patient_id)
                return [(row.window_start, row.level) for row in rows]

        await wait_until(lambda: verdicts() == [(crashed, "critical")])
        assert runtime.triage.unassessed_windows() == {seeded.patient_id: utc_floor(now, 15)}
    finally:
        await runtime.stop()
    # a restart now re-opens only the window that is still unassessed
    again = IngestRuntime(seeded.settings, seeded.sessions, triage_step=ThresholdTriage())
    await again.start()
    try:
        assert again.triage.tracker.open_windows == {seeded.patient_id: utc_floor(now, 15)}
    finally:
        await again.stop()
