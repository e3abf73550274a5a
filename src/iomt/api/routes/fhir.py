"""``/fhir``: FHIR R4 vital signs in (``Observation``, ``Bundle``) and out (``$everything``).

Models come from ``fhir.resources`` (its R4B package, the R4-compatible one). Incoming
Observations must carry a LOINC code of ANCHORS.md section 1.5, a ``valueQuantity`` in UCUM
units, ``effectiveDateTime`` (or ``effectiveInstant``), and ``subject`` = the sending
device's own patient. The reading's sequence number is the Observation's identifier with
system ``urn:iomt:seq``, else the effective time in milliseconds, so a resent Observation is
stored once. Readings are exported as vital-sign Observations, verdicts as RiskAssessments.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from iomt.api.context import context_of
from iomt.api.deps import (
    Principal,
    PrincipalDep,
    SessionDep,
    forbidden,
    load_readable_patient,
)
from iomt.api.routes.uploads import ingest_service, keep_refused, notify_readings
from iomt.domain.vitals import VITAL_SPECS, Reading, VitalKind
from iomt.errors import ValidationError
from iomt.ingest.payloads import MAX_PAYLOAD_BYTES, ParsedBatch, parse_batch
from iomt.store import crud
from iomt.store.models import Patient, ReadingRow, VerdictRow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/fhir", tags=["fhir"])

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SEQ_SYSTEM = "urn:iomt:seq"
LOCAL_CODES = "urn:iomt:vital-kind"
VITAL_SIGNS = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        }
    ]
}
#: LOINC code -> kind; 59408-5 is the pulse-oximetry SpO2 code (a second coding in US Core).
KIND_BY_LOINC: dict[str, VitalKind] = {
    spec.loinc: kind for kind, spec in VITAL_SPECS.items() if spec.loinc
} | {"59408-5": VitalKind.SPO2}
_DISPLAY = {
    VitalKind.TEMPERATURE: "Body temperature",
    VitalKind.HEART_RATE: "Heart rate",
    VitalKind.RESP_RATE: "Respiratory rate",
    VitalKind.SPO2: "Oxygen saturation in Arterial blood",
    VitalKind.SYSTOLIC_BP: "Systolic blood pressure",
}
_ACCEPTED_STATUS = {"final", "amended", "corrected", "preliminary"}
#: Triage level -> FHIR risk-probability code.
_RISK = {"normal": "negligible", "mild": "low", "serious": "moderate", "critical": "high"}


def _outcome(status_code: int, problems: list[tuple[str, str]]) -> JSONResponse:
    """An OperationOutcome listing ``(expression, diagnostics)`` problems."""
    issues = [
        {"severity": "error", "code": "invalid", "diagnostics": text, "expression": [where]}
        for where, text in problems
    ]
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": issues},
        status_code=status_code,
        media_type=FHIR_JSON,
    )


def _pydantic_text(error: pydantic.ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in error.errors(include_url=False)[:3]
    ]
    return "; ".join(parts)


def observation_to_wire(obs: Observation, *, patient_id: int, device_id: str) -> dict[str, Any]:
    """Check an Observation's FHIR-level rules and turn it into a device reading dict.

    Raises
    ------
    ValidationError
        Unknown code, wrong subject or device, missing value or time, refused status.
    """
    if obs.status not in _ACCEPTED_STATUS:
        raise ValidationError(
            f"status {obs.status!r} is not accepted; use one of {sorted(_ACCEPTED_STATUS)}"
        )
    codes = [c.code for c in (obs.code.coding or []) if c.system == LOINC and c.code]
    kinds = {KIND_BY_LOINC[c] for c in codes if c in KIND_BY_LOINC}
    if len(kinds) != 1:
        raise ValidationError(
            f"code needs exactly one supported LOINC vital sign (got {codes or 'none'}); "
            f"supported: {sorted(KIND_BY_LOINC)}"
        )
    kind = kinds.pop()
    expected = f"Patient/{patient_id}"
    subject = obs.subject.reference if obs.subject else None
    if subject != expected:
        raise PermissionError(f"subject {subject!r} is not this device's patient ({expected})")
    if obs.device is not None and obs.device.reference not in (None, f"Device/{device_id}"):
        raise PermissionError(f"device {obs.device.reference!r} is not the sender {device_id!r}")
    quantity = obs.valueQuantity
    if quantity is None or quantity.value is None:
        raise ValidationError("valueQuantity with a value is required")
    unit = quantity.code or quantity.unit
    if quantity.code and quantity.system not in (None, UCUM):
        raise ValidationError(f"valueQuantity.system must be {UCUM}")
    moment = obs.effectiveDateTime or obs.effectiveInstant
    if not isinstance(moment, datetime):
        raise ValidationError(
            "effectiveDateTime (with time and zone) or effectiveInstant is required"
        )
    seq: int | None = None
    for ident in obs.identifier or []:
        if ident.system == SEQ_SYSTEM and ident.value is not None:
            if not str(ident.value).isdigit():
                raise ValidationError(f"identifier {SEQ_SYSTEM} must be a non-negative integer")
            seq = int(ident.value)
    if seq is None:
        seq = int(moment.timestamp() * 1000)
    return {
        "seq": seq,
        "kind": kind.value,
        "value": float(quantity.value),
        "unit": unit,
        "time": moment.isoformat(),
    }


def _parse_resources(
    resources: list[Any], *, patient_id: int, device_id: str, prefix: str
) -> tuple[list[Reading], list[tuple[str, str]], list[tuple[str, str]]]:
    """Validate Observations; returns readings, invalid problems and forbidden problems."""
    wire: list[dict[str, Any]] = []
    where: list[str] = []
    invalid: list[tuple[str, str]] = []
    denied: list[tuple[str, str]] = []
    for index, raw in enumerate(resources):
        path = prefix.format(index=index)
        try:
            if not isinstance(raw, dict) or raw.get("resourceType") != "Observation":
                raise ValidationError("only Observation resources are accepted")
            obs = Observation.model_validate(raw)
            wire.append(observation_to_wire(obs, patient_id=patient_id, device_id=device_id))
            where.append(path)
        except pydantic.ValidationError as exc:
            invalid.append((path, _pydantic_text(exc)))
        except ValidationError as exc:
            invalid.append((path, exc.reason))
        except PermissionError as exc:
            denied.append((path, str(exc)))
    readings: list[Reading] = []
    if wire and not invalid and not denied:
        parsed = parse_batch(device_id, json.dumps({"readings": wire}).encode())
        for rejected in parsed.rejected:
            invalid.append((where[rejected.index], rejected.reason.partition(": ")[2]))
        readings = parsed.readings
    return readings, invalid, denied


class _Refused(Exception):
    """A request refused with an OperationOutcome."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(frozen=True, slots=True)
