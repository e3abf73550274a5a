"""``/api/devices/{device_id}/...``: what devices send over HTTP (readings, studies).

A reading batch is all-or-nothing over HTTP: if any reading is bad, the response is 422 with
the index and reason of every bad one, nothing is stored, and the body is kept as a dead
letter; the device can fix and resend (unlike MQTT, where a device cannot be told which
reading was bad, so the good ones are stored and each bad one is dead-lettered). The answer
comes only after the commit; a resent batch is stored once and the response says how many
readings were duplicates.

When the ingest runtime runs in the process (``iomt serve``), a valid batch goes through its
group-commit service (:meth:`iomt.ingest.service.IngestService.ingest_parsed`), sharing
transactions with MQTT messages and other requests; the request waits for that commit.
Without it (``create_app(start_ingest=False)``) each request commits on its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, HTTPException, Request, UploadFile
from fastapi import status as http
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from iomt.api.context import AppContext, context_of
from iomt.api.deps import SessionDep, WritingDevice
from iomt.api.routes.patients import study_out
from iomt.api.schemas import ItemError, ReadingsUpload, StudyUploaded, UploadResult
from iomt.api.services.imaging import analyse_study, store_study
from iomt.domain.vitals import Reading
from iomt.errors import ValidationError
from iomt.ingest.payloads import MAX_PAYLOAD_BYTES, ParsedBatch, parse_batch
from iomt.ingest.service import IngestService
from iomt.store import crud
from iomt.store.models import Device

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/devices", tags=["device uploads"])


def _bound_patient(device: Device) -> int:
    if device.patient_id is None:
        raise HTTPException(
            http.HTTP_409_CONFLICT,
            f"device {device.device_id!r} is not bound to a patient; ask an admin to bind it",
        )
    return device.patient_id


def dead_letter(session: Session, *, source: str, device_id: str, body: bytes, reason: str) -> None:
    """Keep a refused request body with its reason (committed at once)."""
    crud.add_dead_letter(session, source=source, device_id=device_id, payload=body, reason=reason)
    session.commit()


async def keep_refused(
    session: Session, *, source: str, device_id: str, body: bytes, reason: str
) -> None:
    """:func:`dead_letter` from an async route (in the thread pool), before it answers 4xx."""
    await run_in_threadpool(
        dead_letter, session, source=source, device_id=device_id, body=body, reason=reason
    )


def commit_readings(
    context: AppContext, session: Session, readings: list[Reading], patient_id: int
) -> int:
    """Store validated readings of one patient, commit, run the readings hooks; new count."""
    device_ids = {r.device_id for r in readings}
    stored = crud.insert_readings(
        session, readings=readings, patient_id_by_device=dict.fromkeys(device_ids, patient_id)
    )
    session.commit()
    notify_readings(context, patient_id, readings)
    return stored


def ingest_service(context: AppContext) -> IngestService | None:
    """The group-commit ingest service when the ingest runtime runs in this process."""
    runtime = context.extras.get("ingest")
    return None if runtime is None else runtime.service


async def store_valid_batch(
    context: AppContext, session: Session, parsed: ParsedBatch, patient_id: int
) -> int:
    """Store a fully valid batch of one patient and answer after the commit; new count.

    Through the ingest service's group commit when it runs (its commit hooks reach triage),
    else with a commit of its own and the readings hooks.

    Raises
    ------
    HTTPException
        503 if the group commit failed (the device should resend).
    """
    service = ingest_service(context)
    if service is None:
        return await run_in_threadpool(
            commit_readings, context, session, parsed.readings, patient_id
        )
    # Give the request's connection back before waiting: the writer needs one from the pool.
    await run_in_threadpool(session.close)
    try:
        outcome = await service.ingest_parsed(parsed, patient_id=patient_id, source="http")
    except RuntimeError as exc:
        raise HTTPException(http.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    assert outcome.stored is not None
    return outcome.stored


def notify_readings(context: AppContext, patient_id: int, readings: list[Reading]) -> None:
    """After a commit: tell the readings hooks (triage) the patient's newest reading time."""
    if not readings:
        return
    newest = max(r.time for r in readings)
    for hook in context.on_readings:
        try:
            hook({patient_id: newest})
        except Exception:
            log.exception("readings hook failed")


