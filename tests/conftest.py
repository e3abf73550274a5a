"""Fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import profiles

from iomt.store.credentials import set_hash_parameters


@pytest.fixture(autouse=True)
def _cheap_argon2() -> Iterator[None]:
    """Hash with argon2's test profile: same code path, milliseconds instead of 100s of ms.

    Verification reads the parameters from the hash, so a service started by a test (even in a
    subprocess, which hashes with the production profile) checks these hashes as usual.
    """
    set_hash_parameters(profiles.CHEAPEST)
    yield
    set_hash_parameters(profiles.RFC_9106_LOW_MEMORY)
