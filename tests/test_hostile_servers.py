"""Hostile or broken servers: every case ends soon, in one line, keeping what was read.

A server may ask for absurd waits, page forever, send paging fields of the wrong type,
nest JSON a thousand levels deep or put terminal escape codes in its texts. Each case
is one sandbox fault (``envelope`` and ``rate_headers`` in pipedrive_sandbox, or an existing
kind with an odd parameter), installed after the first page so there is something to
keep: the run must end within seconds with exit 1 and exactly one error line, its last
STATE must cover the records it delivered, and a rerun from that STATE once the server
behaves must deliver the rest.
"""

from __future__ import annotations

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.http.paging import MAX_EMPTY_PAGES
from tests.support.delivery import (
    FAST_RETRIES,
    TapRun,
    TapSession,
    assert_one_clear_error,
)

DEALS = r"^/api/v2/deals$"
NOTES = r"^/api/v1/notes$"
PAGE_SIZE = 20
INCREMENTAL = ("deals", "notes")
# Far above what any case needs (a few seconds), far below the waits and loops they cause.
WALL_SECONDS = 45
# A run this long has not stopped by itself.
RUN_TIMEOUT = 90

pytestmark = pytest.mark.timeout(600)


def _session(sb: Sandbox, streams: set[str], page_size: int = PAGE_SIZE) -> TapSession:
    config = {
        "api_token": sb.api_token,
        "api_url": sb.url,
        "page_size": page_size,
        "max_parallel_streams": 1,
        **FAST_RETRIES,
    }
    return TapSession(sb, config, streams=streams)


def _all_delivered(session: TapSession, stream: str) -> bool:
    """Every record of the stream, counted by key over all runs of the session."""
    expected = session.sandbox.expected_counts([stream])[stream]
    return len(session.delivered_keys()[stream]) == expected > 0


def _records(run: TapRun, stream: str) -> list[dict]:
    return [
        m["record"] for m in run.messages if m.get("type") == "RECORD" and m["stream"] == stream
    ]


def _assert_state_covers_delivered(run: TapRun, stream: str) -> None:
    """The last STATE points at the newest record delivered (read from the top, in order)."""
    delivered = [r for r in _records(run, stream) if not r.get("is_archived")]
    assert delivered, "the fault came before any record: nothing to keep"
    state = run.last_state
    assert state is not None, "no STATE to resume from"
    bookmarks = state["bookmarks"][stream]
    partitions = bookmarks.get("partitions") or [bookmarks]
    values = [p.get("replication_key_value") for p in partitions if p.get("replication_key_value")]
    newest = max(r["update_time"] for r in delivered)
    assert newest in values, (newest, values)


def _ends_in_one_line(session: TapSession, stream: str, says: str) -> tuple[TapRun, str]:
    run = session.run(timeout=RUN_TIMEOUT)
    message = assert_one_clear_error(run)
    assert run.returncode == 1
    assert says in message, message
    assert run.seconds < WALL_SECONDS, run.seconds
    if stream in INCREMENTAL:
        _assert_state_covers_delivered(run, stream)
    else:
        assert _records(run, stream), "the fault came before any record"
    return run, message


def _rerun_delivers_the_rest(session: TapSession, failed: TapRun, stream: str) -> None:
    session.sandbox.faults.clear()
    rerun = session.run(state=failed.last_state, timeout=RUN_TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _all_delivered(session, stream)


# --- x-ratelimit-* ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "headers"),
    [
        ("burst_429", {"reset": "1e9"}),
        ("rate_headers", {"remaining": "0", "reset": "1e9"}),
    ],
    ids=["429 asks for 31 years", "200 with an empty window asks for 31 years"],
)
def test_a_wait_of_years_ends_the_run_in_one_line(kind, headers):
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {"deals"}) as session:
        sb.faults.add(kind, path=DEALS, after=1, **headers)
        run, message = _ends_in_one_line(session, "deals", "x-ratelimit-reset")
        assert "1e+09 seconds" in message
        _rerun_delivers_the_rest(session, run, "deals")


@pytest.mark.parametrize(
    ("kind", "headers"),
    [
        ("burst_429", {"reset": "inf"}),
        ("burst_429", {"reset": "-5"}),
        ("rate_headers", {"limit": "inf", "remaining": "1e400", "reset": "-1"}),
        ("rate_headers", {"limit": "nan", "remaining": "-inf", "reset": "inf"}),
    ],
    ids=["429 reset inf", "429 reset negative", "limit inf", "remaining -inf, reset inf"],
)
def test_rate_limit_headers_that_are_no_usable_number_are_ignored(kind, headers):
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {"deals"}) as session:
        sb.faults.add(kind, path=DEALS, after=1, **headers)
        run = session.run(timeout=RUN_TIMEOUT)
        applied = [r for r in sb.requests if r.path == "/api/v2/deals"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert not run.error_lines()
    # An unusable reset on a 429 waits the 2-second window, no longer.
    assert run.seconds < WALL_SECONDS, run.seconds
    assert len(applied) > 2
    assert _all_delivered(session, "deals")


# --- endless paging ---------------------------------------------------------------------------
# Full-table lists (read with small pages), where nothing but the paging guard notices.
PAGING_CASES = [
    ("fresh_cursor", "stages", 2, "served rows already read on 3 pages in a row"),
    ("cursor_cycle", "deals", PAGE_SIZE, "sent a cursor it had sent before"),
    ("repeat_offset", "roles", 1, "served rows already read on 3 pages in a row"),
    ("empty_pages", "deals", PAGE_SIZE, f"sent {MAX_EMPTY_PAGES} empty pages in a row"),
    ("empty_pages", "notes", PAGE_SIZE, f"sent {MAX_EMPTY_PAGES} empty pages in a row"),
]


@pytest.mark.parametrize(
    ("mode", "stream", "page_size", "says"),
    PAGING_CASES,
    ids=[f"{mode} ({stream})" for mode, stream, _, _ in PAGING_CASES],
)
def test_paging_that_never_ends_is_one_line(mode, stream, page_size, says):
    path = ("/api/v1/" if stream in ("notes", "roles") else "/api/v2/") + stream
    with (
        Sandbox(seed=3, scale=0.05, burst_limit=None) as sb,
        _session(sb, {stream}, page_size) as session,
    ):
        sb.faults.add("envelope", path=f"^{path}$", after=1, count=None, what=mode)
        run, message = _ends_in_one_line(session, stream, says)
        assert path in message
        requests = [r for r in sb.requests if r.path == path]
        # Stopped as soon as the loop was certain.
        assert len(requests) <= 2 + (MAX_EMPTY_PAGES if mode == "empty_pages" else 3)
        _rerun_delivers_the_rest(session, run, stream)


@pytest.mark.parametrize(
    ("mode", "stream"), [("fresh_cursor", "deals"), ("repeat_offset", "notes")]
)
def test_pages_served_again_in_a_sorted_list_are_one_line(mode, stream):
    """Rows older than those written already: the order check of the bookmark notices."""
    path = ("/api/v1/" if stream == "notes" else "/api/v2/") + stream
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {stream}) as session:
        sb.faults.add("envelope", path=f"^{path}$", after=1, count=None, what=mode)
        run, _ = _ends_in_one_line(session, stream, "out of update_time order")
        _rerun_delivers_the_rest(session, run, stream)


