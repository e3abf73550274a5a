"""Keyword-only CRUD on SQLite and PostgreSQL: idempotent readings, identity, clinical data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.orm import Session

from iomt.domain.analysis import Box, ImageFinding, TriageVerdict
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import Reading, VitalKind
from iomt.errors import NotFound, ValidationError
from iomt.store import crud
from iomt.store.credentials import verify_device_secret

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _patient_with_device(session: Session, mrn: str = "MRN-1") -> tuple[int, str]:
    patient = crud.create_patient(session, name="Ada", mrn=mrn)
    device, _ = crud.register_device(
        session, device_id=f"wear-{mrn}", kind="wearable", patient_id=patient.id
    )
    session.commit()
    return patient.id, device.device_id


def _readings(device_id: str, n: int, start_seq: int = 0) -> list[Reading]:
    return [
        Reading(
            device_id=device_id,
            seq=start_seq + i,
            kind=VitalKind.HEART_RATE,
            value=70.0 + i % 10,
            time=T0 + timedelta(seconds=i),
            latitude=52.0 + i * 1e-4,
            longitude=13.0,
        )
        for i in range(n)
    ]


def test_resent_readings_are_stored_once(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    batch = _readings(dev, 50)
    assert crud.insert_readings(session, readings=batch, patient_id_by_device={dev: pid}) == 50
    session.commit()
    # the same batch again, plus 10 new ones overlapping it
    again = batch + _readings(dev, 10, start_seq=50)
    assert crud.insert_readings(session, readings=again, patient_id_by_device={dev: pid}) == 10
    session.commit()
    assert crud.count_readings(session, patient_id=pid) == 60


def test_same_seq_different_kind_are_two_readings(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    both = [
        Reading(dev, 1, VitalKind.HEART_RATE, 80.0, T0),
        Reading(dev, 1, VitalKind.SPO2, 97.0, T0),
    ]
    assert crud.insert_readings(session, readings=both, patient_id_by_device={dev: pid}) == 2


def test_readings_from_an_unbound_device_are_refused(session: Session) -> None:
    with pytest.raises(ValidationError, match="not bound"):
        crud.insert_readings(
            session, readings=_readings("ghost", 1), patient_id_by_device={"other": 1}
        )


def test_window_groups_values_and_tracks_location(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    crud.insert_readings(session, readings=_readings(dev, 120), patient_id_by_device={dev: pid})
    session.commit()
    window = crud.readings_for_window(
        session, patient_id=pid, start=T0, end=T0 + timedelta(seconds=60)
    )
    assert list(window.values) == [VitalKind.HEART_RATE]
    assert len(window.values[VitalKind.HEART_RATE]) == 60
    assert window.location == pytest.approx((52.0 + 59e-4, 13.0))
    patient = crud.get_patient(session, patient_id=pid)
    assert patient.last_location_at == T0 + timedelta(seconds=119)
    assert crud.patients_with_readings(session, start=T0, end=T0 + timedelta(hours=1)) == [pid]
    device = crud.get_device(session, device_id=dev)
    assert device is not None and device.last_seen is not None


def test_older_location_does_not_overwrite_newer(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    new = Reading(dev, 2, VitalKind.SPO2, 97.0, T0 + timedelta(minutes=5), 1.0, 1.0)
    old = Reading(dev, 1, VitalKind.SPO2, 97.0, T0, 9.0, 9.0)
    crud.insert_readings(session, readings=[new], patient_id_by_device={dev: pid})
    crud.insert_readings(session, readings=[old], patient_id_by_device={dev: pid})
    session.commit()
    patient = crud.get_patient(session, patient_id=pid)
    assert (patient.last_latitude, patient.last_longitude) == (1.0, 1.0)


def test_users_authenticate_with_argon2_and_roles_are_checked(session: Session) -> None:
    pid, _ = _patient_with_device(session)
    user = crud.create_user(session, username="doc", password="s3cret-pw", role="clinician")
    assert user.password_hash.startswith("$argon2id$")
    assert crud.authenticate_user(session, username="doc", password="s3cret-pw") is user
    assert crud.authenticate_user(session, username="doc", password="wrong-pw") is None
    assert crud.authenticate_user(session, username="nobody", password="s3cret-pw") is None
    with pytest.raises(ValidationError, match="needs a patient_id"):
        crud.create_user(session, username="p", password="s3cret-pw", role="patient")
    with pytest.raises(ValidationError, match="taken"):
        crud.create_user(session, username="doc", password="s3cret-pw", role="admin")
    assert crud.assign_clinician(session, clinician_id=user.id, patient_id=pid)
    assert not crud.assign_clinician(session, clinician_id=user.id, patient_id=pid)
    assert crud.assigned_patient_ids(session, clinician_id=user.id) == [pid]
    assert [u.id for u in crud.clinicians_for_patient(session, patient_id=pid)] == [user.id]
    assert {k: [u.id for u in v] for k, v in crud.clinicians_by_patient(session).items()} == {
        pid: [user.id]
    }
    assert crud.unassign_clinician(session, clinician_id=user.id, patient_id=pid)
    assert not crud.is_assigned(session, clinician_id=user.id, patient_id=pid)


def test_device_secret_is_hashed_verified_and_rotated(session: Session) -> None:
    patient = crud.create_patient(session, name="Bo", mrn="MRN-2")
    device, secret = crud.register_device(
        session, device_id="scope-1", kind="microscope", patient_id=patient.id
    )
    session.commit()
    assert secret not in device.secret_hash
    assert verify_device_secret(session, "scope-1", secret) is device
    assert verify_device_secret(session, "scope-1", secret) is device  # cached path
    assert verify_device_secret(session, "scope-1", "guess") is None
    assert verify_device_secret(session, "nope", secret) is None
    new_secret = crud.rotate_device_secret(session, device=device)
    session.commit()
    assert verify_device_secret(session, "scope-1", secret) is None
    assert verify_device_secret(session, "scope-1", new_secret) is device
    assert crud.device_patient_map(session) == {"scope-1": patient.id}
    with pytest.raises(ValidationError, match="no '/'"):
        crud.register_device(session, device_id="a/b", kind="wearable")


def test_verdict_is_replaced_when_a_window_is_reassessed(session: Session) -> None:
    pid, _ = _patient_with_device(session)
    verdict = TriageVerdict(
        level=TriageLevel.MILD,
        value=6.0,
        method="flcd-t1/v1",
        aggregates={"temperature": 100.0, "spo2": None},
        missing=["spo2"],
        explanation={"rules": [1, 2]},
        news2=3,
    )
    end = T0 + timedelta(minutes=15)
    row, new = crud.store_verdict(
        session, patient_id=pid, window_start=T0, window_end=end, verdict=verdict
    )
    assert new
    worse = TriageVerdict(
        level=TriageLevel.CRITICAL, value=14.0, method="flcd-t1/v1", aggregates={}
    )
    again, changed = crud.store_verdict(
        session, patient_id=pid, window_start=T0, window_end=end, verdict=worse, location=(1, 2)
    )
    session.commit()
    assert again.id == row.id and changed
    [stored] = crud.list_verdicts(session, patient_id=pid)
    assert stored.level == "critical" and stored.latitude == 1


def test_study_findings_and_idempotent_upload(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    fields = {
        "patient_id": pid,
        "device_id": dev,
        "modality": "CR",
        "sha256": "ab" * 32,
        "path": "images/ab/" + "ab" * 32,
        "media_type": "image/png",
        "width": 4,
        "height": 3,
    }
    study, new = crud.add_study(session, **fields)  # type: ignore[arg-type]
    assert new
    same, new_again = crud.add_study(session, **fields)  # type: ignore[arg-type]
    assert same.id == study.id and not new_again
    finding = ImageFinding(
        label="pneumonia",
        probability=0.91,
        threshold=0.5,
        positive=True,
        model_id="cxr",
        model_version="1",
        probabilities={"pneumonia": 0.91, "normal": 0.09},
        boxes=[Box("opacity", 0.8, 1, 2, 3, 4)],
    )
    crud.add_finding(session, study_id=study.id, finding=finding)
    crud.set_study_status(session, study=study, status="analysed")
    session.commit()
    loaded = crud.get_study(session, study_id=study.id, patient_id=pid)
    assert [f.label for f in loaded.findings] == ["pneumonia"]
    assert loaded.findings[0].boxes[0]["label"] == "opacity"
    with pytest.raises(NotFound):
        crud.get_study(session, study_id=study.id, patient_id=pid + 1)


def test_alerts_carry_location_dedupe_and_ack(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    crud.insert_readings(session, readings=_readings(dev, 3), patient_id_by_device={dev: pid})
    admin = crud.create_user(session, username="root", password="password1", role="admin")
    alert, new = crud.create_alert(
        session, patient_id=pid, severity="critical", title="t", body="b", dedup_key="v:1"
    )
    same, new2 = crud.create_alert(
        session, patient_id=pid, severity="critical", title="t", body="b", dedup_key="v:1"
    )
    assert new and not new2 and same.id == alert.id
    assert alert.latitude == pytest.approx(52.0002)
    assert crud.acknowledge_alert(session, alert=alert, user_id=admin.id)
    assert not crud.acknowledge_alert(session, alert=alert, user_id=admin.id)
    note = crud.add_notification(session, alert_id=alert.id, channel="webhook", target="http://x")
    assert crud.due_notifications(session) == [note]
    crud.record_attempt(session, notification=note, error="timeout", retry_at=T0)
    crud.record_attempt(session, notification=note, error=None)
    session.commit()
    assert note.status == "sent" and note.attempts == 2
    assert crud.list_alerts(session, patient_ids=[pid], unacknowledged_only=True) == []
    assert crud.list_alerts(session, patient_ids=[pid], acknowledged_only=True) == [alert]


def test_alert_history_is_filtered_before_the_limit(session: Session) -> None:
    pid, _ = _patient_with_device(session)
    admin = crud.create_user(session, username="root", password="password1", role="admin")
    old, _ = crud.create_alert(session, patient_id=pid, severity="serious", title="old", body="")
    crud.acknowledge_alert(session, alert=old, user_id=admin.id)
    for i in range(5):  # newer open alerts must not push the acknowledged one out of the page
        crud.create_alert(session, patient_id=pid, severity="serious", title=f"n{i}", body="")
    session.commit()
    assert crud.list_alerts(session, patient_ids=[pid], acknowledged_only=True, limit=2) == [old]
    assert len(crud.list_alerts(session, patient_ids=[pid], unacknowledged_only=True)) == 5
    with pytest.raises(ValueError, match="exclude"):
        crud.list_alerts(session, unacknowledged_only=True, acknowledged_only=True)


def test_audit_and_dead_letters(session: Session) -> None:
    assert crud.record_audit(session, action="read", resource="/x", patient_ids=[1, 2]) == 2
    crud.add_dead_letter(
        session, source="mqtt", payload=b"\x00" * 70_000, reason="not JSON", device_id="d"
    )
    session.commit()
    assert {a.patient_id for a in crud.list_audit(session)} == {1, 2}
    [letter] = crud.list_dead_letters(session, source="mqtt")
    assert len(letter.payload) == 65536 and "cut" in letter.reason
    assert crud.count_dead_letters(session) == 1


def test_times_in_other_zones_are_stored_as_the_same_utc_instant(session: Session) -> None:
    pid, dev = _patient_with_device(session)
    local = datetime(2026, 3, 1, 12, 0, 0, 250, tzinfo=timezone(timedelta(hours=2)))
    crud.insert_readings(
        session,
        readings=[Reading(dev, 1, VitalKind.SPO2, 96.0, local)],
        patient_id_by_device={dev: pid},
    )
    session.commit()
    [row] = crud.list_readings(session, patient_id=pid)
    assert row.time == T0 + timedelta(microseconds=250) and row.time.tzinfo is not None
    window = crud.readings_for_window(
        session, patient_id=pid, start=T0, end=T0 + timedelta(microseconds=251)
    )
    assert window.values[VitalKind.SPO2] == [96.0]
