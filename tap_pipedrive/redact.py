"""Keep secrets and terminal control sequences out of every log line, whatever code wrote it."""

from __future__ import annotations

import logging
import re
import typing as t

from typing_extensions import override

MASK = "***"
# Shorter values are too likely to match ordinary text to be worth masking.
MIN_SECRET_LENGTH = 6
# C0 and C1 control characters (newline and tab included: one message, one line) and
# the Unicode bidirectional overrides. Text from the API (error messages, field labels)
# reaches the log; raw, an ESC sequence could clear the screen or rewrite earlier lines.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with control characters written as escapes (ESC becomes ``\\x1b``)."""
    return _CONTROL.sub(_escape, text)


class SecretRedactor(logging.Filter):
    """A logging filter that masks known secret values and escapes control characters."""

    _instance: t.ClassVar[SecretRedactor | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    @classmethod
    def install(cls, secrets: t.Iterable[str]) -> SecretRedactor:
        """Register secrets and attach the one filter to every root handler."""
        if cls._instance is None:
            cls._instance = cls()
        redactor = cls._instance
        redactor.add(secrets)
        for handler in logging.getLogger().handlers:
            if redactor not in handler.filters:
                handler.addFilter(redactor)
        return redactor

    @classmethod
    def register(cls, *secrets: str | None) -> None:
        """Add secrets learnt during the run (refreshed tokens)."""
        cls.install(s for s in secrets if s)

    def add(self, secrets: t.Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = escape_controls(self.redact(message) if self.secrets else message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
