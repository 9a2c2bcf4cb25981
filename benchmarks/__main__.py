"""Benchmark suite: ``python -m benchmarks`` (or ``make bench``); ``--help`` for options.

Everything runs against the local sandbox (``pipedrive_sandbox``) on loopback:

1. CPU throughput on deals with 30 custom fields at zero latency: this tap, singer-io's
   tap-pipedrive 2.1.0 (installed from PyPI into ``.bench/peer-venv``) and the floor (fetch,
   ``json.loads`` and write, no tap logic). Pages are recorded once and then replayed from
   memory (benchmarks/replay.py), so the server is not what is measured. Throughput is
   records per CPU second of the process (user + system), which the other load on the
   machine does not distort; wall times are shown too.
2. Latency: 100 ms added to every answer; one stream's sync time against calls x 100 ms.
3. Parallel streams: the core streams at 100 ms per answer, ``max_parallel_streams`` 1 and
   the default.
4. A full sync (all streams) at default settings against the sandbox's burst limiter
   (80 requests per 2 s): 429s, pauses, and per stream the records, calls and tokens
   (``x-token-cost`` of each endpoint).
5. Deletes: the tokens of a sweep per stream (a full read closed by ACTIVATE_VERSION),
   next to a first sync and an incremental run.
6. Memory: peak RSS of a deals sync as the number of deals grows (up to 1,000,000 deals,
   served from one real sandbox page with shifted ids and times).
6. Company: a company shaped like the cost model on a plan with a daily token budget; one
   run a day, state carried over, until the first sync is complete; per day tokens, share
   of the budget, 429s, exit code and wall time, and records lost against a clean sync
   (benchmarks/company.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchmarks.company import company_section
from benchmarks.replay import ReplayServer, SyntheticDeals
from pipedrive_sandbox.company import DEFAULT_PLAN, DEFAULT_SEATS, DEFAULT_SIZE, PLANS
from tap_pipedrive.streams.core import CORE_STREAMS

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
PEER_VENV = BENCH / "peer-venv"
PEER_PACKAGE = "tap-pipedrive==2.1.0"
WRAPPER = Path(__file__).resolve().parent / "peer_wrapper.py"
FLOOR = Path(__file__).resolve().parent / "floor.py"
LAUNCHER = Path(__file__).resolve().parent / "launch.py"
TOKEN = "sandbox-api-token"
DEALS_PER_SCALE = 2000  # deals in the sandbox at scale 1
CORE = tuple(stream.name for stream in CORE_STREAMS)
RECORD_MARKERS = (b'{"type":"RECORD"', b'{"type": "RECORD"')
QUICK_COMPANY_SIZE = 0.0005
QUICK_COMPANY_BUDGET = 2500
QUICK_COMPANY_PLAN = "ultimate"
METRIC = re.compile(r"^(\S+ \S+) .*METRIC: (\{.*\})\s*$")


# --- processes -----------------------------------------------------------------------------
def child_env(**extra: str) -> dict[str, str]:
    """The environment of every measured process: bytecode cached, as in normal use."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(BENCH / "pycache")
    env.update(extra)
    return env


@dataclass
class Run:
    label: str
    records: int
    cpu: float
    wall: float
    rss_mb: float
    returncode: int
    stderr: str
    output: Path | None = None
    calls: int = 0
    tokens: int = 0

    @property
    def per_cpu_second(self) -> float:
        return self.records / self.cpu if self.cpu else 0.0

    def metrics(self, name: str) -> list[tuple[float, dict]]:
        """(end time, metric) for each METRIC line of that name in stderr."""
        found = []
        for line in self.stderr.splitlines():
            match = METRIC.match(line)
            if not match:
                continue
            metric = json.loads(match.group(2))
            if metric.get("metric") == name:
                moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.append((moment, metric))
        return found


