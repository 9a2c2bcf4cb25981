"""Shared pytest configuration."""

from __future__ import annotations

# secrets before oauth: oauth imports it (through delivery), and a plugin must not be imported before pytest
# registers it (its asserts would not be rewritten).
pytest_plugins = [
    "tests.support.meltano",
    "tests.support.secrets",
    "tests.support.oauth",
    "tests.support.postgres",
    "tests.support.release",
]

import pytest  # noqa: E402

# Small enough that a full sync of every stream (with per-parent children) takes
# seconds, large enough for several pages per core stream at small page sizes.
SANDBOX_SCALE = 0.05
# Fixtures of the end-to-end tests: Meltano projects, PostgreSQL servers, built wheels. A
# test using one is marked ``end_to_end``; `make pytest-sdk-next` leaves those out, since
# Meltano and the built wheel run the tap from venvs of their own, with the pinned SDK.
END_TO_END_FIXTURES = frozenset(
    {"meltano", "postgres_server", "postgres_database", "built_dist", "tagged_checkout"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if END_TO_END_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.end_to_end)


@pytest.fixture(autouse=True)
def _private_token_store(tmp_path_factory, monkeypatch):
    """OAuth runs persist tokens in a per-user store: keep tests away from the real one."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
    monkeypatch.delenv("MELTANO_PROJECT_ROOT", raising=False)


@pytest.fixture
def sandbox():
    """A fresh sandbox per test, so mutations and faults never leak between tests."""
    from pipedrive_sandbox import Sandbox

    # No burst limiter: tests of pacing and 429s make their own sandboxes with one.
    with Sandbox(seed=1, scale=SANDBOX_SCALE, burst_limit=None) as sb:
        yield sb


@pytest.fixture
def api_config(sandbox) -> dict:
    """Tap config that reads the sandbox with its API token."""
    return {"api_token": sandbox.api_token, "api_url": sandbox.url}


@pytest.fixture
def oauth_config(sandbox) -> dict:
    """Tap config in OAuth refresh-token mode against the sandbox."""
    return {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.issue_refresh_token(),
        "oauth_url": sandbox.url,
    }
