"""A token store no one else can touch: owners, modes, links and the umask.

Some of these tests need a second user. Tests run as root in CI, so they plant
files as a throwaway uid through ``setpriv`` (or ``runuser`` as ``nobody``), and
skip when the machine allows neither.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tap_pipedrive.auth.store import FileTokenStore, TokenStoreError
from tap_pipedrive.auth.tokens import TokenSet
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import catalog_for, run_tap

OTHER_UID = 54321


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def tokens(refresh: str = "refresh-one") -> TokenSet:
    return TokenSet(
        access_token="access-one",
        refresh_token=refresh,
        expires_at=time.time() + 3600,
        api_domain="https://acme.pipedrive.com",
        obtained_at=time.time(),
    )


def store_at(path: Path) -> FileTokenStore:
    return FileTokenStore(path, client_id="client-a")


def refused(error: pytest.ExceptionInfo[TokenStoreError], *words: str) -> None:
    message = str(error.value)
    assert message.startswith("Refusing the token store"), message
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.fixture
def can_chown():
    if os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root")


# --- creating: 0700 directories and 0600 files whatever the umask ---------------------------
def test_umask_000_creates_every_missing_directory_0700_and_files_0600(tmp_path):
    store = store_at(tmp_path / "one" / "two" / "three" / "tokens.json")
    previous = os.umask(0)
    try:
        store.save(tokens())
    finally:
        os.umask(previous)
    for directory in ("one", "one/two", "one/two/three"):
        assert mode(tmp_path / directory) == 0o700, directory
    assert mode(store.path) == 0o600
    assert mode(store.lock_path) == 0o600
    assert not [path.name for path in store.path.parent.iterdir() if path.name.endswith(".tmp")]


# --- refusing what others could have changed -------------------------------------------------
@pytest.mark.parametrize("directory_mode", [0o770, 0o707, 0o1777])
def test_a_store_directory_writable_by_others_is_refused(tmp_path, directory_mode):
    directory = tmp_path / "shared"
    store = store_at(directory / "tokens.json")
    store.save(tokens())
    directory.chmod(directory_mode)
    with pytest.raises(TokenStoreError) as caught:
        store.load()
    refused(caught, f"its directory {directory} is writable by other users")
    with pytest.raises(TokenStoreError):
        store.save(tokens("refresh-two"))


def test_a_store_file_writable_by_others_is_refused(tmp_path):
    store = store_at(tmp_path / "private" / "tokens.json")
    store.save(tokens())
    store.path.chmod(0o622)
    with pytest.raises(TokenStoreError) as caught:
        store.load()
    refused(caught, f"{store.path}: it is writable by other users")


def test_a_store_file_of_another_user_is_refused(tmp_path, can_chown):
    store = store_at(tmp_path / "private" / "tokens.json")
    store.save(tokens())
    os.chown(store.path, OTHER_UID, OTHER_UID)
    with pytest.raises(TokenStoreError) as caught:
        store.load()
    refused(caught, f"{store.path}: it belongs to uid {OTHER_UID}")


def test_a_store_directory_of_another_user_is_refused(tmp_path, can_chown):
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, OTHER_UID, OTHER_UID)
    with pytest.raises(TokenStoreError) as caught:
        store_at(directory / "tokens.json").save(tokens())
    refused(caught, f"its directory {directory} belongs to uid {OTHER_UID}")


def test_a_lock_file_of_another_user_is_refused(tmp_path, can_chown):
    store = store_at(tmp_path / "private" / "tokens.json")
    store.save(tokens())
    os.chown(store.lock_path, OTHER_UID, OTHER_UID)
    with pytest.raises(TokenStoreError) as caught, store.locked():
        pass
    refused(caught, f"its lock file {store.lock_path} belongs to uid {OTHER_UID}")


def test_a_lock_file_symlink_is_refused_and_its_target_never_created(tmp_path):
    store = store_at(tmp_path / "private" / "tokens.json")
    store.path.parent.mkdir(mode=0o700)
    chosen = tmp_path / "file-of-the-attackers-choice"
    store.lock_path.symlink_to(chosen)
    with pytest.raises(TokenStoreError) as caught:
        store.save(tokens())
    refused(caught, f"its lock file {store.lock_path} is a symbolic link")
    assert not chosen.exists()
    assert not store.path.exists()


def test_a_store_symlink_made_by_another_user_is_refused_and_its_target_untouched(
    tmp_path, can_chown
):
    store = store_at(tmp_path / "private" / "tokens.json")
    store.path.parent.mkdir(mode=0o700)
    precious = tmp_path / "elsewhere" / "precious.json"
    precious.parent.mkdir(mode=0o700)
    precious.write_text('{"keep": "me"}')
    store.path.symlink_to(precious)
    os.lchown(store.path, OTHER_UID, OTHER_UID)
    with pytest.raises(TokenStoreError) as caught:
        store.save(tokens())
    refused(caught, f"{store.path}: it is a symbolic link made by uid {OTHER_UID}")
    assert precious.read_text() == '{"keep": "me"}'


def test_a_symlink_the_user_made_to_a_private_place_is_followed(tmp_path):
    store = store_at(tmp_path / "private" / "tokens.json")
    store.path.parent.mkdir(mode=0o700)
    real = tmp_path / "volume" / "tokens.json"
    real.parent.mkdir(mode=0o700)
    store.path.symlink_to(real)
    store.save(tokens())
    assert store.path.is_symlink()
    assert store.load().refresh_token == "refresh-one"
    assert json.loads(real.read_text())["authorizations"][0]["refresh_token"] == "refresh-one"
    assert mode(real) == 0o600


# --- a second user on the machine ------------------------------------------------------------
def _as_other_user_command() -> list[str] | None:
    """A command prefix that runs as another user, or None when the machine allows none."""
    candidates = []
    if shutil.which("setpriv"):
        candidates.append(
            ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
        )
    if shutil.which("runuser"):
        candidates.append(["runuser", "-u", "nobody", "--"])
    for prefix in candidates:
        probe = subprocess.run(
            [*prefix, "/bin/sh", "-c", "id -u"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0 and probe.stdout.strip() not in ("", str(os.geteuid())):
            return prefix
    return None


@pytest.fixture
def other_user() -> Iterator[tuple[list[str], Path]]:
    """A way to run shell commands as another user, and a sticky directory both can write."""
    prefix = _as_other_user_command()
    if prefix is None:
        pytest.skip("cannot run anything as a second user here (needs setpriv or runuser)")
    shared = Path(tempfile.mkdtemp(prefix="tap-pipedrive-shared-", dir="/tmp"))
    shared.chmod(0o1777)  # like /tmp: anyone may add files
    try:
        yield prefix, shared
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def plant(prefix: list[str], script: str, *args: str, stdin: str = "") -> None:
    """Run ``script`` as the other user (its arguments are $1, $2 ...)."""
    result = subprocess.run(
        [*prefix, "/bin/sh", "-c", script, "sh", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_store_planted_by_another_user_is_never_adopted(sandbox, other_user):
    """A config without refresh_token (the Meltano pattern) reading a planted store."""
    from pipedrive_sandbox import Sandbox

    prefix, shared = other_user
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as attacker:
        entry = {
            "oauth_url": sandbox.url,
            "client_id": sandbox.client_id,
            "api_domain": attacker.url,
            "access_token": "planted-access-token",
            "refresh_token": None,
            "expires_at": time.time() + 3600,
        }
        # Readable both by this tap and by the version before stores had entries.
        planted = {"version": 2, "authorizations": [entry], **entry}
        store = shared / "store.json"
        plant(prefix, 'cat > "$1" && chmod 600 "$1"', str(store), stdin=json.dumps(planted))
        assert store.stat().st_uid != os.geteuid()
        config = {
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "oauth_url": sandbox.url,
            "oauth_settings_location": str(store),
        }
        with pytest.raises(TokenStoreError) as caught:
            run_tap(config, catalog=catalog_for(sandbox, {"currencies"}))
        refused(caught, f"its directory {shared} is writable by other users")
        assert attacker.requests == []


def test_a_symlink_planted_by_another_user_is_refused_and_its_target_untouched(
    sandbox, other_user, tmp_path
):
    prefix, shared = other_user
    chosen = tmp_path / "created-by-the-tap.json"
    store = shared / "store.json"
    plant(prefix, 'ln -s "$1" "$2"', str(chosen), str(store))
    config = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.issue_refresh_token(),
        "oauth_url": sandbox.url,
        "oauth_settings_location": str(store),
    }
    with pytest.raises(TokenStoreError) as caught:
        TapPipedrive(config=config).authenticator.ensure_token()
    refused(caught, f"its directory {shared} is writable by other users")
    assert not chosen.exists()
    assert sandbox.token_calls == []
