"""Shared pytest configuration."""

from __future__ import annotations

pytest_plugins = ["tests.support.meltano", "tests.support.postgres"]
