"""Slow down password guessing: too many failed sign-ins lock a user name and a client address.

Failures are counted per user name and per client address in sliding windows. While either
has reached its limit, sign-ins are refused with 429 and a ``Retry-After`` before the password
is checked, so a locked attempt also costs no argon2 work. The address limit is higher than
the user-name limit (one address, e.g. a ward's NAT, serves many people). A successful
sign-in clears its user name's failures, not its address's. Counts live in the process; behind
several workers each worker counts on its own, so the effective limits are multiplied by the
number of workers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """Sliding-window failure counter per key.

    Parameters
    ----------
    max_failures
        Failures inside the window that lock a key.
    window_seconds
        Length of the window; a lock lifts when its oldest counted failure leaves it.
    max_keys
        Keys remembered at most (least recently failed keys are forgotten first), bounding
        memory under a spray of user names or addresses.
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 300.0,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures must be >= 1 and window_seconds > 0")
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` unlocks; None if it is not locked."""
        now = self._clock()
        with self._lock:
            times = self._recent(key, now)
            if times is None or len(times) < self.max_failures:
                return None
            # unlocks once enough failures left the window to drop below the limit
            return times[-self.max_failures] + self.window_seconds - now

    def failed(self, key: str) -> None:
        """Count one failed sign-in against ``key``."""
        now = self._clock()
        with self._lock:
            times = self._recent(key, now) or deque()
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        """Forget the failures of ``key`` (a correct password for that user name)."""
        with self._lock:
            self._failures.pop(key, None)


class SignInGuard:
    """The two limits of a sign-in: per user name and per client address.

    Parameters
    ----------
    user_failures
        Failed sign-ins for one user name inside the window that lock it.
    address_failures
        Failed sign-ins from one client address inside the window that lock it.
    window_seconds
        The sliding window of both limits.
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        user_failures: int = 5,
        address_failures: int = 50,
        window_seconds: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = LoginThrottle(user_failures, window_seconds, clock=clock)
        self.addresses = LoginThrottle(address_failures, window_seconds, clock=clock)

    @staticmethod
    def _user(username: str) -> str:
        return username.strip().lower()[:128]

    def retry_after(self, username: str, address: str | None) -> float | None:
        """Seconds to wait before this user name may try again from this address, or None."""
        waits = [self.users.retry_after(self._user(username))]
        if address:
            waits.append(self.addresses.retry_after(address))
        locked = [w for w in waits if w is not None]
        return max(locked) if locked else None

    def failed(self, username: str, address: str | None) -> None:
        """Count a wrong password (or unknown user) for the user name and the address."""
        self.users.failed(self._user(username))
        if address:
            self.addresses.failed(address)

    def succeeded(self, username: str) -> None:
        """A correct password: the user name's failures are forgiven."""
        self.users.succeeded(self._user(username))


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
