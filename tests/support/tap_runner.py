"""Run the tap in-process or as a CLI subprocess and collect its Singer messages.

``select`` is the one catalogue selector and ``capture`` the one in-process sync of the
tests; the other helpers here build on them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

from tap_pipedrive.streams.core import CORE_STREAMS
from tap_pipedrive.tap import TapPipedrive

# Each stream class sets ``name`` as a class attribute; the SDK types it per instance.
CORE_STREAM_NAMES = frozenset(stream.name for stream in CORE_STREAMS)  # type: ignore[misc]


@dataclasses.dataclass
class SyncResult:
    messages: list[dict]
    stdout: str = ""
    stderr: str = ""
    returncode: int = 0
    tap: TapPipedrive | None = None

    def records(self, stream: str) -> list[dict]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def record_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in self.messages:
            if message["type"] == "RECORD":
                counts[message["stream"]] = counts.get(message["stream"], 0) + 1
        return counts

    def schemas(self) -> dict[str, dict]:
        return {m["stream"]: m["schema"] for m in self.messages if m["type"] == "SCHEMA"}

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict | None:
        return self.states[-1] if self.states else None


def parse_messages(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def select(catalog: dict, streams: t.Collection[str]) -> dict:
    """A copy of ``catalog`` with only the named streams selected (the one selector).

    A name the catalog lacks selects nothing: some streams exist only with some settings.
    """
    chosen = copy.deepcopy(catalog)
    for entry in chosen["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return chosen


def discover(config: dict, streams: t.Collection[str]) -> dict:
    """A catalog discovered with ``config``, with only ``streams`` selected."""
    return select(TapPipedrive(config=config, validate_config=False).catalog_dict, streams)


def catalog_for(sandbox: t.Any, streams: t.Collection[str]) -> dict:
    """A catalog selecting ``streams``, discovered with the sandbox's API token.

    With the API token, discovery makes no OAuth call: it uses no token meant for the sync.
    """
    return discover({"api_token": sandbox.api_token, "api_url": sandbox.url}, streams)


def capture(tap: TapPipedrive) -> tuple[list[dict], Exception | None]:
    """Run ``tap.sync_all()`` in this process: the messages it wrote, and what ended it.

    The one in-process sync of the tests. The error is None when the sync finished.
    """
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8", write_through=True)
    error = None
    with contextlib.redirect_stdout(wrapper):
        try:
            tap.sync_all()
        except Exception as exc:
            error = exc
        wrapper.flush()
    return parse_messages(buffer.getvalue().decode("utf-8")), error


def sync_tap(tap: TapPipedrive) -> list[dict]:
    """The messages of a sync expected to finish; the error that ends it propagates."""
    messages, error = capture(tap)
    if error is not None:
        raise error
    return messages


def sync_capturing(
    config: dict,
    *,
    streams: set[str] | None = None,
    catalog: dict | None = None,
    state: dict | None = None,
    hook: t.Callable[[TapPipedrive], None] | None = None,
) -> tuple[TapPipedrive, list[dict], Exception | None]:
    """Sync in this process; ``hook(tap)`` may patch the tap first.

    ``streams`` selects streams of a catalog discovered with ``config``; ``catalog`` is
    used as given. Returns the tap, the messages written to stdout, and the exception that
    ended the sync (None when it finished).
    """
    if streams is not None:
        assert catalog is None, "pass streams or a catalog, not both"
        catalog = discover(config, streams)
    tap = TapPipedrive(config=config, state=state, catalog=catalog)
    if hook is not None:
        hook(tap)
    messages, error = capture(tap)
    return tap, messages, error


def run_tap(
    config: dict,
    *,
    state: dict | None = None,
    streams: set[str] | None = None,
    catalog: dict | None = None,
) -> SyncResult:
    """Sync in this process; returns the messages written to stdout (errors propagate)."""
    tap, messages, error = sync_capturing(config, streams=streams, catalog=catalog, state=state)
    if error is not None:
        raise error
    return SyncResult(messages=messages, tap=tap)


def run_cli(
    config: dict,
    *args: str,
    state: dict | None = None,
    streams: set[str] | None = None,
    timeout: float = 300,
    env: dict | None = None,
) -> SyncResult:
    """Run `python -m tap_pipedrive` as a subprocess with the config written to a file."""
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(config))
        command = [sys.executable, "-m", "tap_pipedrive", "--config", str(config_path), *args]
        if state is not None:
            state_path = Path(tmp) / "state.json"
            state_path.write_text(json.dumps(state))
            command += ["--state", str(state_path)]
        if streams is not None:
            catalog_path = Path(tmp) / "catalog.json"
            catalog = discover(config, streams)
            catalog_path.write_text(json.dumps(catalog))
            command += ["--catalog", str(catalog_path)]
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    return SyncResult(
        messages=parse_messages(completed.stdout),
        stdout=completed.stdout,
        stderr=completed.stderr,
        returncode=completed.returncode,
    )
