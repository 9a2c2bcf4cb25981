"""Bounded waits for conditions another thread makes true."""

from __future__ import annotations

import time
from collections.abc import Callable

# Far above what a condition needs on a loaded machine; still a bound.
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.005


def wait_until(condition: Callable[[], object], timeout: float = WAIT_SECONDS) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (checked once more at
    the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_SECONDS)
    return bool(condition())