def measure(label: str, command: list[str], env: dict[str, str], keep_output: bool = False) -> Run:
    """Run a process to the end: records written, CPU seconds, wall seconds, peak RSS."""
    BENCH.mkdir(exist_ok=True)
    stderr_file = tempfile.TemporaryFile(dir=BENCH)  # noqa: SIM115 (closed below)
    output = BENCH / f"{label.split()[0]}.out.jsonl" if keep_output else None
    usage_file = BENCH / f"usage-{os.getpid()}.json"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(usage_file), *command],
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        env=env,
        cwd=BENCH,
    )
    assert process.stdout is not None
    records = 0
    # Per marker, the end of the previous chunk that could hold the start of a match.
    tails = dict.fromkeys(RECORD_MARKERS, b"")
    sink = output.open("wb") if output else None
    try:
        while chunk := process.stdout.read(1 << 20):
            if sink:
                sink.write(chunk)
            for marker, tail in tails.items():
                # Matches inside the chunk, plus those straddling the previous one.
                records += chunk.count(marker) + (tail + chunk[: len(marker) - 1]).count(marker)
                keep = len(marker) - 1
                tails[marker] = (tail + chunk[-keep:])[-keep:]
    finally:
        if sink:
            sink.close()
    process.wait()
    wall = time.perf_counter() - started
    usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
    usage_file.unlink(missing_ok=True)
    stderr_file.seek(0)
    stderr = stderr_file.read().decode("utf-8", "replace")
    stderr_file.close()
    return Run(
        label=label,
        records=records,
        cpu=float(usage.get("cpu", 0.0)),
        wall=wall,
        rss_mb=float(usage.get("maxrss_kb", 0)) / 1024,
        returncode=process.returncode,
        stderr=stderr,
        output=output,
    )


def check(run: Run) -> Run:
    if run.returncode != 0:
        tail = "\n".join(run.stderr.splitlines()[-15:])
        raise SystemExit(f"{run.label} failed (exit {run.returncode}):\n{tail}")
    return run


