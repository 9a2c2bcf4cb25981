"""`make demo` end to end: sandbox -> tap -> Meltano -> target-jsonl, checked independently."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.sandbox import Sandbox
from tests.support.meltano import (
    REPO_ROOT,
    SANDBOX_API_TOKEN,
    MeltanoProject,
    count_differences,
)

DEMO_SCRIPT = REPO_ROOT / "scripts" / "demo.py"


def _load_demo_module():
    spec = importlib.util.spec_from_file_location("demo_script", DEMO_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo_module()


def test_demo_loads_exactly_what_the_sandbox_serves(meltano: MeltanoProject, tmp_path):
    result = subprocess.run(
        [sys.executable, str(DEMO_SCRIPT), "--output", str(tmp_path)],
        cwd=REPO_ROOT,
        env=meltano.environment({"MELTANO_BIN": str(meltano.executable)}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "streams match the sandbox's expected counts" in result.stdout
    run_log = (REPO_ROOT / ".demo" / "meltano-run.log").read_text(encoding="utf-8")
    assert SANDBOX_API_TOKEN not in run_log + result.stdout + result.stderr

    # Recount from the files and from a sandbox built here, not from the demo's report.
    expected = Sandbox(seed=demo.DEFAULT_SEED, scale=demo.DEFAULT_SCALE).expected_counts()
    records = {
        path.stem: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for path in tmp_path.glob("*.jsonl")
    }
    loaded = {stream: len(rows) for stream, rows in records.items()}
    assert count_differences(loaded, expected) == {}, "(loaded, expected) rows per stream"
    for stream, rows in records.items():
        duplicated = [
            key for key, seen in Counter(row.get("id") for row in rows).items() if seen > 1
        ]
        assert duplicated == [], f"{stream} has duplicate ids"
    # Nested values arrive as JSON structures, not as their string forms.
    assert any(
        isinstance(value, (dict, list)) for row in records["deals"] for value in row.values()
    )
    assert any(not value.isascii() for row in records["persons"] for value in _strings(row))


def _processes_with_environment_value(marker: str) -> list[int]:
    """Ids of live processes whose environment mentions ``marker`` (Linux /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_sigterm_stops_the_sandbox_meltano_and_its_plugins(meltano: MeltanoProject, tmp_path):
    # Scale 1 runs for minutes, so the interrupt surely lands mid-run.
    process = subprocess.Popen(
        [sys.executable, str(DEMO_SCRIPT), "--output", str(tmp_path), "--scale", "1"],
        cwd=REPO_ROOT,
        env=meltano.environment({"MELTANO_BIN": str(meltano.executable)}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    assert "listening on http://127.0.0.1:" in first_line
    port = int(first_line.rsplit(":", 1)[1])
    # Wait until the target writes records, so the tap and target are both running.
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob("*.jsonl")) and process.poll() is None:
        assert time.monotonic() < deadline, "no records were written within 120s"
        time.sleep(0.2)
    assert process.poll() is None, "the demo finished before it could be interrupted"
    # Meltano passes its environment on, so the plugins carry the output path too.
    assert len(_processes_with_environment_value(str(tmp_path))) >= 3

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    process.stdout.close()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    assert _processes_with_environment_value(str(tmp_path)) == []


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_compare_flags_missing_extra_and_different_streams():
    table, mismatched = demo.compare(
        loaded={"deals": 5, "persons": 3, "surprise": 1},
        expected={"deals": 5, "persons": 4, "stages": 2, "mail_threads": 0},
    )
    assert mismatched == ["persons", "stages", "surprise"]
    assert [line.split()[0] for line in table] == [
        "stream",
        "deals",
        "mail_threads",
        "persons",
        "stages",
        "surprise",
    ]
    assert table[1].split() == ["deals", "5", "5", "ok"]
    assert table[4].split() == ["stages", "0", "2", "MISMATCH"]


def test_compare_accepts_identical_counts():
    _, mismatched = demo.compare({"deals": 2000, "users": 12}, {"deals": 2000, "users": 12})
    assert mismatched == []


def test_previous_output_is_cleared_but_other_files_are_kept(tmp_path):
    (tmp_path / "deals.jsonl").write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("keep me", encoding="utf-8")
    demo.clear_previous_output(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    assert demo.loaded_counts(tmp_path) == {}


def test_loaded_counts_rejects_lines_that_are_not_records(tmp_path):
    (tmp_path / "deals.jsonl").write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(demo.DemoError, match=r"deals.jsonl:2 is not a JSON object"):
        demo.loaded_counts(tmp_path)


def test_bad_scale_is_one_clear_line():
    result = subprocess.run(
        [sys.executable, str(DEMO_SCRIPT), "--scale", "0"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--scale must be > 0, got 0.0" in result.stderr
    assert "Traceback" not in result.stderr