# --- paging fields and envelopes of the wrong type ---------------------------------------------
ENVELOPE_CASES = [
    ("more_as_string", "notes", NOTES, "more_items_in_collection as a string ('true')"),
    ("next_start_string", "notes", NOTES, "next_start as a string ('40')"),
    ("additional_data_list", "deals", DEALS, "additional_data as a list, not an object"),
    ("additional_data_list", "notes", NOTES, "additional_data as a list, not an object"),
    ("pagination_string", "notes", NOTES, "additional_data.pagination as a string"),
    ("data_string", "deals", DEALS, "data is a string, not a list of rows"),
    ("deep_json", "deals", DEALS, "nested too deeply"),
    ("deep_json", "notes", NOTES, "nested too deeply"),
]


@pytest.mark.parametrize(
    ("mode", "stream", "path", "says"),
    ENVELOPE_CASES,
    ids=[f"{mode} ({stream})" for mode, stream, _, _ in ENVELOPE_CASES],
)
def test_an_envelope_of_the_wrong_shape_is_one_line_naming_the_field(mode, stream, path, says):
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {stream}) as session:
        sb.faults.add("envelope", path=path, after=1, count=None, what=mode)
        run, message = _ends_in_one_line(session, stream, says)
        assert path.strip("^$") in message
        _rerun_delivers_the_rest(session, run, stream)


def test_more_items_false_as_a_string_is_not_taken_for_true():
    """The last page says "false": the read stops there with one line, not a page later."""
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {"notes"}) as session:
        pages = -(-sb.expected_counts(["notes"])["notes"] // PAGE_SIZE)
        sb.faults.add("envelope", path=NOTES, after=pages - 1, what="more_as_string")
        run, message = _ends_in_one_line(session, "notes", "('false')")
        assert "more_items_in_collection" in message
        asked = [r for r in sb.requests if r.path == "/api/v1/notes"]
        assert len(asked) == pages  # no request beyond the last page
        _rerun_delivers_the_rest(session, run, "notes")


# --- terminal escapes ---------------------------------------------------------------------------
ESCAPES = "\x1b[2J\x1b[1;1Hall good\r\x1b]0;pwned\x07\x9b31m\u202eevil"


def test_escape_codes_in_an_api_error_are_escaped_in_the_one_line():
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {"deals"}) as session:
        sb.faults.add("http_error", path=DEALS, after=1, status=404, error=ESCAPES)
        run, message = _ends_in_one_line(session, "deals", "404 from Pipedrive")
    for raw in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
        assert raw not in run.stderr, repr(raw)
    assert "\\x1b[2J\\x1b[1;1Hall good" in message
    assert "\\x9b31m\\u202eevil" in message


def test_escape_codes_in_a_custom_field_label_are_escaped_in_the_log():
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb, _session(sb, {"deals"}) as session:
        # Created after discovery: the sync warns about it, quoting its label.
        sb.add_custom_field("deals", f"Budget{ESCAPES}", "varchar")
        run = session.run(timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.stderr[-3000:]
    warning = [line for line in run.stderr.splitlines() if "newer than the catalog" in line]
    assert len(warning) == 1, run.stderr[-3000:]
    assert "Budget\\x1b[2J" in warning[0]
    for raw in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
        assert raw not in run.stderr, repr(raw)


def test_the_log_filter_escapes_every_control_character_and_keeps_text():
    import logging

    from tap_pipedrive.redact import SecretRedactor, escape_controls

    controls = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
    controls += ["\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"]
    for char in controls:
        escaped = escape_controls(f"a{char}b")
        assert char not in escaped and escaped.startswith("a\\") and escaped.endswith("b")
    kept = "Müller GmbH — 日本語 \U0001f600 \u05e2\u05d1\u05e8\u05d9\u05ea"
    assert escape_controls(kept) == kept
    record = logging.LogRecord(
        "tap", logging.WARNING, __file__, 1, "label %s", ("x\x1b[2Jy",), None
    )
    assert SecretRedactor().filter(record)
    assert record.getMessage() == "label x\\x1b[2Jy"