def _refusal(parsed: ParsedBatch) -> dict[str, Any]:
    errors = [ItemError(index=r.index, reason=r.reason).model_dump() for r in parsed.rejected]
    return {
        "detail": f"{len(errors)} of {len(errors) + len(parsed.readings)} readings are invalid; "
        "nothing was stored",
        "errors": errors,
    }


@router.post(
    "/{device_id}/readings",
    response_model=UploadResult,
    responses={
        422: {"description": "Invalid batch or readings (every bad item with its reason)"},
        413: {"description": "Body too large"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReadingsUpload.model_json_schema()}},
        }
    },
)
async def upload_readings(
    request: Request, device: WritingDevice, session: SessionDep
) -> UploadResult | JSONResponse:
    """Store a batch of readings from the device itself; answered after the commit."""
    body = await request.body()
    if len(body) > MAX_PAYLOAD_BYTES:
        raise HTTPException(
            http.HTTP_413_CONTENT_TOO_LARGE,
            f"body of {len(body)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes",
        )
    patient_id = _bound_patient(device)
    context = context_of(request)
    try:
        parsed = parse_batch(device.device_id, body)
    except ValidationError as exc:
        await keep_refused(
            session, source="http", device_id=device.device_id, body=body, reason=exc.reason
        )
        raise HTTPException(http.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from None
    if parsed.rejected:
        refusal = _refusal(parsed)
        reason = "; ".join(e["reason"] for e in refusal["errors"][:20])
        await keep_refused(
            session,
            source="http",
            device_id=device.device_id,
            body=body,
            reason=f"batch refused: {reason}",
        )
        return JSONResponse(refusal, status_code=http.HTTP_422_UNPROCESSABLE_CONTENT)
    stored = await store_valid_batch(context, session, parsed, patient_id)
    return UploadResult(
        received=len(parsed.readings), stored=stored, duplicates=len(parsed.readings) - stored
    )


@router.post(
    "/{device_id}/studies",
    response_model=StudyUploaded,
    status_code=http.HTTP_201_CREATED,
    responses={
        200: {"description": "The same image was uploaded before (duplicate)"},
        413: {"description": "File too large"},
        422: {"description": "Unreadable or unsupported image, unknown modality"},
    },
)
async def upload_study(
    request: Request,
    device: WritingDevice,
    session: SessionDep,
    background: BackgroundTasks,
    file: Annotated[UploadFile, File(description="DICOM, PNG or JPEG")],
    modality: Annotated[str | None, Form(description="CR, CT, US or SM (PNG/JPEG)")] = None,
    task: Annotated[str | None, Form(max_length=64, description="Model task hint")] = None,
) -> StudyUploaded | JSONResponse:
    """Upload an image; it is stored content-addressed and analysed after the commit."""
    context = context_of(request)
    limit = context.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(
            http.HTTP_413_CONTENT_TOO_LARGE, f"file exceeds the upload limit of {limit} bytes"
        )
    patient_id = _bound_patient(device)

    def store() -> tuple[StudyUploaded, bool]:
        try:
            study, new = store_study(
                session,
                context.images,
                data=data,
                patient_id=patient_id,
                device_id=device.device_id,
                modality=modality,
                task=task,
            )
        except ValidationError as exc:
            session.rollback()
            raise HTTPException(http.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from None
        session.commit()
        session.refresh(study, ["findings"])
        out = StudyUploaded(**study_out(study).model_dump(), duplicate=not new)
        return out, study.status in ("received", "failed")

    out, needs_analysis = await run_in_threadpool(store)
    if needs_analysis:
        background.add_task(
            analyse_study,
            context.sessions,
            context.images,
            context.image_step,
            out.id,
            dispatcher=context.alerts,
            loop=asyncio.get_running_loop(),
            on_done=list(context.on_findings),
        )
    if out.duplicate:
        return JSONResponse(out.model_dump(mode="json"), status_code=http.HTTP_200_OK)
    return out
