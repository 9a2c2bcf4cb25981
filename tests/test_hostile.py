"""Hostile input: every odd value or setting has a defined outcome.

Odd API data is either delivered as it is (it is valid), or coerced with a counted
warning; odd settings end the run with one clear line (or, for an unknown key, a warning).
Never a traceback, and never a record silently missing: each API case is checked against
the keys of a clean sync, and every record against the schema the tap announced for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from pipedrive_sandbox import Sandbox
from pipedrive_sandbox.hostile import LONG_STRING_SIZE, NASTY_TEXT
from tests import fault_matrix
from tests.support.delivery import (
    FAST_RETRIES,
    TapRun,
    TapSession,
    missing,
    tap_environment,
    write_private_json,
)
from tests.support.secrets import SecretLedger

REPO_ROOT = Path(__file__).resolve().parents[1]
DEALS = r"^/api/v2/deals$"
NOTES = r"^/api/v1/notes$"
ACTIVITIES = r"^/api/v2/activities$"
# Hostile pages: the second page of a v2 list with custom fields, of a v1 offset list,
# and of a v2 list without custom fields.
PATHS = (DEALS, NOTES, ACTIVITIES)
MODES = (
    "zero_dates",
    "null_objects",
    "unknown_fields",
    "long_strings",
    "nul_chars",
    "duplicate_ids",
)

pytestmark = pytest.mark.timeout(600)


def _hostile_run(mode: str, after: int = 1) -> tuple[TapSession, TapRun, dict]:
    expected, catalog = fault_matrix.baseline()
    sandbox = Sandbox(seed=fault_matrix.DATA_SEED, scale=fault_matrix.SCALE, burst_limit=None)
    with sandbox:
        config = {
            "api_token": sandbox.api_token,
            "api_url": sandbox.url,
            "page_size": fault_matrix.PAGE_SIZE,
            **FAST_RETRIES,
        }
        session = TapSession(sandbox, config, catalog=catalog)
        for path in PATHS:
            sandbox.faults.add("hostile", path=path, after=after, what=mode)
        run = session.run()
        session.close()
    return session, run, expected


@pytest.fixture(scope="module")
def hostile_runs() -> dict[str, tuple[TapSession, TapRun, dict]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_hostile_run, MODES))
    return dict(zip(MODES, results, strict=True))


def _records(run: TapRun, stream: str) -> list[dict]:
    return [
        m["record"] for m in run.messages if m.get("type") == "RECORD" and m["stream"] == stream
    ]


def _validate_against_announced_schemas(run: TapRun) -> None:
    """Every record fits the SCHEMA message before it, formats included (targets check them)."""
    validators: dict[str, jsonschema.protocols.Validator] = {}
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    for message in run.messages:
        if message.get("type") == "SCHEMA":
            validators[message["stream"]] = jsonschema.Draft7Validator(
                message["schema"], format_checker=checker
            )
        elif message.get("type") == "RECORD":
            errors = list(validators[message["stream"]].iter_errors(message["record"]))
            assert not errors, f"{message['stream']}: {errors[0].message[:300]}"


@pytest.mark.parametrize("mode", MODES)
def test_hostile_pages_lose_nothing(mode, hostile_runs):
    session, run, expected = hostile_runs[mode]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert not run.error_lines()
    assert not missing(expected, session.delivered_keys())
    _validate_against_announced_schemas(run)


def test_zero_dates_become_null_with_a_counted_warning(hostile_runs):
    _, run, _ = hostile_runs["zero_dates"]
    for stream, field in (("deals", "add_time"), ("notes", "add_time"), ("activities", "due_date")):
        assert f"tap-pipedrive.{stream}" in run.stderr
        assert any(
            f"Field '{field}' had the unusable value '0000-00-00" in line
            and f"tap-pipedrive.{stream}" in line
            for line in run.stderr.splitlines()
        ), stream
    nulls = [record for record in _records(run, "deals") if record["add_time"] is None]
    assert len(nulls) == fault_matrix.PAGE_SIZE  # exactly the hostile page
    summary = [line for line in run.stderr.splitlines() if "coerced in this run" in line]
    assert any(
        "tap-pipedrive.deals" in line and "'add_time': 50 value(s)" in line for line in summary
    )


def test_nulls_where_objects_are_expected_pass_as_nulls(hostile_runs):
    _, run, _ = hostile_runs["null_objects"]
    deals = _records(run, "deals")
    # The hostile page's custom field objects (monetary, address ...) arrive as nulls.
    assert any(record.get("custom_fields") is None for record in deals) or any(
        all(record.get(column) is None for column in ("contract_value", "billing_address"))
        for record in deals
    )


def test_unknown_fields_are_dropped_with_a_warning(hostile_runs):
    _, run, _ = hostile_runs["unknown_fields"]
    for stream in ("deals", "notes", "activities"):
        warned = [
            line
            for line in run.stderr.splitlines()
            if "| WARNING" in line
            and f"tap-pipedrive.{stream} " in line
            and "sandbox_unknown_field" in line
            and "sandbox_unknown_number" in line
        ]
        assert len(warned) == 1, stream  # once per stream, not once per record
    assert (
        "ffffffffffffffffffffffffffffffffffffffff is not among the field definitions" in run.stderr
    )
    for stream in ("deals", "notes", "activities"):
        assert all("sandbox_unknown_field" not in record for record in _records(run, stream))


def test_very_long_strings_arrive_whole(hostile_runs):
    _, run, _ = hostile_runs["long_strings"]
    for stream in ("deals", "notes", "activities"):
        longest = max(
            len(value)
            for record in _records(run, stream)
            for value in record.values()
            if isinstance(value, str)
        )
        assert longest == LONG_STRING_SIZE, stream


def test_nul_is_removed_with_a_warning_and_every_plane_of_unicode_survives(hostile_runs):
    _, run, _ = hostile_runs["nul_chars"]
    clean = NASTY_TEXT.replace("\x00", "")
    assert "\\u0000" not in run.stdout
    for stream, field in (("deals", "title"), ("notes", "content"), ("activities", "subject")):
        texts = [record.get(field) for record in _records(run, stream)]
        assert texts.count(clean) == fault_matrix.PAGE_SIZE, stream
        assert f"Field '{field}' had the unusable value" in run.stderr
    assert "\U0001d518" in clean and "\U0001f600" in clean  # astral planes kept


def test_duplicate_ids_across_pages_are_delivered_again_and_keep_one_key(hostile_runs):
    _, run, expected = hostile_runs["duplicate_ids"]
    for stream in ("deals", "notes", "activities"):
        ids = [record["id"] for record in _records(run, stream)]
        assert len(ids) == len(expected[stream]) + 1, stream  # the repeated row, once more
        assert len(set(ids)) == len(expected[stream])


def test_an_empty_first_page_with_a_cursor_is_followed():
    session, run, expected = _hostile_run("empty_page_with_cursor", after=0)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not missing(expected, session.delivered_keys())


def test_odd_timestamps_are_normalised_or_nulled_with_a_warning():
    with Sandbox(seed=fault_matrix.DATA_SEED, scale=fault_matrix.SCALE, burst_limit=None) as sb:
        deal_id = sb.dataset["deals"][0]["id"]
        sb.update_record(
            "deals",
            deal_id,
            add_time="2024-05-01T10:20:30+02:00",
            close_time="2024-05-01 10:20:30",
            won_time="2024-02-30T10:00:00Z",
            lost_time="yesterday",
            expected_close_date="2024-13-01",
            stage_change_time="2024-05-01",
        )
        config = {"api_token": sb.api_token, "api_url": sb.url, **FAST_RETRIES}
        with TapSession(sb, config, streams={"deals"}) as session:
            run = session.run()
    assert run.returncode == 0, run.stderr[-3000:]
    deal = next(record for record in _records(run, "deals") if record["id"] == deal_id)
    assert deal["add_time"] == "2024-05-01T08:20:30Z"
    assert deal["close_time"] == "2024-05-01T10:20:30Z"
    assert deal["stage_change_time"] == "2024-05-01T00:00:00Z"
    assert deal["won_time"] is None
    assert deal["lost_time"] is None
    assert deal["expected_close_date"] is None
    for field, value in (("won_time", "2024-02-30"), ("lost_time", "yesterday")):
        assert f"Field '{field}' had the unusable value '{value}" in run.stderr
    _validate_against_announced_schemas(run)


def test_hostile_records_load_into_postgres(meltano, postgres_database):
    """The coerced records are ones a strict target accepts: no NUL, real dates, any length."""
    from tests.support.pipeline import load_with_target_postgres

    expected = fault_matrix.expected_keys()
    with Sandbox(seed=fault_matrix.DATA_SEED, scale=fault_matrix.SCALE, burst_limit=None) as sb:
        config = {"api_token": sb.api_token, "api_url": sb.url, **FAST_RETRIES}
        with TapSession(sb, config, streams={"deals", "notes"}) as session:
            for path, mode in ((DEALS, "nul_chars,zero_dates,long_strings"), (NOTES, "nul_chars")):
                sb.faults.add("hostile", path=path, count=None, what=mode)
            loaded = load_with_target_postgres(session, postgres_database, schema="hostile")
    assert loaded.tap.returncode == 0, loaded.tap.stderr[-3000:]
    assert loaded.target_returncode == 0, loaded.target_stderr[-3000:]
    counts = loaded.row_counts()
    assert counts == {"deals": len(expected["deals"]), "notes": len(expected["notes"])}


# --- settings ---------------------------------------------------------------------------------
def _cli(config_text: str | None, *args: str, tmp_path: Path, env: dict | None = None):
    command = [sys.executable, "-m", "tap_pipedrive", *args]
    if config_text is not None:
        config_path = tmp_path / "config.json"
        config_path.write_text(config_text, encoding="utf-8")
        config_path.chmod(0o600)
        command[3:3] = ["--config", str(config_path)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=tap_environment({"XDG_DATA_HOME": str(tmp_path / "xdg"), **(env or {})}),
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


BAD_SETTINGS = [
    ({"api_token": 123}, "Setting api_token "),
    ({"api_token": "t", "page_size": "lots"}, "Setting page_size "),
    ({"api_token": "t", "page_size": 0}, "Setting page_size "),
    ({"api_token": "t", "request_timeout": "5"}, "Setting request_timeout "),
    ({"api_token": "t", "max_retries": -1}, "Setting max_retries "),
    ({"api_token": "t", "include_mail_messages": "yes"}, "Setting include_mail_messages "),
    ({"api_token": "t", "custom_field_naming": "labels"}, "Setting custom_field_naming "),
    ({"api_token": "t", "start_date": "yesterday"}, "start_date must be an ISO 8601"),
    ({"api_token": "t", "api_url": "ftp://example.com"}, "api_url must be an http(s) URL"),
    ({"api_token": "t", "client_id": "c", "client_secret": "s"}, "Ambiguous credentials"),
    ({}, "api_token"),
]


@pytest.mark.parametrize(("config", "says"), BAD_SETTINGS, ids=[s for _, s in BAD_SETTINGS])
def test_bad_settings_are_one_clear_line(config, says, tmp_path):
    # api_url points at a closed loopback port: no request may be made before the error.
    config = {"api_url": "http://127.0.0.1:9", **config}
    result = _cli(json.dumps(config), "--discover", tmp_path=tmp_path)
    line = _one_line(result)
    assert says in line


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object, not a list"),
        ('"api_token"', "must hold a JSON object, not a str"),
    ],
)
def test_a_config_file_that_is_not_an_object_is_one_line(text, says, tmp_path):
    assert says in _one_line(_cli(text, "--discover", tmp_path=tmp_path))


def test_a_missing_or_unreadable_config_file_is_one_line(tmp_path):
    missing_file = tmp_path / "nowhere.json"
    result = subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--config", str(missing_file), "--discover"],
        capture_output=True,
        text=True,
        env=tap_environment(),
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert "was not found" in _one_line(result)
    directory = tmp_path / "config-dir"
    directory.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--config", str(directory), "--discover"],
        capture_output=True,
        text=True,
        env=tap_environment(),
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert "Cannot read the config file" in _one_line(result)


@pytest.mark.parametrize("option", ["--state", "--catalog"])
@pytest.mark.parametrize(
    ("text", "says"),
    [("", "is not valid JSON"), ('{"bookmarks": {', "is not valid JSON"), ("[]", "not a list")],
)
def test_a_broken_state_or_catalog_file_is_one_line(option, text, says, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text(text, encoding="utf-8")
    config = json.dumps({"api_token": "t", "api_url": "http://127.0.0.1:9"})
    line = _one_line(_cli(config, option, str(broken), tmp_path=tmp_path))
    assert f"The {option} file" in line and says in line


def test_an_unknown_setting_is_a_warning_and_the_sync_goes_on(tmp_path):
    with Sandbox(seed=2, scale=0.05, burst_limit=None) as sb:
        config = {"api_token": sb.api_token, "api_url": sb.url, "page_sise": 100}
        ledger = SecretLedger(sb.api_token)
        with TapSession(sb, config, streams={"users"}, ledger=ledger) as session:
            run = session.run()
    assert run.returncode == 0, run.stderr[-3000:]
    warnings = [line for line in run.stderr.splitlines() if "page_sise" in line]
    assert len(warnings) == 1 and "| WARNING" in warnings[0]
    assert "unknown setting 'page_sise'" in warnings[0]
    assert len(run.messages) > 0


def _oauth_config(sb: Sandbox, store: Path) -> dict:
    return {
        "client_id": sb.client_id,
        "client_secret": sb.client_secret,
        "refresh_token": sb.issue_refresh_token(),
        "oauth_url": sb.url,
        "api_url": sb.url,
        "oauth_settings_location": str(store),
        **FAST_RETRIES,
    }


@pytest.mark.parametrize("kind", ["directory", "garbage", "list", "parent_is_a_file"])
def test_an_unreadable_token_store_is_one_line(kind, tmp_path):
    store = tmp_path / "store" / "tokens.json"
    store.parent.mkdir()
    if kind == "directory":
        store.mkdir()
    elif kind == "garbage":
        store.write_text("{not json", encoding="utf-8")
    elif kind == "list":
        store.write_text("[]", encoding="utf-8")
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("", encoding="utf-8")
        store = blocker / "tokens.json"
    with Sandbox(seed=2, scale=0.05, burst_limit=None) as sb:
        config = _oauth_config(sb, store)
        result = _cli(json.dumps(config), tmp_path=tmp_path)
        ledger = SecretLedger(sb.client_secret, config["refresh_token"])
        ledger.assert_absent(result.stdout + result.stderr, where="the output")
        api_calls = [r for r in sb.requests if r.path.startswith("/api/")]
    line = _one_line(result)
    assert "token store" in line and str(store.name) in line
    assert not api_calls, "no API request before the token store problem is reported"


def test_login_with_a_non_loopback_redirect_uri_is_one_line_and_opens_nothing(tmp_path):
    marker = tmp_path / "browser-opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\ntouch {marker}\n", encoding="utf-8")
    browser.chmod(0o700)
    with Sandbox(seed=2, scale=0.05, burst_limit=None) as sb:
        config = {
            "client_id": sb.client_id,
            "client_secret": sb.client_secret,
            "oauth_url": sb.url,
            "redirect_uri": "https://login.example.com/callback",
            "oauth_settings_location": str(tmp_path / "store.json"),
        }
        config_path = write_private_json(tmp_path / "login.json", config)
        result = subprocess.run(
            [sys.executable, "-m", "tap_pipedrive", "--login", "--config", str(config_path)],
            capture_output=True,
            text=True,
            env=tap_environment({"BROWSER": str(browser), "XDG_DATA_HOME": str(tmp_path)}),
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        calls = list(sb.token_calls)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("not a loopback address" in line for line in lines), result.stderr
    assert not marker.exists(), "a browser was opened"
    assert not calls
    assert sb.client_secret not in result.stdout + result.stderr
    assert os.stat(config_path).st_mode & 0o777 == 0o600
