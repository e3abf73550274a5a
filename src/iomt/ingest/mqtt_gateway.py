"""Gateway to an external MQTT broker (Mosquitto): subscribe, store, then acknowledge.

Set ``IOMT_MQTT_URL=mqtt://host:1883`` (or ``mqtt://user:password@host:port``). The gateway is
a paho-mqtt client with a fixed client id and a persistent session (``clean_session=False``)
that subscribes with QoS 1 to ``iomt/devices/+/readings``. It uses paho's manual
acknowledgement: the PUBACK for a message goes to the broker only after the ingest service has
committed it. If the gateway dies first, the broker still holds the message in the gateway's
session and delivers it again when the gateway reconnects (resent readings are stored once).

Device authentication and the per-device ACL are the external broker's job; see
:mod:`iomt.ingest.mosquitto_auth` for the password and ACL files.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from iomt.errors import ConfigError
from iomt.ingest.mqtt_broker import device_of_readings_topic
from iomt.ingest.service import IngestService

log = logging.getLogger(__name__)

#: Topic filter the gateway subscribes to.
READINGS_FILTER = "iomt/devices/+/readings"


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """Split ``mqtt://[user[:password]@]host[:port]`` into its parts."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ConfigError(f"MQTT URL {url!r} must look like mqtt://host:1883")
    return parsed.hostname, parsed.port or 1883, parsed.username, parsed.password


class MqttGateway:
    """Subscribes to device readings on an external broker and feeds the ingest service.

    Parameters
    ----------
    url
        ``mqtt://[user[:password]@]host[:port]``.
    service
        The ingest service.
    client_id
        Fixed client id: the broker keeps the persistent session (and the unacknowledged
        messages) under it.
    """

    def __init__(
        self, url: str, service: IngestService, *, client_id: str = "iomt-gateway"
    ) -> None:
        self.host, self.port, username, password = parse_mqtt_url(url)
        self.service = service
        self.client_id = client_id
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    async def start(self, timeout_s: float = 30.0) -> None:
        """Connect, subscribe and wait until the subscription is acknowledged."""
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        ok = await asyncio.to_thread(self._subscribed.wait, timeout_s)
        if not ok:
            self.client.loop_stop()
            raise ConfigError(f"could not subscribe at MQTT broker {self.host}:{self.port}")
        log.info("MQTT gateway subscribed to %s at %s:%d", READINGS_FILTER, self.host, self.port)

    async def stop(self) -> None:
        """Disconnect (unacknowledged messages stay queued in the broker's session)."""
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    # -- paho callbacks (network thread) ---------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT gateway connection refused: %s", reason)
            return
        client.subscribe(READINGS_FILTER, qos=1)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        device_id = device_of_readings_topic(message.topic)
        mid, qos = message.mid, message.qos
        payload = bytes(message.payload)
        assert self._loop is not None
        if device_id is None:
            self._loop.call_soon_threadsafe(self._refuse, message.topic, payload)
            client.ack(mid, qos)
            return
        self._loop.call_soon_threadsafe(self._submit, device_id, message.topic, payload, mid, qos)

    # -- event loop ------------------------------------------------------------------------------
    def _submit(self, device_id: str, topic: str, payload: bytes, mid: int, qos: int) -> None:
        def done(ok: bool) -> None:
            if ok:
                self.client.ack(mid, qos)
            # not stored: no ack; the broker redelivers after the gateway reconnects

        self.service.submit(device_id, payload, done=done, source="mqtt", topic=topic)

    def _refuse(self, topic: str, payload: bytes) -> None:
        self.service.dead_letter(
            source="mqtt",
            device_id=None,
            topic=topic,
            payload=payload,
            reason=f"topic {topic!r} is not iomt/devices/{{device_id}}/readings",
        )
