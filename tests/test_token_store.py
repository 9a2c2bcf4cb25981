"""The token store: atomic 0600 writes, the file lock, history, paths, precedence."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tap_pipedrive.auth.authenticator import store_is_newer
from tap_pipedrive.auth.store import (
    FileTokenStore,
    TokenStoreError,
    atomic_write_json,
    default_store_path,
    refresh_token_fingerprint,
    store_path_from_config,
)
from tap_pipedrive.auth.tokens import TokenSet
from tap_pipedrive.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tokens(refresh: str = "refresh-one", access: str = "access-one", **kwargs) -> TokenSet:
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_at=kwargs.pop("expires_at", time.time() + 3600),
        api_domain=kwargs.pop("api_domain", "https://acme.pipedrive.com"),
        scope=kwargs.pop("scope", "base deals:read"),
        obtained_at=kwargs.pop("obtained_at", time.time()),
    )


@pytest.fixture
def store(tmp_path) -> FileTokenStore:
    return FileTokenStore(tmp_path / "nested" / "tokens.json", client_id="client-a")


def test_save_then_load_round_trips_every_field(store):
    saved = tokens()
    store.save(saved)
    loaded = store.load()
    assert loaded == saved
    assert mode(store.path) == 0o600
    assert mode(store.path.parent) == 0o700


def test_save_is_0600_even_with_a_permissive_umask(store):
    previous = os.umask(0)
    try:
        store.save(tokens())
    finally:
        os.umask(previous)
    assert mode(store.path) == 0o600
    assert mode(store.lock_path) == 0o600


def test_load_of_a_missing_store_is_none(store):
    assert store.load() is None
    assert not store.path.exists()


def test_store_of_another_client_id_is_neither_read_nor_lost(store):
    store.save(tokens())
    other = FileTokenStore(store.path, client_id="client-b")
    assert other.load() is None
    other.save(tokens("refresh-of-b", "access-of-b"))
    assert other.load().refresh_token == "refresh-of-b"
    assert store.load().refresh_token == "refresh-one"


def test_corrupt_store_is_a_one_line_error_not_a_fresh_start(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(TokenStoreError, match="is not a JSON object") as caught:
        store.load()
    assert "\n" not in str(caught.value)


ACME = "https://acme.pipedrive.com"


def test_history_records_replaced_refresh_tokens_as_digests(store):
    store.save(tokens("first"))
    store.save(tokens("second"), replacing=["from-config"])
    assert store.replaced("first", api_domain=ACME)
    assert store.replaced("from-config", api_domain=ACME)
    assert not store.replaced("second", api_domain=ACME)
    assert not store.replaced("never-seen", api_domain=ACME)
    text = store.path.read_text()
    # Only digests: the superseded tokens themselves are not kept.
    assert "first" not in text and "from-config" not in text
    assert refresh_token_fingerprint("first") in text


def test_history_forgets_a_token_that_becomes_current_again(store):
    store.save(tokens("one"))
    store.save(tokens("two"))
    store.save(tokens("one"))
    assert not store.replaced("one", api_domain=ACME)
    assert store.replaced("two", api_domain=ACME)


def test_history_is_bounded(store):
    for number in range(80):
        store.save(tokens(f"token-{number}"))
    (entry,) = json.loads(store.path.read_text())["authorizations"]
    assert len(entry["replaced_refresh_tokens"]) == 50
    assert store.replaced("token-78", api_domain=ACME)
    assert not store.replaced("token-0", api_domain=ACME)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_json(target, {"keep": "me"})

    def broken_dump(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(TokenStoreError, match="No space left on device"):
        atomic_write_json(target, {"keep": "not me"})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"keep": "me"}
    # No temporary file is left behind either.
    assert [path.name for path in tmp_path.iterdir()] == ["config.json"]


def test_atomic_write_follows_a_symlink(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_json(link, {"a": 1})
    assert link.is_symlink()
    assert json.loads(real.read_text()) == {"a": 1}
    assert mode(real) == 0o600


def test_readers_never_see_a_partial_file(tmp_path):
    """A reader polling during many rewrites only ever sees complete JSON."""
    target = tmp_path / "store.json"
    atomic_write_json(target, {"n": 0, "pad": "x" * 50_000})
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import json, sys, time
                bad = 0
                end = time.time() + 1.5
                while time.time() < end:
                    try:
                        json.loads(open({str(target)!r}).read())
                    except ValueError:
                        bad += 1
                print(bad)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as reader:
        deadline = time.time() + 1.5
        number = 0
        while time.time() < deadline:
            number += 1
            atomic_write_json(target, {"n": number, "pad": "x" * 50_000})
        out, _ = reader.communicate(timeout=10)
    assert number > 10
    assert out.strip() == "0"


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from tap_pipedrive.auth.store import FileTokenStore
    store = FileTokenStore(sys.argv[1], client_id="client-a")
    with store.locked():
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_lock_excludes_other_processes(store):
    with subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(store.path), "1.0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with store.locked():
            waited = time.monotonic() - started
            # We only got the lock once the other process had let go of it.
            assert holder.wait(timeout=10) == 0
        assert waited > 0.5


def test_lock_wait_has_a_timeout_with_one_clear_line(tmp_path):
    path = tmp_path / "tokens.json"
    with subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout.readline().strip() == "locked"
            impatient = FileTokenStore(path, client_id="client-a", lock_timeout=0.3)
            with (
                pytest.raises(TokenStoreError, match="another tap-pipedrive process holds it"),
                impatient.locked(),
            ):
                pass
        finally:
            holder.kill()


def test_lock_is_reentrant_within_a_process(store):
    with store.locked(), store.locked():
        store.save(tokens())  # save takes the lock itself too
    assert store.load() is not None


def test_default_path_is_per_user_and_keyed_by_client_id(tmp_path):
    path = default_store_path("abc123", environ={})
    assert path.name == "abc123.json"
    assert path.parent.name == "oauth"
    assert "tap-pipedrive" in path.parts
    assert default_store_path("other", environ={}) != path


def test_default_path_under_meltano_is_in_the_project_per_extractor(tmp_path):
    env = {"MELTANO_PROJECT_ROOT": str(tmp_path), "MELTANO_EXTRACTOR_NAME": "tap-pipedrive--eu"}
    path = default_store_path("abc123", environ=env)
    assert (
        path == tmp_path / ".meltano" / "tap-pipedrive" / "oauth" / "tap-pipedrive--eu--abc123.json"
    )


def test_odd_client_ids_make_distinct_safe_file_names():
    first = default_store_path("a/b", environ={})
    second = default_store_path("a_b", environ={})
    assert first != second
    assert "/" not in first.name


def test_oauth_settings_location_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = {"client_id": "c", "oauth_settings_location": "~/secrets/pd.json"}
    assert store_path_from_config(config) == tmp_path / "secrets" / "pd.json"


# --- precedence ---------------------------------------------------------------------------
def config_tokens(refresh: str | None) -> TokenSet:
    return TokenSet(access_token=None, refresh_token=refresh, obtained_at=None)


def test_store_continuing_the_config_authorization_wins(store):
    store.save(tokens("rotated"), replacing=["from-config"])
    stored = store.load()
    assert store_is_newer(config_tokens("from-config"), stored, store)
    assert store_is_newer(config_tokens("rotated"), stored, store)


def test_config_with_a_refresh_token_the_store_never_saw_wins(store):
    store.save(tokens("old-authorization"))
    assert not store_is_newer(config_tokens("pasted-after-new-login"), store.load(), store)


def test_store_wins_when_the_config_has_no_refresh_token(store):
    store.save(tokens("stored"))
    assert store_is_newer(config_tokens(None), store.load(), store)


def test_timestamped_sets_are_ordered_by_obtained_at(store):
    store.save(tokens("a", obtained_at=2000.0))
    stored = store.load()
    assert store_is_newer(tokens("b", obtained_at=1000.0), stored, store)
    assert not store_is_newer(tokens("b", obtained_at=2000.0), stored, store)
    assert not store_is_newer(tokens("b", obtained_at=3000.0), stored, store)


# --- one entry per authorization ----------------------------------------------------------
GLOBEX = "https://globex.pipedrive.com"


def test_a_login_for_another_company_never_retires_the_first_one(store):
    store.save(tokens("acme-refresh"))
    store.save(tokens("globex-refresh", api_domain=GLOBEX))
    assert not store.replaced("acme-refresh", api_domain=ACME)
    assert not store.replaced("acme-refresh", api_domain=GLOBEX)
    acme_config = TokenSet(refresh_token="acme-refresh", api_domain=ACME)
    assert store.load(acme_config).refresh_token == "acme-refresh"
    # Without api_domain the refresh token alone finds its company.
    assert store.load(config_tokens("acme-refresh")).api_domain == ACME
    assert store.load(config_tokens("globex-refresh")).api_domain == GLOBEX


def test_tokens_of_another_company_never_win(store):
    store.save(tokens("globex-refresh", api_domain=GLOBEX), replacing=["acme-refresh"])
    globex = store.load(config_tokens("globex-refresh"))
    acme_config = TokenSet(refresh_token="acme-refresh", api_domain=ACME)
    assert store.load(acme_config) is None
    assert not store_is_newer(acme_config, globex, store)


def test_a_token_another_company_holds_is_never_recorded_as_replaced(store):
    store.save(tokens("acme-refresh"))
    # A login for Globex from a config file that still carried Acme's refresh token.
    store.save(tokens("globex-refresh", api_domain=GLOBEX), replacing=["acme-refresh"])
    assert not store.replaced("acme-refresh", api_domain=GLOBEX)
    assert store.load(config_tokens("acme-refresh")).api_domain == ACME


def test_rotation_and_precedence_hold_within_each_company(store):
    store.save(tokens("acme-1"))
    store.save(tokens("globex-1", api_domain=GLOBEX))
    store.save(tokens("acme-2"), replacing=["acme-1"])
    store.save(tokens("globex-2", api_domain=GLOBEX), replacing=["globex-1"])
    acme = store.load(config_tokens("acme-1"))
    assert acme.refresh_token == "acme-2"
    assert store_is_newer(config_tokens("acme-1"), acme, store)
    assert not store_is_newer(config_tokens("globex-1"), acme, store)
    assert store.load(config_tokens("globex-1")).refresh_token == "globex-2"
    assert not store_is_newer(config_tokens("pasted-new-login"), acme, store)


def test_without_refresh_token_several_companies_are_a_one_line_refusal(store):
    store.save(tokens("acme-refresh"))
    assert store.load().api_domain == ACME  # one company: no choice to make
    store.save(tokens("globex-refresh", api_domain=GLOBEX))
    with pytest.raises(ConfigError, match="several companies") as caught:
        store.load()
    assert "set api_domain" in str(caught.value) and "\n" not in str(caught.value)
    assert store.load(TokenSet(api_domain=f"{GLOBEX.upper()}/")).refresh_token == "globex-refresh"


def test_entries_belong_to_their_token_endpoint(store):
    store.save(tokens())
    elsewhere = FileTokenStore(store.path, client_id="client-a", oauth_url="http://127.0.0.1:9")
    assert elsewhere.load() is None
    assert elsewhere.load(config_tokens("refresh-one")) is None
    elsewhere.save(tokens("other-endpoint"))
    assert store.load().refresh_token == "refresh-one"


def write_version_1(store: FileTokenStore, api_domain: str) -> None:
    store.path.parent.mkdir(mode=0o700)
    record = {
        "version": 1,
        "client_id": "client-a",
        "access_token": "old-access",
        "refresh_token": "old-refresh",
        "expires_at": time.time() + 3600,
        "api_domain": api_domain,
        "replaced_refresh_tokens": [refresh_token_fingerprint("older-refresh")],
    }
    atomic_write_json(store.path, record)


def test_a_version_1_store_of_a_pipedrive_company_is_read_and_upgraded(store):
    write_version_1(store, ACME)
    assert store.load().refresh_token == "old-refresh"
    assert store.replaced("older-refresh", api_domain=ACME)
    store.save(tokens("new-refresh"))
    data = json.loads(store.path.read_text())
    assert data["version"] == 2
    (entry,) = data["authorizations"]
    assert entry["oauth_url"] == "https://oauth.pipedrive.com"
    assert store.replaced("old-refresh", api_domain=ACME)


def test_a_version_1_store_of_any_other_host_is_a_one_line_refusal(store):
    write_version_1(store, "http://127.0.0.1:4444")
    with pytest.raises(TokenStoreError, match="older tap-pipedrive") as caught:
        store.load()
    assert "\n" not in str(caught.value) and "delete it" in str(caught.value)
