"""The ingest service: validated batches from any transport -> group commit -> acknowledgement.

Every transport (embedded MQTT broker, external-broker gateway, HTTP) hands message bodies to
:meth:`IngestService.submit` (callback style) or :meth:`IngestService.ingest` (awaitable). The
service validates them (:func:`iomt.ingest.payloads.parse_batch`), queues the good readings
and the dead letters, and a single writer commits everything queued in one transaction
(group commit: it waits at most ``max_delay_s`` for more work, or until ``max_batch_readings``
are queued; while one commit runs, the next group collects). Only after the commit are the
messages acknowledged, in the order they arrived. Resent readings are stored once (the store's
unique ``(device_id, seq, kind)``).

After each commit the patients whose readings moved on are handed to the ``on_commit`` hooks
(the triage scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from iomt.domain.vitals import Reading
from iomt.errors import ValidationError
from iomt.ingest.payloads import ParsedBatch, parse_batch
from iomt.store.audit import DeadLetterIn, add_dead_letters
from iomt.store.identity import device_patient_map
from iomt.store.readings import insert_readings

log = logging.getLogger(__name__)

#: ``done(ok)``: called on the event loop once the message is committed (ok) or failed.
DoneCallback = Callable[[bool], None]
#: ``hook({patient_id: newest reading time})``: called on the event loop after each commit.
CommitHook = Callable[[Mapping[int, datetime]], None]


@dataclass(slots=True)
class IngestOutcome:
    """What happened to one message (returned by :meth:`IngestService.ingest`)."""

    accepted: int
    rejected: list[str] = field(default_factory=list)
    message_error: str | None = None
    #: How many of the accepted readings were new (set after the commit when asked for).
    stored: int | None = None


@dataclass(slots=True)
class _Item:
    device_id: str
    readings: list[Reading]
    letters: list[DeadLetterIn]
    done: DoneCallback | None
    outcome: IngestOutcome
    enqueued: float
    source: str = "mqtt"
    #: The patient the route already resolved (skips the binding cache); None: look it up.
    patient_id: int | None = None
    #: Count this item's new readings on its own (request/response transports report them).
    count_stored: bool = False


class IngestMetrics:
    """Counters of the ingest path (read them with :meth:`snapshot`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.dead_letter_reasons: Counter[str] = Counter()
        self.commit_seconds: deque[float] = deque(maxlen=1000)
        self.commit_sizes: deque[int] = deque(maxlen=1000)

    def snapshot(self) -> dict[str, Any]:
        """Counters and recent commit statistics as a plain dict."""
        sizes = list(self.commit_sizes)
        secs = list(self.commit_seconds)
        return {
            **dict(self.counts),
            "dead_letter_reasons": dict(self.dead_letter_reasons.most_common(20)),
            "recent_commit_mean_readings": sum(sizes) / len(sizes) if sizes else 0.0,
            "recent_commit_mean_ms": 1000 * sum(secs) / len(secs) if secs else 0.0,
        }


def _reason_class(reason: str) -> str:
    """A short class of a dead-letter reason for the counters (text before the first colon)."""
    head = reason.split(":", 2)
    return (
        head[1].strip()[:40] if head[0].startswith("readings.") and len(head) > 1 else head[0][:40]
    )


class IngestService:
    """Validate, group-commit and acknowledge device readings.

    Parameters
    ----------
    sessions
        Session factory of the store.
    max_batch_readings
        Most readings in one transaction.
    max_delay_s
        How long the writer waits for more messages before committing a small group.
    patient_cache_s
        How long a device -> patient binding is cached.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_batch_readings: int = 20_000,
        max_delay_s: float = 0.002,
        patient_cache_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.max_batch_readings = max_batch_readings
        self.max_delay_s = max_delay_s
        self.patient_cache_s = patient_cache_s
        self.metrics = IngestMetrics()
        self.on_commit: list[CommitHook] = []
        #: Called on the event loop after every commit (e.g. to lift back-pressure).
        self.after_commit: list[Callable[[], None]] = []
        self._queue: deque[_Item] = deque()
        self._queued_readings = 0
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iomt-ingest-db")
        self._patients: dict[str, tuple[int | None, float]] = {}
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the writer task on the running loop."""
        self._wakeup = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def stop(self) -> None:
        """Commit what is queued, then stop the writer."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._executor.shutdown(wait=True)

    def run_in_writer(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn`` on the single database-writer thread (serialises SQLite writes)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @property
    def backlog(self) -> int:
        """Readings queued but not yet committed."""
        return self._queued_readings

    # -- input ----------------------------------------------------------------------------------
    def submit(
        self,
        device_id: str,
        payload: bytes,
        *,
        done: DoneCallback | None = None,
        source: str = "mqtt",
        topic: str | None = None,
    ) -> IngestOutcome:
        """Validate one message body from an authenticated device and queue it.

        A message that is unusable as a whole becomes one dead letter; a bad reading inside a
        good batch becomes one dead letter each, the good readings are stored. ``done(True)``
        is called after everything (readings and dead letters) is committed.
        """
        self.metrics.counts["messages"] += 1
        try:
            parsed = parse_batch(device_id, payload)
        except ValidationError as exc:
            outcome = IngestOutcome(accepted=0, message_error=exc.reason)
            letter = DeadLetterIn(source, device_id, topic, payload, exc.reason)
            self._count_letter(letter)
            self._enqueue(
                _Item(device_id, [], [letter], done, outcome, time.perf_counter(), source)
            )
            return outcome
        return self.submit_parsed(parsed, done=done, source=source, topic=topic)

    def submit_parsed(
        self,
        parsed: ParsedBatch,
        *,
        done: DoneCallback | None = None,
        source: str = "mqtt",
        topic: str | None = None,
        patient_id: int | None = None,
        count_stored: bool = False,
    ) -> IngestOutcome:
        """Queue an already validated batch (see :meth:`submit`).

        ``patient_id``: the patient the sender is bound to, when the caller just read it
        (otherwise the service's binding cache decides). ``count_stored``: fill
        ``outcome.stored`` with how many readings of this batch were new.
        """
        letters = []
        for rejected in parsed.rejected:
            body = json.dumps(rejected.raw, default=str).encode()
            letter = DeadLetterIn(source, parsed.device_id, topic, body, rejected.reason)
            self._count_letter(letter)
            letters.append(letter)
        outcome = IngestOutcome(
            accepted=len(parsed.readings), rejected=[r.reason for r in parsed.rejected]
        )
        self._enqueue(
            _Item(
                parsed.device_id,
                parsed.readings,
                letters,
                done,
                outcome,
                time.perf_counter(),
                source,
                patient_id,
                count_stored,
            )
        )
        return outcome

    def dead_letter(
        self, *, source: str, device_id: str | None, topic: str | None, payload: bytes, reason: str
    ) -> None:
        """Record a message a transport refused (e.g. an ACL violation) as a dead letter."""
        self.metrics.counts["messages"] += 1
        letter = DeadLetterIn(source, device_id, topic, payload, reason)
        self._count_letter(letter)
        self._enqueue(
            _Item(
                device_id or "",
                [],
                [letter],
                None,
                IngestOutcome(0, [], reason),
                time.perf_counter(),
            )
        )

    async def ingest(
        self, device_id: str, payload: bytes, *, source: str = "http", topic: str | None = None
    ) -> IngestOutcome:
        """Validate, store and wait for the commit of one message (for request/response transports).

        Raises
        ------
        RuntimeError
            If the commit failed (the caller should answer 5xx so that the device resends).
        """
        future, done = _commit_waiter()
        outcome = self.submit(device_id, payload, done=done, source=source, topic=topic)
        if not await future:
            raise RuntimeError("the readings could not be committed; retry later")
        return outcome

    async def ingest_parsed(
        self,
        parsed: ParsedBatch,
        *,
        patient_id: int | None = None,
        source: str = "http",
        topic: str | None = None,
    ) -> IngestOutcome:
        """Store an already validated batch in the next group commit and wait for that commit.

        The outcome's ``stored`` says how many readings were new (the rest were resent).

        Raises
        ------
        RuntimeError
            If the commit failed (the caller should answer 5xx so that the device resends).
        """
        future, done = _commit_waiter()
        outcome = self.submit_parsed(
            parsed,
            done=done,
            source=source,
            topic=topic,
            patient_id=patient_id,
            count_stored=True,
        )
        if not await future:
            raise RuntimeError("the readings could not be committed; retry later")
        return outcome

    def _count_letter(self, letter: DeadLetterIn) -> None:
        self.metrics.counts["dead_letters"] += 1
        self.metrics.dead_letter_reasons[_reason_class(letter.reason)] += 1

    def _enqueue(self, item: _Item) -> None:
        if self._stopping:
            if item.done is not None:
                item.done(False)
            return
        self._queue.append(item)
        self._queued_readings += len(item.readings)
        if self._wakeup is not None:
            self._wakeup.set()

    # -- writer ---------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if (
                self._queued_readings < self.max_batch_readings
                and not self._stopping
                and any(not item.count_stored for item in self._queue)
            ):
                # Let a group form. Not when only waiting requests are queued: their clients
                # send nothing more until answered, and the next group forms during this
                # commit anyway (the delay cost HTTP uploads 20 % of their rate).
                await asyncio.sleep(self.max_delay_s)
            group = self._take_group()
            started = time.perf_counter()
            try:
                newest = await loop.run_in_executor(self._executor, self._commit, group)
            except Exception:
                log.exception("ingest commit of %d messages failed", len(group))
                self.metrics.counts["failed_commits"] += 1
                for item in group:
                    if item.done is not None:
                        item.done(False)
                await asyncio.sleep(0.5)
                continue
            self.metrics.commit_seconds.append(time.perf_counter() - started)
            self.metrics.commit_sizes.append(sum(len(i.readings) for i in group))
            for item in group:
                if item.done is not None:
                    item.done(True)
            for after in self.after_commit:
                after()
            if newest:
                for hook in self.on_commit:
                    try:
                        hook(newest)
                    except Exception:
                        log.exception("on_commit hook failed")

    def _take_group(self) -> list[_Item]:
        group: list[_Item] = []
        count = 0
        while self._queue and (
            not group or count + len(self._queue[0].readings) <= self.max_batch_readings
        ):
            item = self._queue.popleft()
            group.append(item)
            count += len(item.readings)
        self._queued_readings -= count
        return group

    def _resolve_patients(self, session: Session, device_ids: set[str]) -> dict[str, int]:
        now = time.monotonic()
        missing = [d for d in device_ids if d not in self._patients or self._patients[d][1] < now]
        if missing:
            found = device_patient_map(session, device_ids=missing)
            for device_id in missing:
                self._patients[device_id] = (found.get(device_id), now + self.patient_cache_s)
        return {d: pid for d in device_ids if (pid := self._patients[d][0]) is not None}

    def _commit(self, group: list[_Item]) -> dict[int, datetime]:
        """Runs on the writer thread: one transaction for the whole group."""
        for attempt in range(5):
            try:
                return self._commit_once(group)
            except OperationalError as exc:  # e.g. SQLite "database is locked"
                if attempt == 4:
                    raise
                log.warning("ingest commit retry after: %s", exc)
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _commit_once(self, group: list[_Item]) -> dict[int, datetime]:
        with self.sessions() as session:
            known = {i.device_id: i.patient_id for i in group if i.patient_id is not None}
            devices = {item.device_id for item in group if item.readings}.difference(known)
            patients = self._resolve_patients(session, devices) if devices else {}
            patients.update(known)
            readings: list[Reading] = []
            counted: list[_Item] = []
            letters: list[DeadLetterIn] = []
            unbound: list[DeadLetterIn] = []
            for item in group:
                letters.extend(item.letters)
                if not item.readings:
                    continue
                if item.device_id in patients:
                    if item.count_stored:
                        counted.append(item)
                    else:
                        readings.extend(item.readings)
                else:
                    reason = (
                        f"device {item.device_id!r} is unknown, inactive or not bound to a patient"
                    )
                    body = json.dumps(
                        {
                            "readings": [
                                {
                                    "seq": r.seq,
                                    "kind": r.kind.value,
                                    "value": r.value,
                                    "time": r.time.isoformat(),
                                }
                                for r in item.readings
                            ]
                        }
                    ).encode()
                    unbound.append(DeadLetterIn(item.source, item.device_id, None, body, reason))
                    item.outcome.rejected.append(reason)
                    item.outcome.accepted = 0
            stored = insert_readings(session, readings=readings, patient_id_by_device=patients)
            for item in counted:  # one insert each, to know each batch's new readings
                item.outcome.stored = insert_readings(
                    session, readings=item.readings, patient_id_by_device=patients
                )
                stored += item.outcome.stored
                readings.extend(item.readings)
            add_dead_letters(session, letters=letters + unbound)
            session.commit()
        counts = self.metrics.counts
        counts["readings_stored"] += stored
        counts["readings_duplicate"] += len(readings) - stored
        counts["commits"] += 1
        for letter in unbound:
            self._count_letter(letter)
        newest: dict[int, datetime] = {}
        for r in readings:
            pid = patients[r.device_id]
            if pid not in newest or r.time > newest[pid]:
                newest[pid] = r.time
        return newest


def _commit_waiter() -> tuple[asyncio.Future[bool], DoneCallback]:
    """A future for the outcome of a commit and the ``done`` callback that resolves it."""
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def done(ok: bool) -> None:
        if not future.done():
            future.set_result(ok)

    return future, done
