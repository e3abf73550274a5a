"""In-process fan-out of alerts to live subscribers (the SSE feed of the dashboard).

:class:`AlertFeed` keeps one bounded queue per subscriber; a slow subscriber loses its oldest
queued events (counted in :attr:`AlertFeed.dropped`) instead of blocking the publisher. The
feed is live only: the alerts table is the record (a reconnecting client reloads from it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class AlertFeed:
    """Publish alert dicts to every current subscriber.

    Parameters
    ----------
    max_queue
        Events kept per subscriber before the oldest are dropped.
    """

    def __init__(self, max_queue: int = 1000) -> None:
        self.max_queue = max_queue
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.dropped = 0

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are listening."""
        return len(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every subscriber (call on the event loop; never blocks)."""
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                    self.dropped += 1
            queue.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Yield events published from now on, until the consumer stops iterating."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.max_queue)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
