"""Store alerts, feed them live and deliver them over the channels, with retries.

Flow: inside the transaction that stores a verdict (or a finding),
:meth:`AlertDispatcher.raise_in` stores the alert and one ``pending`` notification per
external target (the webhook URLs and the e-mail addresses of the patient's clinicians).
After the commit, :meth:`AlertDispatcher.published` pushes the alerts to the live feed and
wakes the delivery loop, which sends every due notification and records each attempt:
``sent``; or ``pending`` again, with the next attempt after an exponential backoff; or
``failed`` after ``max_attempts``. Notifications live in the database, so deliveries that
were pending when the process stopped are retried after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from iomt.alerts.channels import Channel, DeliveryError
from iomt.alerts.feed import AlertFeed
from iomt.alerts.rules import AlertDraft, verdict_alert
from iomt.config import Settings
from iomt.domain.analysis import TriageVerdict, WindowVitals
from iomt.domain.triage import TriageLevel
from iomt.store.alerting import add_notification, create_alert, due_notifications, record_attempt
from iomt.store.identity import clinicians_for_patient
from iomt.store.models import Alert, Notification
from iomt.store.types import utcnow

log = logging.getLogger(__name__)


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """The JSON-ready form of an alert (feed events, webhook bodies, e-mails)."""
    return {
        "id": alert.id,
        "patient_id": alert.patient_id,
        "severity": alert.severity,
        "emergency": alert.severity == "critical",
        "title": alert.title,
        "body": alert.body,
        "latitude": alert.latitude,
        "longitude": alert.longitude,
        "verdict_id": alert.verdict_id,
        "finding_id": alert.finding_id,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
        "sent_at": utcnow().isoformat(),
    }


class AlertDispatcher:
    """Raises alerts and delivers their notifications.

    Parameters
    ----------
    sessions
        Session factory of the store (the delivery loop records attempts with it).
    feed
        Live in-app feed (SSE); optional.
    webhook, webhook_urls
        Webhook channel and the URLs every alert is posted to.
    email
        E-mail channel; alerts go to the e-mail addresses of the patient's clinicians.
    max_attempts
        Attempts per notification before it is marked failed.
    backoff_s
        First retry delay; doubles with each attempt (capped at 10 minutes).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        feed: AlertFeed | None = None,
        webhook: Channel | None = None,
        webhook_urls: Sequence[str] = (),
        email: Channel | None = None,
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        poll_s: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.feed = feed
        self.channels: dict[str, Channel] = {}
        if webhook is not None:
            self.channels["webhook"] = webhook
        if email is not None:
            self.channels["email"] = email
        self.webhook_urls = list(webhook_urls)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.poll_s = poll_s
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- raising (inside the caller's transaction) ------------------------------------------------
    def raise_in(self, session: Session, draft: AlertDraft) -> dict[str, Any] | None:
        """Store ``draft`` and its pending notifications; None if it was raised before.

        The caller commits, then passes the returned dicts to :meth:`published`.
        """
        alert, new = create_alert(
            session,
            patient_id=draft.patient_id,
            severity=draft.severity,
            title=draft.title,
            body=draft.body,
            verdict_id=draft.verdict_id,
            finding_id=draft.finding_id,
            location=draft.location,
            dedup_key=draft.dedup_key,
        )
        if not new:
            return None
        if "webhook" in self.channels:
            for url in self.webhook_urls:
                add_notification(session, alert_id=alert.id, channel="webhook", target=url)
        if "email" in self.channels:
            for clinician in clinicians_for_patient(session, patient_id=draft.patient_id):
                if clinician.email:
                    add_notification(
                        session, alert_id=alert.id, channel="email", target=clinician.email
                    )
        return alert_to_dict(alert)

    def raise_for_verdict(
        self,
        session: Session,
        *,
        window: WindowVitals,
        verdict: TriageVerdict,
        verdict_id: int,
        previous: TriageLevel | None,
    ) -> dict[str, Any] | None:
        """Apply the verdict rule (:func:`iomt.alerts.rules.verdict_alert`) and raise its alert.

        For the ingest side's triage scheduler, which gets the dispatcher handed in and so
        needs no import of the alert rules. ``verdict_id``: the stored verdict; ``previous``:
        the level of the patient's window before. None if no alert is due or it was raised
        before.
        """
        draft = verdict_alert(
            patient_id=window.patient_id,
            verdict_id=verdict_id,
            window_start=window.start,
            window_end=window.end,
            verdict=verdict,
            previous=previous,
            location=window.location,
        )
        return None if draft is None else self.raise_in(session, draft)

    def published(self, alerts: Sequence[dict[str, Any]]) -> None:
        """After the commit: push alerts to the live feed and wake the delivery loop."""
        for alert in alerts:
            if self.feed is not None:
                self.feed.publish(alert)
        if alerts and self._wake is not None:
            self._wake.set()

    # -- delivery ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the delivery loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the delivery loop (pending notifications stay in the database)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.deliver_due()
            except Exception:
                log.exception("alert delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    def _due(self) -> list[tuple[int, str, str, dict[str, Any]]]:
        with self.sessions() as session:
            rows = due_notifications(session)
            out = []
            for row in rows:
                alert = session.get(Alert, row.alert_id)
                if alert is not None:
                    out.append((row.id, row.channel, row.target, alert_to_dict(alert)))
            return out

    def _record(self, notification_id: int, error: str | None) -> None:
        with self.sessions() as session:
            row = session.get(Notification, notification_id)
            if row is None:
                return
            retry_at = None
            if error is not None and row.attempts + 1 < self.max_attempts:
                delay = min(self.backoff_s * 2**row.attempts, 600.0)
                retry_at = utcnow() + timedelta(seconds=delay)
            record_attempt(session, notification=row, error=error, retry_at=retry_at)
            session.commit()

    async def deliver_due(self) -> int:
        """Try every due notification once; returns how many were sent."""
        sent = 0
        for notification_id, channel_name, target, alert in await asyncio.to_thread(self._due):
            channel = self.channels.get(channel_name)
            if channel is None:
                error: str | None = f"channel {channel_name!r} is not configured"
            else:
                try:
                    await channel.send(alert, target)
                    error = None
                except DeliveryError as exc:
                    error = str(exc)
            if error is None:
                sent += 1
            else:
                log.warning(
                    "alert %s via %s to %s failed: %s", alert["id"], channel_name, target, error
                )
            await asyncio.to_thread(self._record, notification_id, error)
        return sent


def dispatcher_from_settings(
    settings: Settings, sessions: sessionmaker[Session], *, feed: AlertFeed | None = None
) -> AlertDispatcher:
    """An :class:`AlertDispatcher` with the channels the settings configure.

    E-mail when ``smtp_host`` is set (to the patient's clinicians); the webhook when
    ``alert_webhook_urls`` is set (signed with ``alert_webhook_secret``, which is then
    required).
    """
    from iomt.alerts.channels import EmailChannel, WebhookChannel
    from iomt.errors import ConfigError

    webhook = None
    if settings.alert_webhook_urls:
        if settings.alert_webhook_secret is None:
            raise ConfigError("IOMT_ALERT_WEBHOOK_URLS needs IOMT_ALERT_WEBHOOK_SECRET")
        webhook = WebhookChannel(settings.alert_webhook_secret.get_secret_value())
    email = None
    if settings.smtp_host:
        email = EmailChannel(settings.smtp_host, settings.smtp_port, sender=settings.smtp_sender)
    return AlertDispatcher(
        sessions,
        feed=feed,
        webhook=webhook,
        webhook_urls=settings.alert_webhook_urls,
        email=email,
    )
