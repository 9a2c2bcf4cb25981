"""Progress lines during a sync, the summary table at its end, and quiet logs by default.

The unit tests drive ``Progress`` with a hand-turned clock. The sync tests run the tap
against the sandbox: the summary must agree with what was emitted and with the requests
the sandbox saw, and a default run's log must not grow with the number of requests.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.progress import Progress
from tests.support.meltano import REPO_ROOT
from tests.support.tap_runner import run_cli, sync_capturing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _progress(interval: float = 30.0) -> tuple[Progress, Clock, list[str]]:
    clock = Clock()
    logger = logging.getLogger("test-progress")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.handlers = [Collect()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return Progress(interval, logger=logger, clock=clock), clock, lines


def test_a_line_for_the_stream_being_written_each_interval():
    progress, clock, lines = _progress()
    users, deals = progress.stream("users"), progress.stream("deals")
    progress.writing(users)
    users.records = 12
    progress.page_done(users)
    progress.writing(deals)
    deals.records = 3000
    progress.page_done(deals)
    assert lines == []  # the interval is not up yet
    clock.now += 30
    progress.page_done(deals)
    assert lines == [
        "Progress deals: 3,000 records (100/s)",
        "Progress: also written since the last report (records): users 12",
    ]
    lines.clear()
    clock.now += 30
    deals.records = 4500
    progress.page_done(deals)
    # users wrote nothing since: it is not named again.
    assert lines == ["Progress deals: 4,500 records (50/s)"]
    lines.clear()
    clock.now += 30
    progress.page_done(deals)
    assert lines == []  # nothing written: nothing to say


def test_child_streams_show_parents_and_time_left():
    progress, clock, lines = _progress(10)
    flow = progress.stream("deal_flow")
    progress.writing(flow)
    progress.parents_listed(flow, 500)
    clock.now += 10
    progress.parents_done(flow, 100)
    flow.records = 250
    progress.page_done(flow)
    assert lines == ["Progress deal_flow: 250 records (25/s), parents 100 / 500 listed so far"]
    lines.clear()
    progress.parents_listed(flow, 300)
    progress.listing_done(flow)
    clock.now += 10
    progress.parents_done(flow, 100)
    progress.page_done(flow)
    # 200 parents in 20 s, 600 to go: 60 s.
    assert lines == ["Progress deal_flow: 250 records (0/s), parents 200 / 800, 1 min 00 s left"]


def test_zero_interval_turns_progress_lines_off():
    progress, clock, lines = _progress(0)
    deals = progress.stream("deals")
    progress.writing(deals)
    for _ in range(5):
        clock.now += 3600
        deals.records += 100
        progress.page_done(deals)
    assert lines == []
    progress.log_summary()
    assert lines[0].startswith("Sync summary")


def test_summary_table_and_its_tokens_column():
    progress, clock, lines = _progress()
    deals = progress.stream("deals")
    progress.writing(deals)
    progress.request_sent("deals")
    progress.request_sent("deals")
    deals.records = 1234
    clock.now += 75
    progress.page_done(deals)
    table = progress.summary()
    assert [line.split() for line in table] == [
        ["stream", "records", "calls", "time"],
        ["deals", "1,234", "2", "1", "min", "15", "s"],
        ["total", "1,234", "2", "1", "min", "15", "s"],
    ]
    # The column appears once request costs are known, and not before (no guessed numbers).
    progress.charge("deals", 20)
    assert progress.summary()[0].split() == ["stream", "records", "calls", "time", "tokens"]
    assert progress.summary()[1].split()[-1] == "20"
    progress.log_summary()
    progress.log_summary()  # every stream's end calls it: logged once
    assert sum(line.startswith("Sync summary") for line in lines) == 1


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=5, scale=0.05, burst_limit=None) as sb:
        yield sb


STREAMS = {"deals", "deal_participants", "persons", "users"}


def test_summary_matches_the_records_and_requests_of_a_sync(sandbox, caplog):
    config = {
        "api_url": sandbox.url,
        "api_token": sandbox.api_token,
        "progress_interval_seconds": 0,
    }
    caplog.set_level(logging.INFO)
    before: dict[str, int] = {}

    def note_start(tap) -> None:
        # Building the catalog already made calls; the sync's are counted from here.
        before["requests"] = len(sandbox.requests)
        before["calls"] = sum(s.calls for s in tap.progress._streams.values())

    tap, messages, error = sync_capturing(config, streams=STREAMS, hook=note_start)
    assert error is None
    counts: dict[str, int] = {}
    for message in messages:
        if message["type"] == "RECORD":
            counts[message["stream"]] = counts.get(message["stream"], 0) + 1
    rows = {stats.name: (stats.records, stats.calls) for stats in tap.progress._streams.values()}
    for stream in STREAMS:
        assert rows[stream][0] == counts[stream], stream
    # Every request the sandbox answered during the sync is in some stream's calls.
    calls = sum(calls for _, calls in rows.values()) - before["calls"]
    assert calls == len(sandbox.requests) - before["requests"]
    # Per-parent streams make one call per deal that has participants (its row says).
    with_participants = [d for d in sandbox.dataset["deals"] if d.get("participants_count")]
    assert rows["deal_participants"][1] >= len(with_participants) > 0
    summary = [r.getMessage() for r in caplog.records if r.name == "tap-pipedrive"]
    start = summary.index("Sync summary: records, API calls and time per stream")
    table = {line.split()[0]: line.split()[1:3] for line in summary[start + 2 :]}
    assert table["deals"] == [f"{counts['deals']:,}", f"{rows['deals'][1]:,}"]
    assert table["total"][0] == f"{sum(counts.values()):,}"


def test_progress_lines_appear_during_a_sync(sandbox, caplog):
    config = {"api_url": sandbox.url, "api_token": sandbox.api_token}
    caplog.set_level(logging.INFO)

    def report_often(tap) -> None:
        # The setting counts whole seconds; this small sync takes less than one.
        tap.__dict__["progress"] = Progress(0.001)

    _, _, error = sync_capturing(config, streams=STREAMS, hook=report_often)
    assert error is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress ")]
    assert any(re.match(r"Progress \w+: [\d,]+ records \([\d,]+/s\)", x) for x in lines), lines
    # deals shows up on a line of its own, or among the streams finished since a report
    # (which line depends on when the reports fall).
    assert any(re.search(r"\bdeals:? [\d,]+", x) for x in lines), lines
    assert any(
        re.match(r"Progress deal_participants: .*, parents [\d,]+ / [\d,]+", x) for x in lines
    )


def _log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " | " in line]


def test_default_log_does_not_grow_with_requests():
    """Quiet by default: no line per request; the setting brings the SDK's metrics back.

    The same sync at two sizes: several times the requests, about the same log.
    """
    lines: dict[str, list[int]] = {"quiet": [], "verbose": [], "requests": [], "records": []}
    for scale in (0.02, 0.15):
        with Sandbox(seed=5, scale=scale, burst_limit=None) as sandbox:
            config = {"api_url": sandbox.url, "api_token": sandbox.api_token}
            sandbox.clear_requests()
            quiet = run_cli(config, streams=STREAMS)
            assert quiet.returncode == 0, quiet.stderr[-2000:]
            lines["requests"].append(len(sandbox.requests))
            lines["records"].append(sum(quiet.record_counts().values()))
            verbose = run_cli({**config, "log_request_metrics": True}, streams=STREAMS)
            assert verbose.returncode == 0, verbose.stderr[-2000:]
        quiet_lines = _log_lines(quiet.stderr)
        assert not [line for line in quiet_lines if "METRIC" in line or "Pagination" in line]
        lines["quiet"].append(len(quiet_lines))
        lines["verbose"].append(len(_log_lines(verbose.stderr)))
    requests_added = lines["requests"][1] - lines["requests"][0]
    records_added = lines["records"][1] - lines["records"][0]
    assert requests_added > 150 and records_added > 500
    # With the metrics: more than a line per request; without: none per request or record.
    assert lines["verbose"][1] - lines["verbose"][0] > requests_added
    assert lines["quiet"][1] - lines["quiet"][0] <= records_added // 100


def test_debug_level_shows_where_each_list_ended(sandbox):
    # docs/logging.md: TAP_PIPEDRIVE_LOGLEVEL=DEBUG brings the per-list lines back.
    config = {"api_url": sandbox.url, "api_token": sandbox.api_token}
    # Deals without a change history answer an empty list: the line that is looked for.
    streams = {"deals", "deal_changelog"}
    result = run_cli(config, streams=streams, env={"TAP_PIPEDRIVE_LOGLEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Pagination stopped after" in result.stderr
    assert "METRIC: " not in result.stderr  # that is log_request_metrics' job


def test_documented_meltano_command_turns_the_metrics_on(meltano, tmp_path):
    """docs/logging.md's command, run in a scratch copy of the project's meltano.yml."""
    docs = (REPO_ROOT / "docs" / "logging.md").read_text(encoding="utf-8")
    commands = [line for line in docs.splitlines() if line.startswith("meltano config set ")]
    assert commands == ["meltano config set tap-pipedrive log_request_metrics true"]
    shutil.copy(REPO_ROOT / "meltano.yml", tmp_path / "meltano.yml")
    env = {**meltano.environment(), "MELTANO_PROJECT_ROOT": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(meltano.executable), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = run(*shlex.split(commands[0])[1:])
    assert done.returncode == 0, done.stderr[-2000:]
    printed = run("config", "print", "tap-pipedrive")
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert json.loads(printed.stdout)["log_request_metrics"] is True


def test_a_run_stopped_by_an_error_still_sums_up_what_it_delivered(sandbox):
    # persons comes after deals: the budget runs out once deals are delivered.
    sandbox.faults.add("daily_429", path=r"^/api/v2/persons$")
    try:
        config = {"api_url": sandbox.url, "api_token": sandbox.api_token}
        result = run_cli(config, streams={"deals", "persons"})
    finally:
        sandbox.faults.clear()
    assert result.returncode == 1
    lines = _log_lines(result.stderr)
    assert "| ERROR" in lines[-1] and "daily API token budget" in lines[-1]
    messages = [line.split(" | ", 3)[-1].strip() for line in lines]
    start = messages.index("Sync summary (stopped early): records, API calls and time per stream")
    rows = {m.split()[0]: m.split()[1] for m in messages[start + 2 : -1]}
    assert rows["deals"] == f"{result.record_counts()['deals']:,}"
