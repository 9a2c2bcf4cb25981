"""Request pacing that keeps a sync inside Pipedrive's burst window.

Pipedrive counts requests per token in a rolling 2-second window (20 to 480 requests
depending on plan and auth kind) and reports ``x-ratelimit-limit``,
``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds until the window frees).

Two mechanisms work together, for every thread of a run:

- A local log of send times. A request is sent only while fewer than
  ``limit - RESERVE`` requests went out in the last window. The limit is learned from
  ``x-ratelimit-limit``; until the first answer, the smallest documented limit is assumed.
  The log is what keeps concurrent streams from overrunning the window between answers.
- The server's own count. When ``x-ratelimit-remaining`` falls below the reserve (other
  clients of the same user share the window), everything waits ``x-ratelimit-reset``.

The headers are the server's word, and only a number that makes sense is taken: a value
that is not a finite number, or is negative, counts as absent. A reset longer than
``MAX_RESET_SECONDS`` is no 2-second window: rather than sleep for it (``1e9`` is 31 years)
the run ends with one line, and the state written so far is kept.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import requests

from tap_pipedrive.errors import PipedriveAPIError

# Requests of the window kept in reserve, for other clients of the same user and for
# requests still in flight when a header arrives.
RESERVE = 2
# Pipedrive's window length; the margin covers the time a request takes to reach the
# server (the window counts arrival times, the log counts send times).
WINDOW_SECONDS = 2.0
WINDOW_MARGIN_SECONDS = 0.25
# The smallest documented burst limit (Lite plan, API token); used until a response says more.
ASSUMED_LIMIT = 20
# The longest wait for the window that is honoured. Pipedrive's window is 2 seconds, so its
# reset never says more than that; a minute leaves room for a proxy or a slow clock. A
# server asking for longer is not describing a burst window (the daily budget resets at
# midnight, which no run should sleep through).
MAX_RESET_SECONDS = 60.0
# The largest burst limit believed: well above Pipedrive's largest (480 per window), so a
# real plan is never capped, while an absurd value cannot switch pacing off altogether.
MAX_LIMIT = 1000


class RateLimitWaitTooLong(PipedriveAPIError):
    """The server asked to wait longer than a burst window can need."""


class RateLimiter:
    """Shared by all streams and threads of a run."""

    def __init__(
        self,
        *,
        window: float = WINDOW_SECONDS,
        margin: float = WINDOW_MARGIN_SECONDS,
        reserve: int = RESERVE,
        assumed_limit: int = ASSUMED_LIMIT,
    ) -> None:
        self._lock = threading.Lock()
        self._window = window + margin
        self._reserve = reserve
        self._limit = assumed_limit
        self._sent: deque[float] = deque()
        self._resume_at = 0.0
        self._consecutive_429 = 0
        self.requests = 0
        self.pauses = 0
        self.paused_seconds = 0.0

    @property
    def limit(self) -> int:
        """The burst limit in force (learned from the last response that stated one)."""
        return self._limit

    def observe(self, response: requests.Response) -> None:
        """Read the window headers of any response."""
        limit = header_number(response, "x-ratelimit-limit")
        remaining = header_number(response, "x-ratelimit-remaining")
        # Read only when it is waited for: an odd reset beside a comfortable count is moot.
        wait = None
        if remaining is not None and remaining < self._reserve:
            # Our own requests leave the reserve untouched: someone else is using the
            # same window (or it is longer than ours), so the server's count decides.
            wait = reset_seconds(response)
            if wait is None:
                wait = WINDOW_SECONDS
        with self._lock:
            if response.status_code != 429:
                self._consecutive_429 = 0
            if limit is not None and limit >= 1:
                self._limit = int(min(limit, MAX_LIMIT))
            if wait is not None:
                self._resume_at = max(self._resume_at, time.monotonic() + wait)

    def note_429(self) -> int:
        """Count consecutive 429s; many in a row mean the daily budget, not the burst."""
        with self._lock:
            self._consecutive_429 += 1
            return self._consecutive_429

    def before_request(self) -> None:
        """Block until one more request fits in the window, then count it as sent."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                horizon = now - self._window
                while self._sent and self._sent[0] <= horizon:
                    self._sent.popleft()
                capacity = max(1, self._limit - self._reserve)
                if now < self._resume_at:
                    wait = self._resume_at - now
                elif len(self._sent) >= capacity:
                    wait = self._sent[0] - horizon
                else:
                    self._sent.append(now)
                    self.requests += 1
                    if waited:
                        self.pauses += 1
                        self.paused_seconds += waited
                    return
            # A small floor avoids spinning on rounding; the loop re-checks after waking.
            wait = max(wait, 0.001)
            time.sleep(wait)
            waited += wait


def header_number(response: requests.Response, name: str) -> float | None:
    """A rate-limit header as a finite number >= 0; None when absent or anything else."""
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def reset_seconds(response: requests.Response) -> float | None:
    """The wait ``x-ratelimit-reset`` asks for, or None when it asks for nothing usable.

    Raises ``RateLimitWaitTooLong`` (one line, the run ends) beyond ``MAX_RESET_SECONDS``.
    """
    reset = header_number(response, "x-ratelimit-reset")
    if reset is not None and reset > MAX_RESET_SECONDS:
        msg = (
            f"Pipedrive asked to wait {reset:.6g} seconds (x-ratelimit-reset) before the next "
            f"request; its burst window is {WINDOW_SECONDS:.0f} seconds and this tap waits at "
            f"most {MAX_RESET_SECONDS:.0f}. Stopping; the state is kept, run again later."
        )
        raise RateLimitWaitTooLong(msg)
    return reset
