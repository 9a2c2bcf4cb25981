"""Under Meltano: `meltano invoke tap-pipedrive:login`, then scheduled runs carried by the store.

Meltano writes a fresh config file from the project settings for every run, so a
rotated refresh token can only survive in the token store, which defaults to a
stable path inside the project (``.meltano/tap-pipedrive/oauth/``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid

import pytest

from tap_pipedrive.auth.store import default_store_path, refresh_token_fingerprint
from tests.support.meltano import REPO_ROOT
from tests.support.oauth import (
    code_calls,
    consent,
    expire_stored_access_token,
    free_port,
    refresh_calls,
    stored_entry,
)
from tests.support.secrets import SecretLedger, recording_issued_tokens


@pytest.fixture
def meltano_sandbox():
    from pipedrive_sandbox import Sandbox

    # A client id of its own, so the project's token store file is this test's alone.
    client_id = f"meltano-login-test-{uuid.uuid4().hex[:8]}"
    with Sandbox(seed=1, scale=0.05, client_id=client_id) as sb:
        ledger = SecretLedger(sb.client_secret)
        store = default_store_path(client_id, {"MELTANO_PROJECT_ROOT": str(REPO_ROOT)})
        try:
            with recording_issued_tokens(ledger):
                yield sb, ledger, store
        finally:
            for path in (store, store.with_name(store.name + ".lock")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def test_meltano_login_then_scheduled_runs_with_rotation(meltano, meltano_sandbox):
    sandbox, ledger, store = meltano_sandbox
    stale_refresh_token = sandbox.issue_refresh_token()
    ledger.add(stale_refresh_token)
    env = meltano.environment(
        {
            "TAP_PIPEDRIVE_CLIENT_ID": sandbox.client_id,
            "TAP_PIPEDRIVE_CLIENT_SECRET": sandbox.client_secret,
            # An old refresh token left in the project settings: the login supersedes it.
            "TAP_PIPEDRIVE_REFRESH_TOKEN": stale_refresh_token,
            "TAP_PIPEDRIVE_OAUTH_URL": sandbox.url,
            "TAP_PIPEDRIVE_API_URL": sandbox.url,
            "TAP_PIPEDRIVE_REDIRECT_URI": f"http://localhost:{free_port()}/callback",
        }
    )
    outputs: list[str] = []
    with subprocess.Popen(
        [str(meltano.executable), "invoke", "tap-pipedrive:login", "--no-browser"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    ) as login:
        url = login.stdout.readline().strip()
        assert url.startswith(f"{sandbox.url}/oauth/authorize?"), url
        out, err = login.communicate(consent(url) + "\n", timeout=300)
    outputs += [url, out, err]
    assert login.returncode == 0, err[-3000:]
    assert str(store) in out
    assert [call["status"] for call in code_calls(sandbox)] == [200]
    assert (
        refresh_token_fingerprint(stale_refresh_token)
        in stored_entry(store)["replaced_refresh_tokens"]
    )

    def scheduled_run() -> None:
        result = subprocess.run(
            [str(meltano.executable), "invoke", "tap-pipedrive", "--discover"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=600,
            check=False,
        )
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout)["streams"]

    scheduled_run()  # reuses the access token from the login
    assert refresh_calls(sandbox) == []
    for _ in range(2):
        # An hour later the access token has expired: refresh, rotate, persist.
        sandbox.advance_clock(3600)
        expire_stored_access_token(store)
        scheduled_run()
    assert [call["status"] for call in refresh_calls(sandbox)] == [200, 200]
    assert set(sandbox.oauth.refresh_tokens) - {stale_refresh_token} == {
        stored_entry(store)["refresh_token"]
    }
    ledger.assert_absent(*outputs)
