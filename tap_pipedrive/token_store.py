"""A file that carries OAuth tokens from one run to the next.

Pipedrive may hand out a new refresh token on every refresh. Under Meltano the
config file is rewritten from the project settings for every run, so a rotated
token written there would be lost; the token store is the one place that always
holds the newest tokens. It is a small JSON file (mode 0600, replaced atomically)
guarded by an exclusive ``flock`` on a lock file next to it, so that two processes
sharing it never refresh at the same time: the second one waits, then reuses what
the first stored.

Which tokens win when the config and the store disagree is decided by
``auth.store_is_newer``; docs/oauth.md states the rule for users.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import typing as t
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import platformdirs

from tap_pipedrive.auth import TokenSet
from tap_pipedrive.errors import ConfigError, PipedriveError

LOGGER = logging.getLogger("tap-pipedrive")

STORE_FORMAT_VERSION = 1
# How long a process waits for another one to finish its refresh before giving up.
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
# Enough history to recognise every config value a project is likely to still carry,
# without letting the file grow for ever on a busy rotation schedule.
REPLACED_HISTORY_LIMIT = 50
_LOCK_POLL_SECONDS = 0.05


class TokenStoreError(PipedriveError):
    """The token store cannot be read, written or locked."""


def refresh_token_fingerprint(refresh_token: str) -> str:
    """A one-way digest that recognises a refresh token without storing it again."""
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()


def _file_safe(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    if cleaned == text and cleaned:
        return cleaned
    # Keep distinct inputs distinct even when they clean to the same text.
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned[:40]}-{digest}" if cleaned else digest


def default_store_path(
    client_id: str,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Where the tokens of one OAuth app live when ``oauth_settings_location`` is unset.

    Under Meltano (``MELTANO_PROJECT_ROOT`` is set for every plugin it runs) the
    file sits inside the project's ``.meltano`` directory, keyed by the extractor's
    name so that inherited extractors (one per company) keep separate tokens.
    Elsewhere it is the user's data directory, keyed by client id.
    """
    env = os.environ if environ is None else environ
    client = _file_safe(client_id)
    project_root = env.get("MELTANO_PROJECT_ROOT")
    if project_root:
        extractor = _file_safe(env.get("MELTANO_EXTRACTOR_NAME") or "tap-pipedrive")
        directory = Path(project_root) / ".meltano" / "tap-pipedrive" / "oauth"
        return directory / f"{extractor}--{client}.json"
    data_dir = platformdirs.user_data_dir("tap-pipedrive", appauthor=False)
    return Path(data_dir) / "oauth" / f"{client}.json"


def store_path_from_config(config: Mapping[str, t.Any]) -> Path:
    """The store file the config points at, or the default one for its client id."""
    location = config.get("oauth_settings_location")
    if location:
        return Path(os.path.expandvars(str(location))).expanduser()
    return default_store_path(str(config.get("client_id") or ""))


