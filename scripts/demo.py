"""End-to-end demo: sandbox API -> tap-pipedrive -> Meltano -> SQLite database.

Starts the local Pipedrive sandbox, runs ``meltano run tap-pipedrive target-sqlite``
against it into a fresh database file (printing the tap's progress lines as they come),
counts the rows of every table with sqlite3, prints them next to the sandbox's expected
counts and exits 1 on any difference. It ends by writing ``report.html`` next to the
database: records, API calls and time per stream as bars, beside the expected counts.
``make demo`` installs everything first and then runs this script.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # Run as a file (python scripts/demo.py), so the repository root is not on the path.
    sys.path.insert(0, str(REPO_ROOT))

from tap_pipedrive.streams import STREAM_TYPES  # noqa: E402
from tests.support.meltano import (  # noqa: E402
    MeltanoUnavailableError,
    clean_environment,
    find_meltano,
    sandbox_tap_environment,
)

# Streams the project's settings leave out (mail is on in meltano.yml; field history comes
# from the changelogs, the updates feeds only with field_history: flow).
NOT_READ = {
    str(vars(stream)["name"])  # declared on every stream class
    for stream in STREAM_TYPES
    if not stream.enabled({"include_mail_messages": True})
}

WORK_DIR = REPO_ROOT / ".demo"
DEFAULT_DATABASE = REPO_ROOT / "output" / "demo" / "pipedrive.db"
LOADER = "target-sqlite"
DEFAULT_SEED = 1
# About a minute with every stream; scale 1 (2,000 deals) spends most of its time in
# per-deal child requests held to the sandbox's 80-requests-per-2-seconds limit.
DEFAULT_SCALE = 0.1
SANDBOX_START_TIMEOUT = 60.0
RUN_TIMEOUT = 1200.0
# Seconds between the tap's progress lines during the demo (the tap's default is 30).
PROGRESS_INTERVAL = 10
REPORT_NAME = "report.html"
# A line the tap logged, as Meltano prints it: "<time> [info     ] tap-pipedrive <message>".
TAP_LINE = re.compile(r"^\S+ \[info\s*\] tap-pipedrive (?P<message>.*)$")
SUMMARY_TITLE = "Sync summary: records, API calls and time per stream"
SUMMARY_ROW = re.compile(
    r"^(?P<stream>\S+)\s+(?P<records>[\d,]+)\s+(?P<calls>[\d,]+)\s+(?P<time>.+?)\s*$"
)


class DemoError(Exception):
    """A failure reported to the user as one line."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__)
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"sandbox data seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=DEFAULT_SCALE,
        help=f"sandbox size; 1 means 2,000 deals (default {DEFAULT_SCALE})",
    )
    parser.add_argument(
        "--database",
        type=Path,
        default=DEFAULT_DATABASE,
        help="SQLite database file, replaced on every run (default output/demo/pipedrive.db)",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale must be > 0, got {args.scale}")
    return args


def start_sandbox(seed: int, scale: float, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m pipedrive_sandbox`` and return the process and its base URL."""
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipedrive_sandbox",
                "--port",
                "0",
                "--seed",
                str(seed),
                "--scale",
                str(scale),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=SANDBOX_START_TIMEOUT)
    url = process.stdout.readline().strip() if ready else ""
    if not url.startswith("http://127.0.0.1:"):
        stop_process_group(process)
        raise DemoError(f"the sandbox did not start (see {log_path})")
    return process, url


def stop_process_group(process: subprocess.Popen[str]) -> None:
    """Stop a child started with ``start_new_session`` together with its own children.

    Meltano runs the tap and the target as its children; signalling the whole group
    keeps them from running on after an interrupted demo.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def expected_counts(sandbox_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{sandbox_url}/_sandbox/counts", timeout=30) as response:  # noqa: S310 - loopback URL printed by our own sandbox
        counts = json.load(response)
    return {str(stream): int(count) for stream, count in counts.items() if stream not in NOT_READ}


def remove_previous_database(database: Path) -> None:
    """Start from an empty file: the loader upserts, so old rows would otherwise stay."""
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)


def run_meltano(meltano: Path, sandbox_url: str, database: Path, log_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tap-pipedrive-demo-") as system_dir:
        env = clean_environment(
            {
                # A fresh system database per demo: every demo is a full sync, no
                # bookmark or job record of an earlier (or interrupted) run applies.
                "MELTANO_DATABASE_URI": f"sqlite:///{Path(system_dir) / 'meltano.db'}",
                "TARGET_SQLITE_DATABASE": str(database),
                "TAP_PIPEDRIVE_PROGRESS_INTERVAL_SECONDS": str(PROGRESS_INTERVAL),
                **sandbox_tap_environment(sandbox_url),
            }
        )
        _run_logged([str(meltano), "run", "tap-pipedrive", LOADER], env, log_path)


def _run_logged(command: list[str], env: Mapping[str, str], log_path: Path) -> None:
    print(f"$ meltano {' '.join(command[1:])}   (log: {log_path})", flush=True)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            returncode = _wait_showing_progress(process, log_path, started + RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_process_group(process)
            raise DemoError(f"meltano run did not finish within {RUN_TIMEOUT:.0f}s") from None
        except BaseException:  # SIGTERM (SystemExit) or Ctrl-C: leave nothing running
            stop_process_group(process)
            raise
    if returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise DemoError(f"meltano run failed with exit code {returncode} (see {log_path})")
    print(f"  finished in {time.monotonic() - started:.1f}s", flush=True)


def _wait_showing_progress(process: subprocess.Popen[str], log_path: Path, deadline: float) -> int:
    """Wait for the run, printing the tap's progress lines from its log as they come."""
    with log_path.open(encoding="utf-8", errors="replace") as log:
        pending = ""
        while True:
            returncode = process.poll()
            pending += log.read()
            *lines, pending = pending.split("\n")
            for line in lines:
                match = TAP_LINE.match(line)
                if match and match["message"].startswith("Progress"):
                    print(f"  {match['message']}", flush=True)
            if returncode is not None:
                return returncode
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(process.args, RUN_TIMEOUT)
            time.sleep(0.5)


def run_summary(log_text: str) -> dict[str, dict[str, float]]:
    """The tap's end-of-run table from the Meltano log: records, calls, seconds per stream."""
    messages = [m["message"] for m in map(TAP_LINE.match, log_text.splitlines()) if m]
    if SUMMARY_TITLE not in messages:
        return {}
    rows: dict[str, dict[str, float]] = {}
    for message in messages[messages.index(SUMMARY_TITLE) + 2 :]:
        row = SUMMARY_ROW.match(message)
        if row is None or row["stream"] == "total":
            break
        rows[row["stream"]] = {
            "records": int(row["records"].replace(",", "")),
            "calls": int(row["calls"].replace(",", "")),
            "seconds": _seconds(row["time"]),
        }
    return rows


def _seconds(text: str) -> float:
    """ "0.4 s", "2 min 05 s" or "1 h 03 min" (the tap's summary) as seconds."""
    units = {"h": 3600.0, "min": 60.0, "s": 1.0}
    parts = text.split()
    return sum(float(n) * units[u] for n, u in zip(parts[::2], parts[1::2], strict=False))


def write_report(
    path: Path,
    loaded: Mapping[str, int],
    expected: Mapping[str, int],
    summary: Mapping[str, Mapping[str, float]],
    title: str,
) -> None:
    """A self-contained HTML page: per stream, bars for records, calls and time.

    Records loaded (from the database) stand beside the sandbox's expected count; calls
    and time come from the tap's summary. Plain HTML and CSS: no script, nothing fetched.
    """
    streams = sorted({*loaded, *expected})
    most = {
        "records": max([*loaded.values(), *expected.values(), 1]),
        "calls": max([row["calls"] for row in summary.values()] + [1]),
        "seconds": max([row["seconds"] for row in summary.values()] + [0.1]),
    }

    def bar(kind: str, value: float, css: str, text: str) -> str:
        width = 100.0 * value / most[kind]
        return (
            f'<div class="bar {css}"><span style="width:{width:.2f}%"></span>'
            f"<b>{html.escape(text)}</b></div>"
        )

    rows = []
    for stream in streams:
        got, want = loaded.get(stream, 0), expected.get(stream, 0)
        stats = summary.get(stream, {})
        calls, seconds = stats.get("calls", 0), stats.get("seconds", 0.0)
        verdict = "ok" if got == want else "differs"
        rows.append(
            f'<tr class="{verdict}" data-stream="{html.escape(stream)}">'
            f"<th>{html.escape(stream)}</th>"
            f'<td class="records">{bar("records", got, "loaded", f"{got:,}")}'
            f"{bar('records', want, 'expected', f'{want:,} expected')}</td>"
            f'<td class="calls">{bar("calls", calls, "calls", f"{int(calls):,}")}</td>'
            f'<td class="time">{bar("seconds", seconds, "time", f"{seconds:.1f} s")}</td>'
            f"<td>{verdict}</td></tr>"
        )
    total_loaded, total_expected = sum(loaded.values()), sum(expected.values())
    total_calls = sum(int(row["calls"]) for row in summary.values())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }}
td.records {{ width: 40%; }} td.calls, td.time {{ width: 22%; }}
.bar {{ position: relative; height: 1.3em; margin: 1px 0; }}
.bar span {{ position: absolute; left: 0; top: 0; bottom: 0; }}
.bar b {{ position: relative; font-weight: normal; padding-left: 4px; }}
.loaded span {{ background: #4c8bf5; }} .expected span {{ background: #c9d8f5; }}
.calls span {{ background: #f5a54c; }} .time span {{ background: #7cc47c; }}
tr.differs th, tr.differs td:last-child {{ color: #c00; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p id="totals">{total_loaded:,} records loaded, {total_expected:,} expected;
{total_calls:,} API calls.</p>
<table>
<thead><tr><th>stream</th><th>records (loaded / expected)</th><th>calls</th><th>time</th>
<th></th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def loaded_counts(database: Path) -> dict[str, int]:
    """Rows per table of the database (one table per stream), read without writing."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
        ) as connection:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master"
                    " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            return {table: _row_count(connection, table) for table in tables}
    except sqlite3.Error as failure:
        raise DemoError(f"cannot read {database}: {failure}") from None


def _row_count(connection: sqlite3.Connection, table: str) -> int:
    quoted = '"' + table.replace('"', '""') + '"'
    # The name comes from sqlite_master and is quoted as an identifier.
    return int(connection.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0])  # noqa: S608


def query_hint(database: Path) -> str:
    """How to look at the loaded data, with the path as the user would type it."""
    shown = database.relative_to(REPO_ROOT) if database.is_relative_to(REPO_ROOT) else database
    count = "select count(*) from deals"
    sample = "select title, value from deals limit 5"
    return (
        "query it:\n"
        f"  sqlite3 {shown} '{count}'\n"
        f"  python3 -c \"import sqlite3; print(sqlite3.connect('{shown}')"
        f".execute('{sample}').fetchall())\""
    )


def compare(loaded: Mapping[str, int], expected: Mapping[str, int]) -> tuple[list[str], list[str]]:
    """A table of loaded vs expected rows per stream, and the streams that differ.

    A stream missing on either side counts as zero there, so a stream the tap never
    emitted and one the sandbox does not know about are both differences.
    """
    streams = sorted({*loaded, *expected})
    width = max((len(stream) for stream in streams), default=6)
    table = [f"{'stream':<{width}}  {'loaded':>7}  {'expected':>8}"]
    mismatched = []
    for stream in streams:
        got, want = loaded.get(stream, 0), expected.get(stream, 0)
        if got != want:
            mismatched.append(stream)
        verdict = "ok" if got == want else "MISMATCH"
        table.append(f"{stream:<{width}}  {got:>7}  {want:>8}  {verdict}")
    return table, mismatched


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Raising here unwinds main(), so the sandbox is stopped and subprocess.run
    # kills the Meltano run instead of leaving both behind.
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    database: Path = args.database.resolve()
    WORK_DIR.mkdir(exist_ok=True)
    try:
        meltano = find_meltano()
        remove_previous_database(database)
        sandbox, url = start_sandbox(args.seed, args.scale, WORK_DIR / "sandbox.log")
        try:
            print(f"sandbox (seed {args.seed}, scale {args.scale}) listening on {url}", flush=True)
            expected = expected_counts(url)
            run_meltano(meltano, url, database, WORK_DIR / "meltano-run.log")
        finally:
            stop_process_group(sandbox)
        loaded = loaded_counts(database)
        table, mismatched = compare(loaded, expected)
        report = database.with_name(REPORT_NAME)
        summary = run_summary((WORK_DIR / "meltano-run.log").read_text(encoding="utf-8"))
        write_report(
            report,
            loaded,
            expected,
            summary,
            f"tap-pipedrive demo: sandbox seed {args.seed}, scale {args.scale}",
        )
    except (DemoError, MeltanoUnavailableError, OSError, ValueError) as failure:
        print(f"demo failed: {failure}", file=sys.stderr)
        return 2
    print(f"\nrows per table in {database}:")
    print("\n".join(table))
    if mismatched:
        print(
            f"\n{len(mismatched)} stream(s) differ from the sandbox's expected counts: "
            + ", ".join(mismatched),
            file=sys.stderr,
        )
        return 1
    print(f"\nall {len(table) - 1} streams match the sandbox's expected counts")
    print(f"report (records, calls and time per stream): {report}")
    print(query_hint(database))
    return 0


if __name__ == "__main__":
    sys.exit(main())
