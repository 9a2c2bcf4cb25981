"""Keep secrets out of every log line, whatever code produced it."""

from __future__ import annotations

import logging
import typing as t

MASK = "***"
# Shorter values are too likely to match ordinary text to be worth masking.
MIN_SECRET_LENGTH = 6


class SecretRedactor(logging.Filter):
    """A logging filter that masks known secret values in messages and arguments."""

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

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = self.redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True
