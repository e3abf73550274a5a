"""Device gateway over HTTP: reading batches, study uploads and FHIR Observations."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from api_helpers import GradientHeatmapStep, World, basic, png_bytes
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from iomt.store import crud


def _batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"readings": list(items)}


def _reading(seq: int, kind: str = "heart_rate", value: float = 72, **extra: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": kind,
        "value": value,
        "time": datetime.now(UTC).isoformat(),
        **extra,
    }


def test_batch_is_stored_after_commit_and_resend_is_reported_duplicate(
    gateway_world: World,
) -> None:
    world = gateway_world
    committed: list[dict[int, datetime]] = []
    runtime = world.context.extras.get("ingest")
    # The readings hooks (triage) see the commit: the ingest service's when it runs.
    hooks = world.context.on_readings if runtime is None else runtime.service.on_commit
    hooks.append(lambda newest: committed.append(dict(newest)))
    headers = world.headers["device_own"]
    body = _batch(
        _reading(1),
        _reading(1, "spo2", 97),
        _reading(2, "temperature", 37.2, unit="Cel", lat=51.5, lon=-0.1),
    )
    first = world.client.post("/api/devices/dev-a/readings", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 3, "stored": 3, "duplicates": 0}
    assert list(committed[0]) == [world.p1]  # the triage hook saw the commit
    if runtime is not None:  # stored by the group-commit writer, not by the request
        assert runtime.metrics()["readings_stored"] == 3
    again = world.client.post("/api/devices/dev-a/readings", json=body, headers=headers)
    assert again.json() == {"received": 3, "stored": 0, "duplicates": 3}
    with world.context.sessions() as s:
        rows = crud.list_readings(s, patient_id=world.p1)
        temperature = next(r for r in rows if r.kind == "temperature")
        patient = crud.get_patient(s, patient_id=world.p1)
    assert len(rows) == 3
    assert abs(temperature.value - 98.96) < 1e-6  # stored in the canonical unit (degF)
    assert (patient.last_latitude, patient.last_longitude) == (51.5, -0.1)


def test_bad_items_are_refused_with_their_reasons_and_dead_lettered(gateway_world: World) -> None:
    world = gateway_world
    body = _batch(
        _reading(10),
        _reading(11, "heart_rate", 400),
        _reading(12, "spo2", 97, unit="ppm"),
        {"seq": 13, "kind": "pulse", "value": 1, "time": 0},
    )
    response = world.client.post(
        "/api/devices/dev-a/readings", json=body, headers=world.headers["device_own"]
    )
    assert response.status_code == 422
    errors = {e["index"]: e["reason"] for e in response.json()["errors"]}
    assert set(errors) == {1, 2, 3}
    assert "plausible range" in errors[1]
    assert "'ppm' is not accepted" in errors[2]
    assert "unknown kind 'pulse'" in errors[3]
    with world.context.sessions() as s:
        assert crud.count_readings(s, patient_id=world.p1) == 0  # all or nothing
        [letter] = crud.list_dead_letters(s, source="http")
    assert letter.device_id == "dev-a" and "plausible range" in letter.reason


def test_malformed_body_gets_a_precise_422(gateway_world: World) -> None:
    world = gateway_world
    response = world.client.post(
        "/api/devices/dev-a/readings",
        content=b"{not json",
        headers={**world.headers["device_own"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]
    future = _reading(1)
    future["time"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = world.client.post(
        "/api/devices/dev-a/readings", json=_batch(future), headers=world.headers["device_own"]
    )
    assert "ahead of the receiver clock" in response.json()["errors"][0]["reason"]


def test_unbound_device_gets_409(gateway_world: World) -> None:
    world = gateway_world
    with world.context.sessions() as s:
        _, secret = crud.register_device(s, device_id="loose", kind="wearable")
        s.commit()
    response = world.client.post(
        "/api/devices/loose/readings", json=_batch(_reading(1)), headers=basic("loose", secret)
    )
    assert response.status_code == 409
    assert "not bound to a patient" in response.json()["detail"]


def test_device_token_exchange_then_bearer_upload(world: World) -> None:
    token = world.client.post("/api/auth/device-token", headers=world.headers["device_own"])
    assert token.status_code == 200
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    response = world.client.post(
        "/api/devices/dev-a/readings", json=_batch(_reading(5)), headers=bearer
    )
    assert response.json()["stored"] == 1
    wrong = world.client.post(
        "/api/devices/dev-a/readings", json=_batch(_reading(6)), headers=basic("dev-a", "guess")
    )
    assert wrong.status_code == 401


def _upload(world: World, data: bytes, name: str, **form: str) -> Any:
    return world.client.post(
        "/api/devices/dev-a/studies",
        files={"file": (name, data, "application/octet-stream")},
        data=form,
        headers=world.headers["device_own"],
    )


def test_png_upload_is_content_addressed_analysed_and_idempotent(world: World) -> None:
    data = png_bytes(40)
    response = _upload(world, data, "chest.png", modality="xray", task="chest/test")
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["modality"] == "CR" and (study["width"], study["height"]) == (32, 24)
    stored = world.context.images.path(f"{study['sha256'][:2]}/{study['sha256']}")
    assert stored.read_bytes() == data
    again = _upload(world, data, "chest.png", modality="CR")
    assert (
        again.status_code == 200 and again.json()["duplicate"] and again.json()["id"] == study["id"]
    )
    view = world.client.get(
        f"/api/patients/{world.p1}/studies/{study['id']}", headers=world.headers["clin_assigned"]
    ).json()
    assert view["status"] == "analysed"
    [finding] = view["findings"]
    assert finding["label"] == "dark" and not finding["positive"] and finding["has_heatmap"]
    heat = world.client.get(
        f"/api/patients/{world.p1}/studies/{study['id']}/heatmap",
        headers=world.headers["clin_assigned"],
    )
    assert heat.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(heat.content)).size == (32, 24)


def test_positive_finding_raises_an_alert_with_location(world: World) -> None:
    world.client.post(
        "/api/devices/dev-a/readings",
        json=_batch(_reading(1, lat=48.1, lon=11.5)),
        headers=world.headers["device_own"],
    )
    response = _upload(world, png_bytes(230), "bright.png", modality="CR")
    assert response.status_code == 201
    alerts = world.client.get("/api/alerts", headers=world.headers["clin_assigned"]).json()
    [alert] = [a for a in alerts if a["finding_id"] is not None and a["title"].endswith("bright")]
    assert (alert["latitude"], alert["longitude"]) == (48.1, 11.5)


def _dicom_bytes(modality: str = "CT") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = modality
    ds.PatientID = "MRN-A"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    pixels = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 3).astype(np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_dicom_upload_keeps_header_metadata_and_renders_png(world: World) -> None:
    response = _upload(world, _dicom_bytes("CT"), "scan.dcm")
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["modality"] == "CT" and study["media_type"] == "application/dicom"
    assert study["dicom"]["PatientID"] == "MRN-A" and "StudyInstanceUID" in study["dicom"]
    image = world.client.get(
        f"/api/patients/{world.p1}/studies/{study['id']}/image", headers=world.headers["admin"]
    )
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    rendered = np.asarray(Image.open(io.BytesIO(image.content)))
    assert rendered.shape == (30, 40) and rendered.min() == 0 and rendered.max() == 255
    conflict = _upload(world, _dicom_bytes("CT"), "scan.dcm", modality="US")
    assert conflict.status_code == 422 and "contradicts the DICOM header" in conflict.text


def test_jpeg_upload_is_decoded_and_rendered(world: World) -> None:
    buffer = io.BytesIO()
    rgb = np.random.default_rng(3).integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(buffer, format="JPEG")
    response = _upload(world, buffer.getvalue(), "smear.jpg", modality="smear")
    assert response.status_code == 201, response.text
    study = response.json()
    assert (study["modality"], study["media_type"]) == ("SM", "image/jpeg")
    image = world.client.get(
        f"/api/patients/{world.p1}/studies/{study['id']}/image", headers=world.headers["admin"]
    )
    assert Image.open(io.BytesIO(image.content)).size == (30, 20)


def test_bad_and_oversized_uploads_are_refused_precisely(world: World) -> None:
    no_modality = _upload(world, png_bytes(90), "x.png")
    assert no_modality.status_code == 422 and "modality unknown" in no_modality.json()["detail"]
    garbage = _upload(world, b"GIF89a not really", "x.gif", modality="CR")
    assert garbage.status_code == 422 and "PNG/JPEG" in garbage.json()["detail"]
    limit = world.context.settings.max_upload_bytes
    huge = _upload(world, b"\0" * (limit + 1), "big.png", modality="CR")
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]


def _observation(world: World, seq: int, **changes: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": "urn:iomt:seq", "value": str(seq)}],
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "2708-6"},
                {"system": "http://loinc.org", "code": "59408-5"},
            ]
        },
        "subject": {"reference": f"Patient/{world.p1}"},
        "effectiveDateTime": datetime.now(UTC).isoformat(),
        "valueQuantity": {
            "value": 95,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }
    obs.update(changes)
    return obs


def test_fhir_observation_and_bundle_in_then_everything_out(gateway_world: World) -> None:
    world = gateway_world
    dev = world.headers["device_own"]
    single = world.client.post("/fhir/Observation", json=_observation(world, 1), headers=dev)
    assert single.status_code == 201, single.text
    resent = world.client.post("/fhir/Observation", json=_observation(world, 1), headers=dev)
    assert resent.status_code == 200  # stored once
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _observation(world, 1)}, {"resource": _observation(world, 2)}],
    }
    reply = world.client.post("/fhir", json=bundle, headers=dev)
    assert reply.status_code == 200, reply.text
    assert reply.json()["type"] == "transaction-response"
    assert [e["response"]["status"] for e in reply.json()["entry"]] == ["200 OK", "201 Created"]
    everything = world.client.get(
        f"/fhir/Patient/{world.p1}/$everything", headers=world.headers["patient_self"]
    )
    assert everything.headers["content-type"].startswith("application/fhir+json")
    resources = [e["resource"] for e in everything.json()["entry"]]
    assert resources[0]["resourceType"] == "Patient"
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert len(observations) == 2
    codes = {c["code"] for c in observations[0]["code"]["coding"]}
    assert codes == {"2708-6", "59408-5"}
    assert observations[0]["category"][0]["coding"][0]["code"] == "vital-signs"


def test_fhir_refusals_are_operation_outcomes(gateway_world: World) -> None:
    world = gateway_world
    dev = world.headers["device_own"]
    other = world.client.post(
        "/fhir/Observation",
        json=_observation(world, 3, subject={"reference": f"Patient/{world.p2}"}),
        headers=dev,
    )
    assert other.status_code == 403 and other.json()["resourceType"] == "OperationOutcome"
    unknown = _observation(
        world, 4, code={"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}
    )
    bad = world.client.post("/fhir/Observation", json=unknown, headers=dev)
    assert bad.status_code == 422
    assert "supported LOINC" in bad.json()["issue"][0]["diagnostics"]
    invalid = world.client.post(
        "/fhir/Observation", json={"resourceType": "Observation", "status": "final"}, headers=dev
    )
    assert invalid.status_code == 422 and "code" in invalid.json()["issue"][0]["diagnostics"]
    implausible = _observation(
        world,
        5,
        valueQuantity={
            "value": 20,
            "unit": "%",
            "code": "%",
            "system": "http://unitsofmeasure.org",
        },
    )
    low = world.client.post("/fhir/Observation", json=implausible, headers=dev)
    assert low.status_code == 422 and "plausible range" in low.json()["issue"][0]["diagnostics"]


def test_body_far_over_the_limit_is_refused_before_parsing(world: World) -> None:
    limit = world.context.settings.max_upload_bytes
    response = world.client.post(
        "/api/devices/dev-a/studies",
        files={"file": ("big.png", b"\0" * (limit + 200_000), "image/png")},
        headers=world.headers["device_own"],
    )
    assert response.status_code == 413 and "exceeds the limit" in response.json()["detail"]


def test_studies_left_pending_by_a_crash_are_analysed_at_start(tmp_path: Path) -> None:
    from iomt.api.app import create_app
    from iomt.api.context import app_context
    from iomt.api.services.imaging import store_study
    from iomt.config import Settings

    settings = Settings(data_dir=tmp_path / "data")
    first = app_context(create_app(settings, image_step=GradientHeatmapStep()))
    with first.sessions() as s:
        patient = crud.create_patient(s, name="Cy", mrn="MRN-C")
        study, _ = store_study(
            s,
            first.images,
            data=png_bytes(70),
            patient_id=patient.id,
            device_id=None,
            modality="US",
        )
        s.commit()  # committed, but the process "dies" before the analysis runs
        study_id = study.id
    first.engine.dispose()
    app = create_app(settings, image_step=GradientHeatmapStep())
    with TestClient(app):
        pass  # start-up resumes pending analyses; shutdown waits for them
    with app_context(app).sessions() as s:
        resumed = crud.get_study(s, study_id=study_id)
        assert resumed.status == "analysed" and len(resumed.findings) == 1
    app_context(app).engine.dispose()


def test_fhir_export_validates_against_the_r4_models(world: World) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.riskassessment import RiskAssessment

    from iomt.domain.analysis import TriageVerdict
    from iomt.domain.triage import TriageLevel

    world.client.post(
        "/api/devices/dev-a/readings",
        json=_batch(_reading(1, "temperature", 38.5, unit="Cel"), _reading(2, "resp_rate", 22)),
        headers=world.headers["device_own"],
    )
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    verdict = TriageVerdict(
        level=TriageLevel.SERIOUS, value=9.5, method="flcd-t1/test", aggregates={}, news2=5
    )
    with world.context.sessions() as s:
        crud.store_verdict(
            s,
            patient_id=world.p1,
            window_start=start,
            window_end=start + timedelta(minutes=15),
            verdict=verdict,
        )
        s.commit()
    body = world.client.get(
        f"/fhir/Patient/{world.p1}/$everything", headers=world.headers["clin_assigned"]
    ).json()
    Bundle.model_validate(body)
    models = {"Patient": Patient, "Observation": Observation, "RiskAssessment": RiskAssessment}
    kinds = []
    for entry in body["entry"]:
        resource = entry["resource"]
        models[resource["resourceType"]].model_validate(resource)
        kinds.append(resource["resourceType"])
    assert sorted(kinds) == ["Observation", "Observation", "Patient", "RiskAssessment"]
    risk = next(
        e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "RiskAssessment"
    )
    assert risk["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "moderate"
    temperature = next(
        e["resource"]
        for e in body["entry"]
        if e["resource"].get("code", {}).get("text") == "temperature"
    )
    assert temperature["valueQuantity"]["code"] == "[degF]"
    assert abs(temperature["valueQuantity"]["value"] - 101.3) < 1e-6
