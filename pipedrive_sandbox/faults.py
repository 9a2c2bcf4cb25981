"""Fault injection: scripted misbehaviour applied to matching requests."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from pipedrive_sandbox.elsewhere import TRANSPORT_KINDS
from pipedrive_sandbox.envelope import ENVELOPE_MODES

KINDS = (
    "burst_429",
    "daily_429",
    "http_error",
    "slow",
    "reset",
    "malformed_json",
    "html_403",
    "expire_token",
    "invalid_grant",
    "hostile",
    *TRANSPORT_KINDS,
    # A list answer with broken paging or shape (modes in envelope.py).
    "envelope",
    # A normal answer whose x-ratelimit-* headers say what the params say.
    "rate_headers",
)
HOSTILE_MODES = (
    "zero_dates",
    "null_objects",
    "unknown_fields",
    "long_strings",
    "nul_chars",
    "duplicate_ids",
    "empty_page_with_cursor",
)
# 402/403 are Pipedrive's refusals (plan, scope), 404/410 a record that is gone.
HTTP_ERROR_STATUSES = (402, 403, 404, 410, 500, 502, 503, 524)
# Faults a well-behaved client should ride out by retrying.
RETRIABLE_MIX: tuple[tuple[str, dict[str, Any]], ...] = (
    ("burst_429", {"reset": 1}),
    ("http_error", {"status": 500}),
    ("http_error", {"status": 502}),
    ("http_error", {"status": 503}),
    ("http_error", {"status": 524}),
    ("reset", {}),
    ("slow", {"delay": 0.05}),
)


@dataclass
class Fault:
    kind: str
    path: str = ".*"
    count: int | None = 1
    after: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    applied: int = 0
    # What a fault that plays a longer game (envelope cursor_cycle) remembers.
    memory: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.applied >= self.count

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "count": self.count,
            "after": self.after,
            "applied": self.applied,
            **self.params,
        }

    def hostile_modes(self) -> set[str]:
        modes = {name for name in HOSTILE_MODES if self.params.get(name)}
        what = self.params.get("what") or self.params.get("mode")
        if isinstance(what, str):
            modes.update(part.strip() for part in what.split(",") if part.strip())
        elif isinstance(what, (list, tuple)):
            modes.update(str(part) for part in what)
        return modes


@dataclass
class RandomMix:
    """Random retriable faults on a fraction of requests (chaos tests)."""

    rng: random.Random
    rate: float
    path: str
    choices: tuple[tuple[str, dict[str, Any]], ...]

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)


class FaultRegistry:
    """``sb.faults``: ``add(kind, path=regex, count=1, after=0, **params)`` and ``clear()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._mixes: list[RandomMix] = []

    def add(
        self,
        kind: str,
        path: str = ".*",
        count: int | None = 1,
        after: int = 0,
        **params: Any,
    ) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "http_error":
            status = int(params.setdefault("status", 500))
            if status not in HTTP_ERROR_STATUSES:
                raise ValueError(f"http_error status {status} is not one of {HTTP_ERROR_STATUSES}")
        if count is not None and count < 0:
            raise ValueError(f"fault count must be >= 0 or None, got {count}")
        try:
            re.compile(path)
        except re.error as exc:
            raise ValueError(f"fault path {path!r} is not a valid regex: {exc}") from None
        fault = Fault(kind, path, count, after, dict(params))
        if kind == "hostile":
            unknown = fault.hostile_modes() - set(HOSTILE_MODES)
            if unknown or not fault.hostile_modes():
                raise ValueError(
                    f"hostile fault needs one or more of {', '.join(HOSTILE_MODES)}; "
                    f"got {sorted(unknown) or 'none'}"
                )
        if kind == "envelope":
            unknown = fault.hostile_modes() - set(ENVELOPE_MODES)
            if unknown or not fault.hostile_modes():
                raise ValueError(
                    f"envelope fault needs one or more of {', '.join(ENVELOPE_MODES)}; "
                    f"got {sorted(unknown) or 'none'}"
                )
        if kind == "rate_headers":
            names = set(params) - {"limit", "remaining", "reset"}
            if names or not params:
                raise ValueError("rate_headers fault takes limit, remaining and/or reset")
        with self._lock:
            self._faults.append(fault)
        return fault

    def random_mix(
        self,
        seed: int,
        rate: float,
        path: str = r"^/(api/)?v[12]/",
        kinds: tuple[tuple[str, dict[str, Any]], ...] | None = None,
    ) -> None:
        """Install random retriable faults on about ``rate`` of matching API requests."""
        if not 0 <= rate <= 1:
            raise ValueError(f"random_mix rate must be within 0..1, got {rate}")
        with self._lock:
            self._mixes.append(RandomMix(random.Random(seed), rate, path, kinds or RETRIABLE_MIX))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._mixes.clear()

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.describe() for fault in self._faults if not fault.exhausted]

    def take(self, path: str, scope: str = "api") -> Fault | None:
        """The fault to apply to this request, if any (consumes one use of it).

        ``scope`` is ``"api"`` or ``"token"`` (the OAuth token endpoint).  ``invalid_grant``
        only ever hits token calls; other kinds hit token calls only when their path was
        written for them (not the match-all default), so that a plain
        ``faults.add("http_error")`` lands on the API call a test is watching, not on the
        token refresh that precedes it."""
        with self._lock:
            chosen: Fault | None = None
            for fault in self._faults:
                if fault.exhausted or not fault._regex.search(path):
                    continue
                if not _in_scope(fault, scope):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                if chosen is None:
                    chosen = fault
                    fault.applied += 1
            self._faults = [fault for fault in self._faults if not fault.exhausted]
            if chosen is not None:
                return chosen
            for mix in self._mixes:
                if scope != "api":
                    continue
                if mix._regex.search(path) and mix.rng.random() < mix.rate:
                    kind, params = mix.choices[int(mix.rng.random() * len(mix.choices))]
                    return Fault(kind, mix.path, 1, 0, dict(params), applied=1)
            return None


TOKEN_CAPABLE = ("http_error", "slow", "reset", "invalid_grant", "redirect")


def _in_scope(fault: Fault, scope: str) -> bool:
    if scope == "token":
        return fault.kind == "invalid_grant" or (
            fault.kind in TOKEN_CAPABLE and fault.path not in (".*", "")
        )
    return fault.kind != "invalid_grant"
