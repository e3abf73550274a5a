"""Virtual patients: plausible courses, and an accelerated run over MQTT into the store."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from ingest_helpers import Seeded, wait_until

from iomt.domain.vitals import check_plausible
from iomt.ingest.builtin_triage import ThresholdTriage
from iomt.ingest.payloads import encode_batch, parse_batch
from iomt.ingest.runtime import IngestRuntime
from iomt.ingest.sim_runner import Roster, Simulation, provision
from iomt.ingest.simulator import Course, SimClock, VirtualPatient, VirtualWearable
from iomt.store.clinical import list_verdicts
from iomt.store.readings import count_readings


def test_courses_move_vitals_the_right_way_and_stay_plausible() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sick = VirtualPatient(1, Course.DETERIORATING, onset=t0 + timedelta(hours=1), tau_s=900)
    well = VirtualPatient(2, Course.STABLE, onset=t0, rng=random.Random(1))
    better = VirtualPatient(3, Course.RECOVERING, onset=t0 + timedelta(hours=1), tau_s=900)
    assert sick.severity(t0) < 0.1 < 0.9 < sick.severity(t0 + timedelta(hours=3))
    assert better.severity(t0) > 0.8 > 0.2 > better.severity(t0 + timedelta(hours=3))
    device = VirtualWearable("w", "s", sick, dropout=0.0, outage=0.0)
    early = device.sample(t0)
    late = device.sample(t0 + timedelta(hours=3))
    spo2 = {r.time: r.value for r in early + late if r.kind.value == "spo2"}
    assert spo2[t0] > 94 > 88 > spo2[t0 + timedelta(hours=3)]
    noisy = VirtualWearable("w2", "s", well, dropout=0.2, outage=0.0)
    readings = [r for k in range(200) for r in noisy.sample(t0 + timedelta(seconds=5 * k))]
    assert 0.7 * 1000 < len(readings) < 0.9 * 1000  # 20 % dropouts of 5 channels x 200
    for r in readings:
        check_plausible(r.kind, r.value)
    # what the simulator sends passes the receiver's validation
    now = datetime.now(UTC)
    fresh = noisy.sample(now)
    parsed = parse_batch("w2", encode_batch(fresh), now=now)
    assert not parsed.rejected and len(parsed.readings) == len(fresh)


def test_clock_runs_fast_but_never_ahead_of_the_wall_clock() -> None:
    clock = SimClock(speed=3600, horizon_s=1.0)
    first = clock.now()
    assert datetime.now(UTC) - first > timedelta(minutes=50)
    assert clock.now() <= datetime.now(UTC)


async def test_accelerated_simulation_over_mqtt_stores_readings_and_closes_windows(
    seeded: Seeded,
) -> None:
    runtime = IngestRuntime(seeded.settings, seeded.sessions, triage_step=ThresholdTriage())
    await runtime.start()
    try:
        roster = await asyncio.to_thread(provision, seeded.sessions, 3, imagers=0)
        assert len(roster.wearables) == 3
        assert Roster.from_json(roster.to_json()) == roster
        sim = Simulation(
            roster,
            transport="mqtt",
            mqtt_port=runtime.mqtt_port or 0,
            speed=1800,  # 30 simulated minutes per real second: two windows per second
            interval_s=30,
            horizon_s=3,
        )
        stats = await asyncio.to_thread(sim.run, 3.0)
        assert stats.readings_sent > 300
        assert stats.messages_acked == stats.messages_sent

        def stored() -> int:
            with seeded.sessions() as session:
                return count_readings(session)

        await wait_until(lambda: stored() == stats.readings_sent)

        def verdicts() -> int:
            with seeded.sessions() as session:
                return sum(
                    len(list_verdicts(session, patient_id=d.patient_id)) for d in roster.wearables
                )

        await wait_until(lambda: verdicts() >= 6)
    finally:
        await runtime.stop()
