"""The one ledger of secrets the tests check every output against.

A :class:`SecretLedger` holds every secret a test knows of: the sandbox's credentials,
each token and authorization code the sandbox issues while the ledger records, and any
value a test adds. ``assert_absent`` fails when one of them, or a long enough piece of
one, appears in what the tap printed or wrote.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# A token at least this long also leaks when only a piece of it is printed.
PIECE_CHECKED_FROM = 32


class SecretLedger:
    """Every secret of a test: sandbox credentials and each token it issues."""

    def __init__(self, *values: str | None) -> None:
        self.values: set[str] = {value for value in values if value}

    def add(self, *values: str | None) -> None:
        self.values.update(value for value in values if value)

    def leaks(self, text: str) -> list[str]:
        """Which secrets (or a long enough piece of one) appear in ``text``."""
        found = []
        # A snapshot: sessions in other threads may add tokens meanwhile.
        for value in tuple(self.values):
            pieces = [value]
            if len(value) >= PIECE_CHECKED_FROM:
                # A token cut short, or wrapped in a longer message, leaks all the same.
                pieces.append(value[8:28])
            if any(piece in text for piece in pieces):
                found.append(value)
        return found

    def assert_absent(self, *texts: str | bytes, where: str = "the output") -> None:
        for text in texts:
            if isinstance(text, bytes):
                text = text.decode("utf-8", errors="replace")
            leaked = self.leaks(text)
            assert not leaked, f"{len(leaked)} secret value(s) leaked into {where}"


_ledgers_lock = threading.Lock()
_active_ledgers: list[SecretLedger] = []
_recording_installed = False


@contextlib.contextmanager
def recording_issued_tokens(ledger: SecretLedger) -> Iterator[None]:
    """Add every access and refresh token the sandbox issues to ``ledger``.

    The sandbox's token makers are wrapped once per process and feed every active ledger,
    so sessions running in parallel threads never undo each other's recording.
    """
    global _recording_installed
    from pipedrive_sandbox import oauth as sandbox_oauth

    with _ledgers_lock:
        if not _recording_installed:
            for name in ("new_access_token", "new_refresh_token"):
                setattr(sandbox_oauth, name, _recording(getattr(sandbox_oauth, name)))
            _recording_installed = True
        _active_ledgers.append(ledger)
    try:
        yield
    finally:
        with _ledgers_lock:
            _active_ledgers.remove(ledger)


def _recording(original: Callable[[], str]) -> Callable[[], str]:
    def issue() -> str:
        value = original()
        with _ledgers_lock:
            for ledger in _active_ledgers:
                ledger.add(value)
        return value

    return issue


@pytest.fixture
def secret_ledger(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretLedger]:
    """Record every access token, refresh token and code the sandbox hands out."""
    from pipedrive_sandbox import oauth as sandbox_oauth

    ledger = SecretLedger(sandbox.client_secret)
    original_decide = sandbox_oauth.OAuthState.decide

    def decide(self: Any, form: Any) -> Any:
        status, target = original_decide(self, form)
        if status == 302:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            ledger.add(*query.get("code", []))
        return status, target

    monkeypatch.setattr(sandbox_oauth.OAuthState, "decide", decide)
    with recording_issued_tokens(ledger):
        yield ledger
