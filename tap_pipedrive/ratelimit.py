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
"""

from __future__ import annotations

import threading
import time
from collections import deque

import requests

# Requests of the window kept in reserve, for other clients of the same user and for
# requests still in flight when a header arrives.
RESERVE = 2
# Pipedrive's window length; the margin covers the time a request takes to reach the
# server (the window counts arrival times, the log counts send times).
WINDOW_SECONDS = 2.0
WINDOW_MARGIN_SECONDS = 0.25
# The smallest documented burst limit (Lite plan, API token); used until a response says more.
ASSUMED_LIMIT = 20


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
        limit = _header_number(response, "x-ratelimit-limit")
        remaining = _header_number(response, "x-ratelimit-remaining")
        reset = _header_number(response, "x-ratelimit-reset")
        with self._lock:
            if response.status_code != 429:
                self._consecutive_429 = 0
            if limit is not None and limit >= 1:
                self._limit = int(limit)
            if remaining is not None and remaining < self._reserve:
                # Our own requests leave the reserve untouched: someone else is using the
                # same window (or it is longer than ours), so the server's count decides.
                wait = reset if reset is not None else WINDOW_SECONDS
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


def _header_number(response: requests.Response, name: str) -> float | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