class FileTokenStore:
    """Tokens of one OAuth app in a JSON file, shared safely between processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        client_id: str,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.client_id = client_id
        self.lock_timeout = lock_timeout
        # flock is per open file, so nested use within one process must reuse the
        # descriptor it already holds instead of deadlocking on a second one.
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    # --- locking -----------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive lock (re-entrant within this process)."""
        with self._thread_lock:
            if self._depth == 0:
                self._lock_fd = self._acquire_file_lock()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    fd, self._lock_fd = self._lock_fd, None
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    def _acquire_file_lock(self) -> int:
        self._ensure_directory()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            msg = f"Cannot open the token store lock file {self.lock_path}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    msg = f"Cannot lock the token store {self.lock_path}: {exc.strerror}"
                    raise TokenStoreError(msg) from None
            if time.monotonic() >= deadline:
                os.close(fd)
                msg = (
                    f"Timed out after {self.lock_timeout:.0f} s waiting for the token store lock "
                    f"{self.lock_path}: another tap-pipedrive process holds it"
                )
                raise TokenStoreError(msg)
            time.sleep(_LOCK_POLL_SECONDS)

    def _ensure_directory(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"Cannot create the token store directory {self.path.parent}: {exc.strerror}"
            raise TokenStoreError(msg) from None

    # --- reading -----------------------------------------------------------------
    def _read(self) -> dict[str, t.Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"Cannot read the token store {self.path}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            # Never guess here: silently starting over could discard the only copy
            # of a rotated refresh token.
            msg = (
                f"The token store {self.path} is not a JSON object; repair it, or delete it "
                "and run `tap-pipedrive --login`"
            )
            raise TokenStoreError(msg)
        if data.get("client_id") not in (None, self.client_id):
            LOGGER.warning(
                "Ignoring the token store %s: it belongs to another OAuth client id", self.path
            )
            return None
        return data

    def load(self) -> TokenSet | None:
        """The stored tokens, or None when there are none for this client id."""
        data = self._read()
        if data is None:
            return None
        tokens = TokenSet(
            access_token=data.get("access_token") or None,
            refresh_token=data.get("refresh_token") or None,
            expires_at=_optional_float(data.get("expires_at")),
            api_domain=data.get("api_domain") or None,
            scope=data.get("scope") or None,
            obtained_at=_optional_float(data.get("obtained_at")),
        )
        if not (tokens.access_token or tokens.refresh_token):
            return None
        return tokens

    def replaced(self, refresh_token: str) -> bool:
        """Whether this refresh token was superseded by the one the store holds."""
        data = self._read() or {}
        history = data.get("replaced_refresh_tokens") or []
        return refresh_token_fingerprint(refresh_token) in history

    # --- writing -----------------------------------------------------------------
    def save(self, tokens: TokenSet, *, replacing: Iterable[str | None] = ()) -> None:
        """Store a new token set atomically.

        ``replacing`` names refresh tokens that the new set supersedes (the one used
        for the refresh, the config's); the previously stored one is added
        automatically. Only their digests are kept.
        """
        with self.locked():
            previous = self._read() or {}
            history = [str(item) for item in previous.get("replaced_refresh_tokens") or []]
            candidates = [previous.get("refresh_token"), *replacing]
            for token in candidates:
                if token and token != tokens.refresh_token:
                    digest = refresh_token_fingerprint(str(token))
                    if digest in history:
                        history.remove(digest)
                    history.append(digest)
            if tokens.refresh_token:
                current = refresh_token_fingerprint(tokens.refresh_token)
                history = [item for item in history if item != current]
            record: dict[str, t.Any] = {
                "version": STORE_FORMAT_VERSION,
                "client_id": self.client_id,
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_at": tokens.expires_at,
                "api_domain": tokens.api_domain,
                "scope": tokens.scope,
                "obtained_at": tokens.obtained_at if tokens.obtained_at else time.time(),
                "replaced_refresh_tokens": history[-REPLACED_HISTORY_LIMIT:],
            }
            atomic_write_json(self.path, record)


def _optional_float(value: t.Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def atomic_write_json(path: str | os.PathLike[str], data: Mapping[str, t.Any]) -> Path:
    """Replace ``path`` with ``data`` as JSON, mode 0600, never leaving a partial file.

    The new content is written to a private temporary file in the same directory,
    flushed to disk, then renamed over the target, so readers see either the old or
    the new file. A symlinked target is followed so that the link survives.
    """
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.is_symlink():
            target = target.resolve()
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600 before anything is written to it.
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        msg = f"Cannot write {target}: {exc.strerror}"
        raise TokenStoreError(msg) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        temp_path = Path(temp_name)
        temp_path.chmod(0o600)  # explicit, whatever the umask
        temp_path.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(temp_name).unlink()
        msg = f"Cannot write {target}: {exc.strerror}"
        raise TokenStoreError(msg) from None
    _fsync_directory(target.parent)
    return target


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every file system allows it.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_store(config: Mapping[str, t.Any]) -> FileTokenStore:
    """The token store for an OAuth config (client_id must be set)."""
    client_id = str(config.get("client_id") or "")
    if not client_id:
        msg = "The token store needs client_id: set it alongside client_secret"
        raise ConfigError(msg)
    return FileTokenStore(store_path_from_config(config), client_id=client_id)


__all__ = [
    "FileTokenStore",
    "TokenStoreError",
    "atomic_write_json",
    "default_store_path",
    "open_store",
    "refresh_token_fingerprint",
    "store_path_from_config",
]