class _Posted:
    """A device's FHIR POST: the JSON document, the device and its patient, the raw body."""

    document: dict[str, Any]
    patient_id: int
    device_id: str
    body: bytes


async def _accept(request: Request, principal: Principal, kind: str) -> _Posted:
    if not principal.is_device or principal.device_id is None:
        raise forbidden("only devices post observations")
    if principal.patient_id is None:
        raise _Refused(_outcome(409, [(kind, "the device is not bound to a patient")]))
    body = await request.body()
    if len(body) > MAX_PAYLOAD_BYTES:
        raise _Refused(_outcome(413, [(kind, f"body exceeds {MAX_PAYLOAD_BYTES} bytes")]))
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _Refused(_outcome(422, [(kind, f"not JSON: {exc}")])) from None
    if not isinstance(document, dict):
        raise _Refused(_outcome(422, [(kind, "expected a JSON object")]))
    return _Posted(document, principal.patient_id, principal.device_id, body)


async def _store(
    request: Request, session: Session, posted: _Posted, resources: list[Any], prefix: str
) -> list[bool]:
    """Validate and store the Observations (all or nothing); per resource: new or duplicate."""
    readings, invalid, denied = _parse_resources(
        resources, patient_id=posted.patient_id, device_id=posted.device_id, prefix=prefix
    )
    if denied:
        raise _Refused(_outcome(403, denied))
    if invalid:
        reason = "; ".join(f"{w}: {t}" for w, t in invalid[:20])
        await keep_refused(
            session, source="fhir", device_id=posted.device_id, body=posted.body, reason=reason
        )
        raise _Refused(_outcome(422, invalid))
    context = context_of(request)
    service = ingest_service(context)
    if service is not None:
        # Through the ingest runtime's group commit: one item per Observation, so that each
        # entry's answer says new or duplicate; answered once all are committed.
        await run_in_threadpool(session.close)  # the writer needs a pooled connection
        try:
            outcomes = await asyncio.gather(
                *(
                    service.ingest_parsed(
                        ParsedBatch(posted.device_id, [r]),
                        patient_id=posted.patient_id,
                        source="fhir",
                    )
                    for r in readings
                )
            )
        except RuntimeError as exc:
            raise _Refused(_outcome(503, [("Observation", str(exc))])) from None
        return [outcome.stored == 1 for outcome in outcomes]
    owner = {posted.device_id: posted.patient_id}

    def store() -> list[bool]:
        # One insert per Observation, so that each entry's answer says new or duplicate,
        # and one commit for all.
        new = [
            crud.insert_readings(session, readings=[r], patient_id_by_device=owner) == 1
            for r in readings
        ]
        session.commit()
        notify_readings(context, posted.patient_id, readings)
        return new

    return await run_in_threadpool(store)