class SandboxProcess:
    """``python -m pipedrive_sandbox`` in its own process (its CPU is not the tap's)."""

    def __init__(self, scale: float, burst_limit: int = 0, latency_ms: float = 0.0) -> None:
        command = [
            sys.executable,
            "-m",
            "pipedrive_sandbox",
            "--port",
            "0",
            "--seed",
            "1",
            "--scale",
            str(scale),
            "--burst-limit",
            str(burst_limit),
            "--latency-ms",
            str(latency_ms),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, env=child_env()
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise SystemExit("the sandbox did not start")

    def control(self, method: str, name: str) -> object:
        request = urllib.request.Request(f"{self.url}/_sandbox/{name}", method=method)
        with urllib.request.urlopen(request, timeout=600) as answer:  # loopback only
            return json.loads(answer.read())

    def requests(self) -> list[dict]:
        return self.control("GET", "requests")  # type: ignore[return-value]

    def clear(self) -> None:
        self.control("DELETE", "requests")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- the three contenders ----------------------------------------------------------------------
def tap_command(config: Path, catalog: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "tap_pipedrive", "--config", str(config)]
    return [*command, "--catalog", str(catalog)] if catalog else command


def write_json(name: str, value: object) -> Path:
    path = BENCH / name
    path.write_text(json.dumps(value))
    return path


def select(catalog: dict, streams: set[str]) -> dict:
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def discover(command: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(
        [*command, "--discover"], capture_output=True, env=env, cwd=BENCH, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"discovery failed: {done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout)


def peer_python() -> Path:
    """The peer's interpreter, installing it from PyPI on first use."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        shown = subprocess.run(
            [str(python), "-m", "pip", "show", "tap-pipedrive"], capture_output=True, text=True
        )
        if "Version: 2.1.0" in shown.stdout:
            return python
    print(f"installing {PEER_PACKAGE} into {PEER_VENV.relative_to(REPO)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return python


def floor_plan(api_url: str, stream_name: str) -> list[list[object]]:
    """The lists (path and parameters) the tap reads for a stream, for the floor to read too."""
    from tap_pipedrive.tap import TapPipedrive

    tap = TapPipedrive(config={"api_token": TOKEN, "api_url": api_url}, validate_config=False)
    stream = tap.streams[stream_name]
    plan: list[list[object]] = []
    for partition in stream.partitions or [None]:
        url = stream.get_url(partition)
        params = stream.get_url_params(partition, None)
        plan.append([url[len(api_url) :], {k: str(v) for k, v in params.items()}])
    return plan


# --- token costs ---------------------------------------------------------------------------------
def token_cost(path: str) -> int:
    """Documented x-token-cost of one GET (the sandbox's endpoint table is taken from the specs)."""
    from pipedrive_sandbox.endpoints import ENDPOINTS

    version = "v2" if path.startswith("/api/v2/") else "v1"
    tail = re.sub(r"^(/api)?/v[12]", "", path)
    for endpoint in ENDPOINTS:
        pattern = re.sub(r"\{id\}", "[^/]+", endpoint.path)
        if endpoint.version == version and re.fullmatch(pattern, tail):
            return endpoint.cost
    return 10 if version == "v2" else 20  # a list: 10 tokens in v2, 20 in v1


def replayed_calls(replay: ReplayServer) -> tuple[int, int]:
    paths = [key.partition("?")[0] for key in replay.log]
    return len(paths), sum(token_cost(path) for path in paths)


# --- sections ------------------------------------------------------------------------------
@dataclass
class Results:
    lines: list[str] = field(default_factory=list)

    def print(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
        self.print(
            "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
        )
        self.print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in rows:
            cells = [
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            self.print("| " + " | ".join(cells) + " |")


def cpu_section(
    results: Results, deals: int, repeat: int, with_peer: bool
) -> tuple[SandboxProcess, ReplayServer, Path, Path]:
    results.print(f"## CPU throughput: deals with 30 custom fields, zero latency ({deals:,} deals)")
    results.print()
    sandbox = SandboxProcess(scale=deals / DEALS_PER_SCALE, burst_limit=0)
    replay = ReplayServer(sandbox.url)
    replay.start()
    env = child_env()
    # The latency section reads the SDK's METRIC lines of runs with this config.
    config = write_json(
        "tap-config.json",
        {"api_token": TOKEN, "api_url": replay.url, "log_request_metrics": True},
    )
    catalog = write_json("tap-catalog.json", select(discover(tap_command(config), env), {"deals"}))
    ours = tap_command(config, catalog)
    floor = [
        sys.executable,
        str(FLOOR),
        replay.url,
        TOKEN,
        "deals",
        json.dumps(floor_plan(replay.url, "deals")),
    ]
    contenders: list[tuple[str, list[str], dict[str, str]]] = [
        ("tap-pipedrive (this)", ours, env),
        ("floor (fetch + json.loads + write)", floor, env),
    ]
    if with_peer:
        peer_env = child_env(PEER_BASE_URL=replay.url)
        peer = [str(peer_python()), str(WRAPPER)]
        peer_config = write_json(
            "peer-config.json", {"api_token": TOKEN, "start_date": "2000-01-01T00:00:00Z"}
        )
        peer_catalog = write_json(
            "peer-catalog.json",
            select(discover([*peer, "--config", str(peer_config)], peer_env), {"deals"}),
        )
        contenders.append(
            (
                "singer-io tap-pipedrive 2.1.0",
                [*peer, "--config", str(peer_config), "--catalog", str(peer_catalog)],
                peer_env,
            )
        )
    # Warm-up: records every page in the replay server (and compiles bytecode).
    for label, command, run_env in contenders:
        check(measure(label, command, run_env))
    runs: dict[str, list[Run]] = {label: [] for label, _, _ in contenders}
    for _ in range(repeat):
        for label, command, run_env in contenders:
            replay.reset_counters()
            run = check(measure(label, command, run_env))
            run.calls, run.tokens = replayed_calls(replay)
            if replay.misses:
                results.print(f"(note: {replay.misses} answers of {label} were not replayed)")
            runs[label].append(run)
    median = {label: _median_run(found) for label, found in runs.items()}
    ours_rate = median["tap-pipedrive (this)"].per_cpu_second
    floor_rate = median["floor (fetch + json.loads + write)"].per_cpu_second
    peer_run = median.get("singer-io tap-pipedrive 2.1.0")
    rows = []
    for label, run in median.items():
        rows.append(
            [
                label,
                f"{run.records:,}",
                str(run.calls),
                str(run.tokens),
                f"{run.tokens / run.records * 1000:.1f}" if run.records else "-",
                f"{run.cpu:.2f}",
                f"{run.wall:.2f}",
                f"{run.per_cpu_second:,.0f}",
                f"{run.per_cpu_second / peer_run.per_cpu_second:.1f}x" if peer_run else "-",
                f"{run.per_cpu_second / floor_rate:.2f}",
                f"{run.rss_mb:.0f} MB",
            ]
        )
    results.table(
        [
            "deals",
            "records",
            "calls",
            "tokens",
            "tokens/1k",
            "CPU s",
            "wall s",
            "records/s (CPU)",
            "vs peer",
            "vs floor",
            "peak RSS",
        ],
        rows,
    )
    results.print()
    results.print(
        f"Median of {repeat} run(s) each. This tap: {ours_rate:,.0f} records per CPU second"
        + (f", {ours_rate / peer_run.per_cpu_second:.1f}x the peer" if peer_run else "")
        + f", {ours_rate / floor_rate:.0%} of the floor."
    )
    results.print()
    return sandbox, replay, config, catalog


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.cpu)[len(runs) // 2]


def latency_section(results: Results, replay: ReplayServer, config: Path, catalog: Path) -> None:
    results.print("## Latency: 100 ms per answer, one stream (deals)")
    results.print()
    replay.latency = 0.1
    replay.reset_counters()
    arrivals: list[float] = []
    original = replay.answer

    def timed(raw_path: str, headers: object) -> object:
        arrivals.append(time.time())
        return original(raw_path, headers)

    replay.answer = timed  # type: ignore[method-assign]
    try:
        run = check(measure("tap-pipedrive latency", tap_command(config, catalog), child_env()))
    finally:
        replay.answer = original  # type: ignore[method-assign]
        replay.latency = 0.0
    end, metric = next(
        (end, m) for end, m in run.metrics("sync_duration") if m["tags"]["stream"] == "deals"
    )
    duration = float(metric["value"])
    calls = sum(1 for moment in arrivals if end - duration - 0.05 <= moment <= end)
    ideal = calls * 0.1
    results.table(
        ["stream", "records", "calls in the sync", "calls x 100 ms", "stream sync time", "ratio"],
        [
            [
                "deals",
                f"{run.records:,}",
                str(calls),
                f"{ideal:.2f} s",
                f"{duration:.2f} s",
                f"{duration / ideal:.2f}",
            ]
        ],
    )
    results.print()
    results.print("Target: ratio at most 1.3 (the next page is fetched while this one is written).")
    results.print()


def parallel_section(results: Results) -> None:
    results.print("## Parallel streams: the 10 core streams, 100 ms per answer (sandbox scale 1)")
    results.print()
    sandbox = SandboxProcess(scale=1, burst_limit=0)
    replay = ReplayServer(sandbox.url)
    replay.start()
    try:
        env = child_env()
        rows = []
        catalog = None
        spans = {}
        for parallel in (1, 4, 1, 4):
            config = write_json(
                f"parallel-{parallel}.json",
                {
                    "api_token": TOKEN,
                    "api_url": replay.url,
                    "max_parallel_streams": parallel,
                    # The spans below are read from the SDK's METRIC lines.
                    "log_request_metrics": True,
                },
            )
            if catalog is None:
                catalog = write_json(
                    "parallel-catalog.json", select(discover(tap_command(config), env), set(CORE))
                )
                check(measure("warm-up", tap_command(config, catalog), env))  # record pages
                replay.latency = 0.1
            replay.reset_counters()
            run = check(measure(f"parallel-{parallel}", tap_command(config, catalog), env))
            durations = run.metrics("sync_duration")
            total = sum(float(m["value"]) for _, m in durations)
            start = min(end - float(m["value"]) for end, m in durations)
            span = max(end for end, _ in durations) - start
            spans[parallel] = (total, span, run)
        for parallel in (1, 4):
            total, span, run = spans[parallel]
            rows.append(
                [
                    str(parallel),
                    f"{run.records:,}",
                    str(len(replay.log)),
                    f"{total:.2f} s",
                    f"{span:.2f} s",
                    f"{span / spans[1][1]:.2f}",
                ]
            )
        results.table(
            [
                "max_parallel_streams",
                "records",
                "calls",
                "sum of stream sync times",
                "all streams, first start to last end",
                "vs 1",
            ],
            rows,
        )
        results.print()
    finally:
        replay.stop()
        sandbox.stop()


def full_sync_section(results: Results, scale: float) -> None:
    results.print(
        f"## Full sync at default settings, burst limiter 80 requests / 2 s (sandbox scale {scale})"
    )
    results.print()
    sandbox = SandboxProcess(scale=scale, burst_limit=80)
    try:
        env = child_env()
        # Calls per stream are read from the SDK's METRIC lines.
        config = write_json(
            "full-config.json",
            {"api_token": TOKEN, "api_url": sandbox.url, "log_request_metrics": True},
        )
        sandbox.clear()
        run = check(measure("full-sync", tap_command(config), env, keep_output=True))
        stats = sandbox.control("GET", "stats")
        requests_made = sandbox.requests()
        assert isinstance(stats, dict)
        results.table(
            ["records", "requests", "429 answers", "wall s", "requests/s", "peak RSS"],
            [
                [
                    f"{run.records:,}",
                    f"{len(requests_made):,}",
                    str(stats.get("rate_limited")),
                    f"{run.wall:.1f}",
                    f"{len(requests_made) / run.wall:.1f}",
                    f"{run.rss_mb:.0f} MB",
                ]
            ],
        )
        results.print()
        _per_stream_table(results, run, requests_made, sandbox.url)
    finally:
        sandbox.stop()


def _per_stream_table(results: Results, run: Run, requests_made: list[dict], api_url: str) -> None:
    """Records, calls and tokens per stream.

    Calls are the tap's own request metrics, which name the stream that made each request
    (a child stream reading its parents' list counts those calls as its own). Tokens are
    each call's documented cost. A check: their total equals the sandbox's own count.
    """
    counts = _record_counts(run)
    calls, tokens = _calls_and_tokens(run, api_url)
    durations: dict[str, float] = {}
    for _, metric in run.metrics("sync_duration"):
        name = metric["tags"]["stream"]
        durations[name] = durations.get(name, 0.0) + float(metric["value"])
    rows = []
    for name in sorted(set(counts) | set(calls)):
        records = counts.get(name, 0)
        rows.append(
            [
                name,
                f"{records:,}",
                str(calls.get(name, 0)),
                str(tokens.get(name, 0)),
                f"{tokens.get(name, 0) / records * 1000:.0f}" if records else "-",
                f"{records / durations[name]:,.0f}" if records and durations.get(name) else "-",
            ]
        )
    rows.append(
        [
            "total",
            f"{sum(counts.values()):,}",
            str(sum(calls.values())),
            str(sum(tokens.values())),
            f"{sum(tokens.values()) / max(1, sum(counts.values())) * 1000:.0f}",
            "",
        ]
    )
    results.table(["stream", "records", "calls", "tokens", "tokens/1k records", "records/s"], rows)
    results.print()
    sandbox_tokens = sum(int(request.get("token_cost") or 0) for request in requests_made)
    results.print(
        f"The sandbox counted {len(requests_made):,} requests and {sandbox_tokens:,} tokens. "
        "Calls include reading custom field definitions and, for child streams, their "
        "parents' lists; records/s is records over the stream's sync time (paced by the "
        "burst window for streams with one request per parent)."
    )
    results.print()


def _record_counts(run: Run) -> dict[str, int]:
    assert run.output is not None
    counts: dict[str, int] = {}
    with run.output.open("rb") as lines:
        for line in lines:
            if line.startswith(RECORD_MARKERS[0]):
                stream = json.loads(line)["stream"]
                counts[stream] = counts.get(stream, 0) + 1
    return counts


def _last_state(run: Run) -> dict:
    assert run.output is not None
    state: dict = {}
    with run.output.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type":"STATE"'):
                state = json.loads(line)["value"]
    return state


def _calls_and_tokens(run: Run, api_url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Requests and their documented token cost per stream, from the tap's request metrics."""
    from tap_pipedrive.tap import TapPipedrive

    tap = TapPipedrive(config={"api_token": TOKEN, "api_url": api_url}, validate_config=False)
    calls: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for _, metric in run.metrics("http_request_duration"):
        tags = metric["tags"]
        name = tags["stream"]
        stream = tap.streams.get(name)
        endpoint = tags.get("endpoint") or ""
        if (tags.get("context") or {}).get("is_archived") and getattr(
            stream, "archived_path", None
        ):
            endpoint = stream.archived_path  # type: ignore[union-attr]
        calls[name] = calls.get(name, 0) + 1
        tokens[name] = tokens.get(name, 0) + _template_cost(
            endpoint, getattr(stream, "api_version", "v2")
        )
    return calls, tokens


def sweep_section(results: Results, scale: float) -> None:
    """Tokens of a sweep per stream, next to a first sync and an incremental run."""
    results.print(f"## Deletes: tokens of a sweep per stream (sandbox scale {scale})")
    results.print()
    sandbox = SandboxProcess(scale=scale, burst_limit=0)
    try:
        env = child_env()
        config = {"api_token": TOKEN, "api_url": sandbox.url, "include_mail_messages": True}
        runs: dict[str, Run] = {}
        state: dict = {}
        for label, extra in (("first", {}), ("incremental", {}), ("sweep", {"sweep_now": True})):
            command = tap_command(write_json(f"sweep-{label}.json", {**config, **extra}))
            if state:
                command += ["--state", str(write_json(f"sweep-{label}-state.json", state))]
            runs[label] = check(measure(f"sweep-{label}", command, env, keep_output=True))
            state = _last_state(runs[label])
        tokens = {label: _calls_and_tokens(run, sandbox.url)[1] for label, run in runs.items()}
        records = _record_counts(runs["sweep"])
        rows = []
        for name in sorted(set(tokens["first"]) | set(tokens["sweep"])):
            first, sweep = tokens["first"].get(name, 0), tokens["sweep"].get(name, 0)
            rows.append(
                [
                    name,
                    f"{records.get(name, 0):,}",
                    str(first),
                    str(tokens["incremental"].get(name, 0)),
                    str(sweep),
                    f"{sweep / first:.2f}" if first else "-",
                ]
            )
        totals = [sum(tokens[label].values()) for label in ("first", "incremental", "sweep")]
        rows.append(
            [
                "total",
                f"{sum(records.values()):,}",
                *(str(total) for total in totals),
                f"{totals[2] / totals[0]:.2f}" if totals[0] else "-",
            ]
        )
        results.table(
            ["stream", "rows", "first sync", "incremental run", "sweep", "sweep / first sync"],
            rows,
        )
        results.print()
        results.print(
            "Tokens per run (the documented x-token-cost of each call; a child stream counts "
            "the reads of its parents' list). A sweep reads each incremental stream in full "
            "at the largest page size, as a first sync does; streams without a bookmark are "
            "read in full on every run anyway. The incremental run follows the first sync "
            "with no change in the account."
        )
        results.print()
    finally:
        sandbox.stop()


def _template_cost(template: str, version: str) -> int:
    """x-token-cost of an endpoint path template, preferring the stream's API version."""
    from pipedrive_sandbox.endpoints import ENDPOINTS

    found = {endpoint.version: endpoint.cost for endpoint in ENDPOINTS if endpoint.path == template}
    if version in found:
        return found[version]
    if found:
        return next(iter(found.values()))
    return 10 if version == "v2" else 20


def memory_section(
    results: Results, sizes: list[int], replay: ReplayServer, config: Path, catalog: Path
) -> None:
    results.print("## Memory: peak RSS of a deals sync as the number of deals grows")
    results.print()
    # One real page of the sandbox, asked for as the tap asks for it.
    path, params = floor_plan(replay.url, "deals")[0]
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))  # type: ignore[union-attr]
    template = json.loads(replay.answer(f"{path}?{query}", {"x-api-token": TOKEN}).body)["data"]
    rows = []
    for size in sizes:
        replay.synthetic = SyntheticDeals(template, size)
        try:
            run = check(measure(f"memory-{size}", tap_command(config, catalog), child_env()))
        finally:
            replay.synthetic = None
        rows.append(
            [
                f"{size:,}",
                f"{run.records:,}",
                f"{run.cpu:.1f}",
                f"{run.per_cpu_second:,.0f}",
                f"{run.rss_mb:.0f} MB",
            ]
        )
    results.table(["deals", "records", "CPU s", "records/s (CPU)", "peak RSS"], rows)
    results.print()
    results.print("Target: flat as N grows; under 200 MB at 1,000,000 deals.")
    results.print()


def main(argv: list[str] | None = None) -> int:
    # The replay server's threads answer promptly even while this thread counts records.
    sys.setswitchinterval(0.001)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--deals", type=int, default=20_000, help="deals for the CPU run")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per contender")
    parser.add_argument(
        "--memory",
        default="10000,100000,1000000",
        help="comma-separated deal counts for the memory run",
    )
    parser.add_argument("--full-sync-scale", type=float, default=0.2)
    parser.add_argument("--sweep-scale", type=float, default=0.2)
    parser.add_argument(
        "--company-size",
        type=float,
        default=DEFAULT_SIZE,
        help=f"the company scenario's size, a share of the model company ({DEFAULT_SIZE} = "
        "400 deals, 800 persons, 160 organizations, 2,400 activities, 400 notes)",
    )
    parser.add_argument("--company-seats", type=int, default=DEFAULT_SEATS)
    parser.add_argument(
        "--company-plan",
        choices=sorted(PLANS),
        default=None,
        help=f"the company's plan (default {DEFAULT_PLAN}; with --quick {QUICK_COMPANY_PLAN})",
    )
    parser.add_argument(
        "--company-budget",
        type=int,
        default=None,
        help="tokens a day (default: the plan's budget for the seats)",
    )
    parser.add_argument("--company-latency-ms", type=float, default=0.0)
    parser.add_argument("--company-days", type=int, default=10, help="at most this many days")
    parser.add_argument(
        "--company-settings",
        type=_settings,
        default=None,
        help="tap settings for the company runs, as a JSON object (default: none)",
    )
    parser.add_argument(
        "--sections",
        default="cpu,latency,parallel,sync,sweep,memory,company",
        help="any of cpu,latency,parallel,sync,sweep,memory,company",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip singer-io tap-pipedrive")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.deals, args.repeat, args.memory = 5000, 1, "10000,50000"
        # A tiny company (25 deals, 50 persons ...), a budget scaled down with it, and a
        # plan whose burst limit lets the days pass in seconds.
        args.company_size = QUICK_COMPANY_SIZE
        if args.company_budget is None:
            args.company_budget = QUICK_COMPANY_BUDGET
        args.company_plan = args.company_plan or QUICK_COMPANY_PLAN
    sections = set(args.sections.split(","))
    BENCH.mkdir(exist_ok=True)
    results = Results()
    results.print(
        f"# tap-pipedrive benchmarks ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs)"
    )
    results.print()
    results.print(
        "Command: `python -m benchmarks "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`"
    )
    results.print()
    started = time.perf_counter()
    if sections & {"cpu", "latency", "memory"}:
        sandbox, replay, config, catalog = (
            cpu_section(results, args.deals, args.repeat, with_peer=not args.no_peer)
            if "cpu" in sections
            else _replay_only(args.deals)
        )
        try:
            if "latency" in sections:
                latency_section(results, replay, config, catalog)
            if "memory" in sections:
                sizes = [int(size) for size in args.memory.split(",") if size]
                memory_section(results, sizes, replay, config, catalog)
        finally:
            replay.stop()
            sandbox.stop()
    if "parallel" in sections:
        parallel_section(results)
    if "sync" in sections:
        full_sync_section(results, args.full_sync_scale)
    if "sweep" in sections:
        sweep_section(results, args.sweep_scale)
    if "company" in sections:
        company_section(
            results,
            size=args.company_size,
            seats=args.company_seats,
            plan=args.company_plan or DEFAULT_PLAN,
            daily_budget=args.company_budget,
            latency_ms=args.company_latency_ms,
            max_days=args.company_days,
            workdir=BENCH / "company",
            env=child_env(),
            settings=args.company_settings,
        )
    results.print(f"Total benchmark time: {time.perf_counter() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(results.lines) + "\n")
    (BENCH / "results.md").write_text("\n".join(results.lines) + "\n")
    return 0


def _settings(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _replay_only(deals: int) -> tuple[SandboxProcess, ReplayServer, Path, Path]:
    sandbox = SandboxProcess(scale=deals / DEALS_PER_SCALE, burst_limit=0)
    replay = ReplayServer(sandbox.url)
    replay.start()
    env = child_env()
    # The latency section reads the SDK's METRIC lines of runs with this config.
    config = write_json(
        "tap-config.json",
        {"api_token": TOKEN, "api_url": replay.url, "log_request_metrics": True},
    )
    catalog = write_json("tap-catalog.json", select(discover(tap_command(config), env), {"deals"}))
    check(measure("warm-up", tap_command(config, catalog), env))
    return sandbox, replay, config, catalog


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks: the sandboxes stop too


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
