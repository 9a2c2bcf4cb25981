"""Run the tap in-process or as a CLI subprocess and collect its Singer messages."""

from __future__ import annotations

import contextlib
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

CORE_STREAM_NAMES = frozenset(stream.name for stream in CORE_STREAMS)


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


def select_only(tap: TapPipedrive, streams: set[str]) -> dict:
    """A catalog with only the named streams selected."""
    catalog = tap.catalog_dict
    for entry in catalog["streams"]:
        selected = entry["tap_stream_id"] in streams
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = selected
    return catalog


def sync_capturing(
    config: dict,
    *,
    streams: set[str] | None = None,
    state: dict | None = None,
    hook: t.Callable[[TapPipedrive], None] | None = None,
) -> tuple[TapPipedrive, list[dict], Exception | None]:
    """Sync in this process; ``hook(tap)`` may patch the tap first.

    Returns the tap, the messages written to stdout, and the exception that ended the
    sync (None when it finished).
    """
    catalog = None
    if streams is not None:
        catalog = select_only(TapPipedrive(config=config, validate_config=False), streams)
    tap = TapPipedrive(config=config, state=state, catalog=catalog)
    if hook is not None:
        hook(tap)
    buffer = io.BytesIO()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8", write_through=True)
    error = None
    with contextlib.redirect_stdout(wrapper):
        try:
            tap.sync_all()
        except Exception as exc:
            error = exc
        wrapper.flush()
    return tap, parse_messages(buffer.getvalue().decode("utf-8")), error


def run_tap(
    config: dict, *, state: dict | None = None, streams: set[str] | None = None
) -> SyncResult:
    """Sync in this process; returns the messages written to stdout (errors propagate)."""
    tap, messages, error = sync_capturing(config, streams=streams, state=state)
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
            catalog = select_only(TapPipedrive(config=config, validate_config=False), streams)
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