@router.post("/Observation", responses={201: {"content": {FHIR_JSON: {}}}})
async def post_observation(
    request: Request, principal: PrincipalDep, session: SessionDep
) -> JSONResponse:
    """Store one vital-sign Observation from the device of its subject."""
    try:
        posted = await _accept(request, principal, "Observation")
        [new] = await _store(request, session, posted, [posted.document], "Observation")
    except _Refused as refused:
        return refused.response
    return JSONResponse(posted.document, status_code=201 if new else 200, media_type=FHIR_JSON)


@router.post("", responses={200: {"content": {FHIR_JSON: {}}}})
async def post_bundle(
    request: Request, principal: PrincipalDep, session: SessionDep
) -> JSONResponse:
    """Store a ``batch`` or ``transaction`` Bundle of Observations (all or nothing)."""
    try:
        posted = await _accept(request, principal, "Bundle")
        try:
            bundle = Bundle.model_validate(posted.document)
        except pydantic.ValidationError as exc:
            raise _Refused(_outcome(422, [("Bundle", _pydantic_text(exc))])) from None
        if bundle.type not in ("batch", "transaction", "collection"):
            raise _Refused(_outcome(422, [("Bundle.type", "use batch, transaction or collection")]))
        entries = posted.document.get("entry") or []
        resources = [e.get("resource") if isinstance(e, dict) else None for e in entries]
        if not resources:
            raise _Refused(_outcome(422, [("Bundle.entry", "the bundle has no entries")]))
        results = await _store(
            request, session, posted, resources, "Bundle.entry[{index}].resource"
        )
    except _Refused as refused:
        return refused.response
    reply = {
        "resourceType": "Bundle",
        "type": f"{bundle.type}-response" if bundle.type != "collection" else "batch-response",
        "entry": [{"response": {"status": "201 Created" if new else "200 OK"}} for new in results],
    }
    return JSONResponse(
        Bundle.model_validate(reply).model_dump(mode="json", exclude_none=True),
        media_type=FHIR_JSON,
    )


# --------------------------------------------------------------------------------- export


