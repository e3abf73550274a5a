"""Start and stop the ingest side of the service inside a running asyncio loop.

:class:`IngestRuntime` wires the transports to the :class:`~iomt.ingest.service.IngestService`:
the embedded MQTT broker (default) or, with ``settings.mqtt_url``, the gateway that subscribes
to an external broker; plus the triage scheduler (closed windows -> verdicts -> alerts).
Start it from the FastAPI lifespan (``await runtime.start()`` / ``await runtime.stop()``) or
a stand-alone process (:mod:`iomt.ingest.server`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from iomt.config import Settings
from iomt.domain.analysis import TriageStep
from iomt.ingest.mqtt_broker import (
    Connection,
    DeviceAccessPolicy,
    MqttBroker,
    RefusedPublish,
    readings_topic,
)
from iomt.ingest.service import DoneCallback, IngestService
from iomt.store.credentials import verify_device_secret


class IngestRuntime:
    """The ingest service with its transport and triage scheduler.

    Parameters
    ----------
    settings
        ``mqtt_url`` (external broker) or ``mqtt_host``/``mqtt_port`` (embedded broker),
        ``triage_window_minutes``.
    sessions
        Session factory of the store.
    triage_step
        The triage step closed windows go to; default: the built-in threshold rule
        (:class:`iomt.ingest.builtin_triage.ThresholdTriage`). ``False`` disables triage.
    alerts
        Receives verdict alerts (an :class:`iomt.alerts.dispatch.AlertDispatcher`); optional.
    triage_tick_s
        How often the timer closes the windows of silent devices.
    gateway_client_id
        MQTT client id of the gateway (external broker): its persistent session lives there.
    max_backlog
        Readings queued for the writer at most: above it the embedded broker stops reading
        from its clients until half of it is committed (QoS 1 devices are also limited by
        their own in-flight window; this bounds memory under QoS 0 floods).
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        triage_step: TriageStep | bool | None = None,
        alerts: Any = None,
        triage_tick_s: float = 5.0,
        gateway_client_id: str = "iomt-gateway",
        max_backlog: int = 200_000,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.service = IngestService(sessions)
        self.broker: MqttBroker | None = None
        self.gateway: Any = None
        self.triage: Any = None
        self._triage_step = triage_step
        self._alerts = alerts
        self._triage_tick_s = triage_tick_s
        self._gateway_client_id = gateway_client_id
        self.max_backlog = max_backlog

    @property
    def mqtt_port(self) -> int | None:
        """The port the embedded broker listens on (None with an external broker)."""
        return self.broker.port if self.broker is not None else None

    async def start(self) -> None:
        """Start the writer, the transport and the triage scheduler."""
        await self.service.start()
        if self._triage_step is not False:
            from iomt.ingest.triage_hook import TriageScheduler

            step = self._triage_step
            if step is None or step is True:
                from iomt.ingest.builtin_triage import ThresholdTriage

                step = ThresholdTriage()
            assert not isinstance(step, bool)
            self.triage = TriageScheduler(
                self.service,
                step,
                window_minutes=self.settings.triage_window_minutes,
                alerts=self._alerts,
                tick_s=self._triage_tick_s,
            )
            await self.triage.start()
        if self.settings.mqtt_url:
            from iomt.ingest.mqtt_gateway import MqttGateway

            self.gateway = MqttGateway(
                self.settings.mqtt_url, self.service, client_id=self._gateway_client_id
            )
            await self.gateway.start()
        else:
            self.broker = MqttBroker(
                DeviceAccessPolicy(self._verify),
                self._on_readings,
                on_refused=self._on_refused,
                host=self.settings.mqtt_host,
                port=self.settings.mqtt_port,
            )
            await self.broker.start()
            self.service.after_commit.append(self._maybe_resume)

    async def stop(self) -> None:
        """Stop taking messages, commit what is queued, stop the scheduler."""
        if self.broker is not None:
            await self.broker.stop()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.triage is not None:
            await self.triage.stop()
        await self.service.stop()

    def metrics(self) -> dict[str, Any]:
        """Ingest counters (messages, readings stored/duplicate, dead letters, commits)."""
        data = self.service.metrics.snapshot()
        if self.broker is not None:
            data["broker"] = {**self.broker.stats, "connections": self.broker.connection_count}
        return data

    # -- broker callbacks -------------------------------------------------------------------------
    def _verify(self, device_id: str, secret: str) -> bool:
        with self.sessions() as session:
            return verify_device_secret(session, device_id, secret) is not None

    def _on_readings(
        self, conn: Connection, device_id: str, payload: bytes, packet_id: int | None
    ) -> None:
        done = None if packet_id is None else _ack_when_stored(conn, packet_id)
        self.service.submit(
            device_id, payload, done=done, source="mqtt", topic=readings_topic(device_id)
        )
        self._maybe_pause()

    def _maybe_pause(self) -> None:
        if self.broker is not None and self.service.backlog > self.max_backlog:
            self.broker.pause()

    def _maybe_resume(self) -> None:
        if (
            self.broker is not None
            and self.broker.paused
            and self.service.backlog <= self.max_backlog // 2
        ):
            self.broker.resume()

    def _on_refused(self, refused: RefusedPublish) -> None:
        self.service.dead_letter(
            source="mqtt",
            device_id=refused.username,
            topic=refused.topic,
            payload=refused.payload,
            reason=refused.reason,
        )


def _ack_when_stored(conn: Connection, packet_id: int) -> DoneCallback:
    """The ``done`` callback of a QoS 1 message: PUBACK once committed."""

    def done(ok: bool) -> None:
        if ok:
            conn.ack(packet_id)
        else:  # not stored: no PUBACK; closing makes the device resend after reconnecting
            conn.close()

    return done
