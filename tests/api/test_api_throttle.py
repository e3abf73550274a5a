"""Sign-in limits: failed passwords lock a user name (and an address) for a sliding window."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import World, build_world

from iomt.api.throttle import LoginThrottle, SignInGuard
from iomt.config import Settings


class FakeClock:
    """Monotonic seconds that only move when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_locks_after_the_limit_and_unlocks_as_failures_leave_the_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(3, 60.0, clock=clock)
    for _ in range(2):
        throttle.failed("k")
        clock.now += 10
    assert throttle.retry_after("k") is None  # 2 of 3
    throttle.failed("k")  # failures at 1000, 1010, 1020
    assert throttle.retry_after("k") == pytest.approx(40.0)  # until 1000 + 60
    assert throttle.retry_after("other") is None
    clock.now = 1060.0  # the first failure leaves the window: 2 of 3 again
    assert throttle.retry_after("k") is None
    throttle.failed("k")  # 1010, 1020, 1060: locked until 1010 + 60
    assert throttle.retry_after("k") == pytest.approx(10.0)
    throttle.succeeded("k")
    assert throttle.retry_after("k") is None


def test_throttle_forgets_the_oldest_keys_beyond_its_bound() -> None:
    throttle = LoginThrottle(1, 60.0, max_keys=2, clock=FakeClock())
    for key in ("a", "b", "c"):
        throttle.failed(key)
    assert throttle.retry_after("a") is None
    assert throttle.retry_after("b") is not None and throttle.retry_after("c") is not None


def test_guard_limits_addresses_more_loosely_than_user_names() -> None:
    guard = SignInGuard(user_failures=2, address_failures=3, window_seconds=60, clock=FakeClock())
    guard.failed("Ann", "10.0.0.1")
    guard.failed("ann ", "10.0.0.1")  # user names compare trimmed and case-folded
    assert guard.retry_after("ANN", "10.0.0.9") is not None
    assert guard.retry_after("bob", "10.0.0.1") is None  # 2 of 3 for the address
    guard.failed("bob", "10.0.0.1")
    assert guard.retry_after("carl", "10.0.0.1") is not None  # the address is locked now
    assert guard.retry_after("carl", "10.0.0.2") is None


@pytest.fixture
def strict_world(tmp_path: Path) -> World:
    settings = Settings(data_dir=tmp_path / "data", login_max_failures=3, login_lock_seconds=600)
    return build_world(settings)


def _token(world: World, username: str, password: str) -> tuple[int, dict[str, str]]:
    response = world.client.post(
        "/api/auth/token", data={"username": username, "password": password}
    )
    return response.status_code, dict(response.headers)


def test_api_refuses_sign_in_after_repeated_wrong_passwords(strict_world: World) -> None:
    world = strict_world
    with world.client:
        assert _token(world, "drA", "nope")[0] == 401
        assert _token(world, "drA", "clinician-a")[0] == 200  # success forgives the failure
        for _ in range(3):
            assert _token(world, "drA", "nope")[0] == 401
        status, headers = _token(world, "drA", "clinician-a")  # right password, still locked
        assert status == 429 and 590 <= int(headers["retry-after"]) <= 600
        assert _token(world, "drB", "clinician-b")[0] == 200  # other people are not locked out
    world.context.engine.dispose()


def test_dashboard_login_shares_the_limit(strict_world: World) -> None:
    world = strict_world
    with world.client:
        for _ in range(3):
            page = world.client.post("/login", data={"username": "drA", "password": "x"})
            assert page.status_code == 401
        page = world.client.post(
            "/login", data={"username": "drA", "password": "clinician-a"}, follow_redirects=False
        )
        assert page.status_code == 429 and "Too many failed sign-ins" in page.text
        assert "set-cookie" not in page.headers and int(page.headers["retry-after"]) >= 1
        assert _token(world, "drA", "clinician-a")[0] == 429
    world.context.engine.dispose()