def reading_resource(row: ReadingRow) -> dict[str, Any]:
    """A stored reading as a FHIR R4 Observation (vital-signs profile where one exists)."""
    kind = VitalKind(row.kind)
    spec = VITAL_SPECS[kind]
    if spec.loinc:
        coding = [{"system": LOINC, "code": spec.loinc, "display": _DISPLAY.get(kind, kind.value)}]
        if kind is VitalKind.SPO2:
            coding.append(
                {
                    "system": LOINC,
                    "code": "59408-5",
                    "display": "Oxygen saturation in Arterial blood by Pulse oximetry",
                }
            )
        category: list[dict[str, Any]] = [VITAL_SIGNS]
    else:
        coding = [{"system": LOCAL_CODES, "code": kind.value}]
        category = []
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"reading-{row.id}",
        "status": "final",
        "identifier": [{"system": SEQ_SYSTEM, "value": str(row.seq)}],
        "code": {"coding": coding, "text": kind.value},
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "device": {"reference": f"Device/{row.device_id}"},
        "effectiveDateTime": row.time.isoformat(),
        "valueQuantity": {"value": row.value, "unit": spec.unit, "system": UCUM, "code": spec.ucum},
    }
    if category:
        resource["category"] = category
    return resource


def verdict_resource(row: VerdictRow) -> dict[str, Any]:
    """A triage verdict as a FHIR R4 RiskAssessment of the window."""
    note = f"{row.method}: {row.level} (value {row.value:g})"
    if row.news2 is not None:
        note += f"; NEWS2 {row.news2}{' (partial)' if row.news2_partial else ''}"
    if row.missing:
        note += f"; missing: {', '.join(map(str, row.missing))}"
    return {
        "resourceType": "RiskAssessment",
        "id": f"verdict-{row.id}",
        "status": "final",
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "occurrencePeriod": {
            "start": row.window_start.isoformat(),
            "end": row.window_end.isoformat(),
        },
        "method": {"text": row.method},
        "prediction": [
            {
                "outcome": {"text": "clinical deterioration"},
                "qualitativeRisk": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/risk-probability",
                            "code": _RISK.get(row.level, "moderate"),
                        }
                    ],
                    "text": row.level,
                },
            }
        ],
        "note": [{"text": note}],
    }


def patient_resource(patient: Patient) -> dict[str, Any]:
    """A patient as a FHIR R4 Patient."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.id),
        "identifier": [{"system": "urn:iomt:mrn", "value": patient.mrn}],
        "name": [{"text": patient.name}],
    }
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:iomt:{r['resourceType']}/{r['id']}", "resource": r} for r in resources
        ],
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


@router.get("/Patient/{patient_id}/$everything", responses={200: {"content": {FHIR_JSON: {}}}})
def patient_everything(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    patient_id: Annotated[int, Path(ge=1)],
    count: Annotated[int, Query(alias="_count", ge=1, le=10_000)] = 1000,
) -> JSONResponse:
    """The patient, their newest readings (Observations) and verdicts (RiskAssessments)."""
    patient = load_readable_patient(request, session, principal, patient_id)
    readings = crud.list_readings(session, patient_id=patient_id, limit=count)
    verdicts = crud.list_verdicts(session, patient_id=patient_id, limit=count)
    resources = [patient_resource(patient)]
    resources += [reading_resource(r) for r in readings]
    resources += [verdict_resource(v) for v in verdicts]
    return JSONResponse(_searchset(resources), media_type=FHIR_JSON)


@router.get("/Observation", responses={200: {"content": {FHIR_JSON: {}}}})
def search_observations(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    patient: Annotated[int, Query(ge=1, description="Patient id")],
    count: Annotated[int, Query(alias="_count", ge=1, le=10_000)] = 1000,
) -> JSONResponse:
    """The patient's readings as Observations, newest first."""
    load_readable_patient(request, session, principal, patient)
    readings = crud.list_readings(session, patient_id=patient, limit=count)
    return JSONResponse(_searchset([reading_resource(r) for r in readings]), media_type=FHIR_JSON)
