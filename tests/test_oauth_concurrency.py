"""Two processes sharing one token store make one refresh between them, and both succeed."""

from __future__ import annotations

import json
import subprocess

import pytest

from tap_pipedrive.auth.store import refresh_token_fingerprint, store_path_from_config
from tests.support.oauth import (
    REPO_ROOT,
    refresh_calls,
    stored_entry,
    tap_command,
    tap_env,
    written_secrets,
)
from tests.support.tap_runner import catalog_for

COMMANDS = {
    "sync": lambda config, catalog: ["--config", str(config), "--catalog", str(catalog)],
    "discover": lambda config, catalog: ["--config", str(config), "--discover"],
}


@pytest.mark.parametrize(("first", "second"), [("sync", "sync"), ("discover", "sync")])
def test_concurrent_processes_share_one_refresh(sandbox, tmp_path, secret_ledger, first, second):
    config = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.issue_refresh_token(),
        "oauth_url": sandbox.url,
        "api_url": sandbox.url,
    }
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog_for(sandbox, {"currencies"})))
    # The token endpoint answers slowly, so the two processes overlap for sure: the
    # second one reaches the store while the first is still inside its refresh.
    sandbox.faults.add("slow", path=r"/oauth/token", count=1, delay=1.5)
    processes = [
        subprocess.Popen(
            tap_command(*COMMANDS[kind](config_path, catalog_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=tap_env(),
            cwd=REPO_ROOT,
        )
        for kind in (first, second)
    ]
    outputs = []
    for process in processes:
        with process:
            outputs.append(process.communicate(timeout=180))
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert out.strip()
    # One refresh for both processes; with rotation, a second one would have used a
    # refresh token that the first had already spent.
    assert [call["status"] for call in refresh_calls(sandbox)] == [200]
    stored = stored_entry(store_path_from_config(config))
    assert set(sandbox.oauth.refresh_tokens) == {stored["refresh_token"]}
    assert refresh_token_fingerprint(config["refresh_token"]) in stored["replaced_refresh_tokens"]
    if second == "sync":
        records = [
            line for line in outputs[1][0].splitlines() if json.loads(line).get("type") == "RECORD"
        ]
        assert len(records) == sandbox.expected_counts()["currencies"]
    secret_ledger.add(*written_secrets([store_path_from_config(config)]))
    secret_ledger.assert_absent(*[text for pair in outputs for text in pair])
