"""A file that carries OAuth tokens from one run to the next.

Pipedrive may hand out a new refresh token on every refresh. Under Meltano the
config file is rewritten from the project settings for every run, so a rotated
token written there would be lost; the token store is the one place that always
holds the newest tokens. It is a small JSON file (mode 0600, replaced atomically)
guarded by an exclusive ``flock`` on a lock file next to it, so that two processes
sharing it never refresh at the same time: the second one waits, then reuses what
the first stored.

One file may hold several authorizations: one OAuth app (client id) used for
several companies, or several apps. Each entry belongs to exactly one token
endpoint (``oauth_url``), one client id and one company (the ``api_domain`` the
token endpoint answered with), and a config only ever sees the entries of its own
token endpoint and client id. Which entry a config continues, and whether it wins
over the config's own tokens, is decided by ``FileTokenStore.load`` and
``auth.authenticator.store_is_newer``; docs/oauth.md states the rules for users.

The file, the lock file and their directory must belong to the user running the
tap and must not be writable by anyone else: a store another user could plant,
replace or redirect with a symbolic link is refused with one line.
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
import stat
import tempfile
import threading
import time
import typing as t
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
from typing_extensions import override

from tap_pipedrive.auth.company import same_company, url_identity
from tap_pipedrive.auth.tokens import DEFAULT_OAUTH_URL, TokenSet
from tap_pipedrive.errors import ConfigError, PipedriveError

LOGGER = logging.getLogger("tap-pipedrive")

# 1: one authorization per file, keyed by client id only. 2: entries per authorization.
STORE_FORMAT_VERSION = 2
# How long a process waits for another one to finish its refresh before giving up.
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
# Enough history to recognise every config value a project is likely to still carry,
# without letting the file grow for ever on a busy rotation schedule.
REPLACED_HISTORY_LIMIT = 50
_LOCK_POLL_SECONDS = 0.05
# Where real Pipedrive companies live; a version 1 store for such a host can only have
# come from Pipedrive's own token endpoint.
_PIPEDRIVE_COMPANY_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.pipedrive\.com$")
# Not in every os module (O_NOFOLLOW is POSIX, and flock already ties us to POSIX).
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class TokenStoreError(PipedriveError):
    """The token store cannot be read, written or locked, or cannot be trusted."""


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
    Elsewhere it is the user's data directory, keyed by client id; the companies
    authorized with that app are entries of that one file.
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


# --- what may be trusted on disk ----------------------------------------------------------
def _refuse(store: Path, subject: str, why: str) -> t.NoReturn:
    """One line naming the store, the part of it at fault, and why."""
    msg = f"Refusing the token store {store}: {subject} {why}"
    raise TokenStoreError(msg)


def _check_owner_and_mode(store: Path, subject: str, path: Path, info: os.stat_result) -> None:
    """Only the user running the tap may own or change what the store trusts."""
    if info.st_uid != os.geteuid():
        _refuse(store, subject, f"belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        _refuse(
            store,
            subject,
            f"is writable by other users (mode {mode:o}); "
            f"run `chmod go-w {path}` or choose a private location",
        )


def _check_directory(store: Path, directory: Path) -> None:
    """The directory exists and only the user running the tap can change it."""
    subject = f"its directory {directory}"
    try:
        link = os.lstat(directory)
        info = directory.stat()
    except OSError as exc:
        _refuse(store, subject, f"cannot be read ({exc.strerror})")
    if stat.S_ISLNK(link.st_mode) and link.st_uid != os.geteuid():
        _refuse(store, subject, f"is a symbolic link made by uid {link.st_uid}")
    if not stat.S_ISDIR(info.st_mode):
        _refuse(store, subject, "is not a directory")
    _check_owner_and_mode(store, subject, directory, info)


def ensure_private_directory(directory: Path) -> None:
    """Create every missing directory of ``directory`` with mode 0700, whatever the umask.

    ``Path.mkdir(parents=True)`` gives the parents it creates the umask's default mode
    (0777 under umask 000), so each level is created, and chmod-ed, here.
    """
    missing: list[Path] = []
    current = directory
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process created it meanwhile; it is checked below
        except OSError as exc:
            msg = f"Cannot create the directory {level}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        with contextlib.suppress(OSError):
            level.chmod(0o700)


def _check_open_file(store: Path, subject: str, path: Path, fd: int) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        _refuse(store, subject, "is not a regular file")
    _check_owner_and_mode(store, subject, path, info)


def _open_no_follow(store: Path, subject: str, path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _refuse(store, subject, "is a symbolic link")
        raise


class FileTokenStore:
    """OAuth authorizations in a JSON file, shared safely between processes.

    A store object serves one token endpoint and one client id; the file may hold
    entries of others, which it never reads as its own and always keeps.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        client_id: str,
        oauth_url: str = DEFAULT_OAUTH_URL,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.client_id = client_id
        self.oauth_url = oauth_url
        self.lock_timeout = lock_timeout
        # flock is per open file, so nested use within one process must reuse the
        # descriptor it already holds instead of deadlocking on a second one.
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None

    @override
    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    @property
    def _lock_subject(self) -> str:
        return f"its lock file {self.lock_path}"

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
            # O_NOFOLLOW: a planted link must not make us create or open another file.
            fd = _open_no_follow(
                self.path, self._lock_subject, self.lock_path, os.O_RDWR | os.O_CREAT
            )
        except OSError as exc:
            msg = f"Cannot open the token store lock file {self.lock_path}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        try:
            _check_open_file(self.path, self._lock_subject, self.lock_path, fd)
        except TokenStoreError:
            os.close(fd)
            raise
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
        ensure_private_directory(self.path.parent)
        _check_directory(self.path, self.path.parent)

    def _file_path(self) -> Path:
        """The file to read and replace: the store path, or its target if it is a link.

        A link is followed only when the user made it and its target's directory is
        private too; a link planted by someone else is refused.
        """
        try:
            link = os.lstat(self.path)
        except FileNotFoundError:
            return self.path
        except OSError as exc:
            msg = f"Cannot read the token store {self.path}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        if not stat.S_ISLNK(link.st_mode):
            return self.path
        if link.st_uid != os.geteuid():
            _refuse(self.path, "it", f"is a symbolic link made by uid {link.st_uid}")
        target = self.path.resolve()
        _check_directory(self.path, target.parent)
        return target

    # --- reading -----------------------------------------------------------------
    def _read_file(self) -> list[dict[str, t.Any]]:
        """Every entry of the file, whoever they belong to ([] when there is no file)."""
        if not os.path.lexists(self.path.parent):
            return []
        _check_directory(self.path, self.path.parent)
        path = self._file_path()
        subject = "it" if path == self.path else f"its target {path}"
        try:
            fd = _open_no_follow(self.path, subject, path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        except OSError as exc:
            msg = f"Cannot read the token store {path}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        try:
            # Checked on the open file: what was checked is what is read.
            _check_open_file(self.path, subject, path, fd)
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read()
        except OSError as exc:
            msg = f"Cannot read the token store {path}: {exc.strerror}"
            raise TokenStoreError(msg) from None
        finally:
            os.close(fd)
        try:
            data = json.loads(raw.decode("utf-8"))
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
        if "authorizations" not in data:
            return self._from_version_1(data)
        entries = data.get("authorizations")
        if not isinstance(entries, list) or not all(isinstance(item, dict) for item in entries):
            msg = (
                f"The token store {self.path} has no list of authorizations; repair it, or "
                "delete it and run `tap-pipedrive --login`"
            )
            raise TokenStoreError(msg)
        return [dict(item) for item in entries]

    def _from_version_1(self, data: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """A store of one authorization, written before stores named their token endpoint.

        Its company host tells where it came from: a ``*.pipedrive.com`` company over
        https can only have been issued by Pipedrive's own token endpoint. Anything else
        (a test server, a proxy) is refused rather than guessed.
        """
        if not (data.get("access_token") or data.get("refresh_token")):
            return []
        domain = url_identity(data.get("api_domain")) or ""
        parts = urlsplit(domain)
        if parts.scheme != "https" or not _PIPEDRIVE_COMPANY_HOST.match(parts.hostname or ""):
            msg = (
                f"The token store {self.path} was written by an older tap-pipedrive for "
                f"{str(data.get('api_domain') or 'an unknown company')[:80]!r} and does not say "
                "which oauth_url issued its tokens: delete it and run `tap-pipedrive --login`"
            )
            raise TokenStoreError(msg)
        entry = {key: value for key, value in data.items() if key != "version"}
        entry.setdefault("client_id", self.client_id)
        return [{**entry, "oauth_url": DEFAULT_OAUTH_URL}]

    def _mine(self, entry: Mapping[str, t.Any]) -> bool:
        return entry.get("client_id") == self.client_id and url_identity(
            entry.get("oauth_url")
        ) == url_identity(self.oauth_url)

    def _select(
        self, entries: list[dict[str, t.Any]], current: TokenSet | None
    ) -> dict[str, t.Any] | None:
        """The entry that continues the authorization ``current`` belongs to.

        1. A known company (the config's api_domain, or the tokens' own after a
           refresh) picks its entry and nothing else.
        2. Otherwise a refresh token picks the entry that holds it, or the one entry
           that recorded it as replaced.
        3. Otherwise (no refresh token: the store is the only source) the app's only
           company is used; with several, the config has to name one.
        """
        mine = [entry for entry in entries if self._mine(entry)]
        current = current or TokenSet()
        if current.api_domain:
            return next(
                (e for e in mine if same_company(e.get("api_domain"), current.api_domain)), None
            )
        if current.refresh_token:
            holding = [e for e in mine if e.get("refresh_token") == current.refresh_token]
            if len(holding) == 1:
                return holding[0]
            digest = refresh_token_fingerprint(current.refresh_token)
            replaced = [e for e in mine if digest in (e.get("replaced_refresh_tokens") or [])]
            return replaced[0] if len(holding) == 0 and len(replaced) == 1 else None
        usable = [e for e in mine if e.get("access_token") or e.get("refresh_token")]
        if len(usable) > 1:
            companies = ", ".join(sorted(str(e.get("api_domain")) for e in usable))
            msg = (
                f"The token store {self.path} holds OAuth tokens of several companies for this "
                f"client_id ({companies[:200]}): set api_domain to the company this config is for"
            )
            raise ConfigError(msg)
        return usable[0] if usable else None

    def load(self, current: TokenSet | None = None) -> TokenSet | None:
        """The stored tokens that continue the authorization of ``current``, if any.

        ``current`` is what the caller holds (the config's tokens and api_domain, or
        tokens it refreshed); see ``_select`` for how it picks the entry.
        """
        entry = self._select(self._read_file(), current)
        if entry is None:
            return None
        tokens = TokenSet(
            access_token=entry.get("access_token") or None,
            refresh_token=entry.get("refresh_token") or None,
            expires_at=_optional_float(entry.get("expires_at")),
            api_domain=entry.get("api_domain") or None,
            scope=entry.get("scope") or None,
            obtained_at=_optional_float(entry.get("obtained_at")),
        )
        if not (tokens.access_token or tokens.refresh_token):
            return None
        return tokens

    def replaced(self, refresh_token: str, *, api_domain: str | None) -> bool:
        """Whether the company's entry recorded this refresh token as superseded."""
        digest = refresh_token_fingerprint(refresh_token)
        for entry in self._read_file():
            if self._mine(entry) and url_identity(entry.get("api_domain")) == url_identity(
                api_domain
            ):
                return digest in (entry.get("replaced_refresh_tokens") or [])
        return False

    # --- writing -----------------------------------------------------------------
    def save(self, tokens: TokenSet, *, replacing: Iterable[str | None] = ()) -> None:
        """Store a new token set atomically as the entry of its company.

        ``replacing`` names refresh tokens that the new set supersedes (the one used
        for the refresh, the config's); the company's previously stored one is added
        automatically. A token another entry holds or recorded belongs to another
        authorization and is never listed here. Only digests are kept, and the
        entries of other companies, endpoints and apps are left exactly as they were.
        """
        with self.locked():
            entries = self._read_file()
            index = next(
                (
                    number
                    for number, entry in enumerate(entries)
                    if self._mine(entry)
                    and url_identity(entry.get("api_domain")) == url_identity(tokens.api_domain)
                ),
                None,
            )
            previous = entries[index] if index is not None else {}
            others_know: set[str] = set()
            for number, entry in enumerate(entries):
                if number != index:
                    others_know.update(entry.get("replaced_refresh_tokens") or [])
                    if entry.get("refresh_token"):
                        others_know.add(refresh_token_fingerprint(str(entry["refresh_token"])))
            history = [str(item) for item in previous.get("replaced_refresh_tokens") or []]
            for token in [previous.get("refresh_token"), *replacing]:
                if not token or token == tokens.refresh_token:
                    continue
                digest = refresh_token_fingerprint(str(token))
                if digest in others_know:
                    continue
                if digest in history:
                    history.remove(digest)
                history.append(digest)
            if tokens.refresh_token:
                current = refresh_token_fingerprint(tokens.refresh_token)
                history = [item for item in history if item != current]
            record: dict[str, t.Any] = {
                "oauth_url": self.oauth_url,
                "client_id": self.client_id,
                "api_domain": tokens.api_domain,
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_at": tokens.expires_at,
                "scope": tokens.scope,
                "obtained_at": tokens.obtained_at if tokens.obtained_at else time.time(),
                "replaced_refresh_tokens": history[-REPLACED_HISTORY_LIMIT:],
            }
            if index is None:
                entries.append(record)
            else:
                entries[index] = record
            # A version 1 store becomes version 2 here, with its one entry kept.
            atomic_write_json(
                self._file_path(),
                {"version": STORE_FORMAT_VERSION, "authorizations": entries},
            )


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
    the new file. A symlinked target is followed so that the link survives. Missing
    directories are created with mode 0700.
    """
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.is_symlink():
            target = target.resolve()
    ensure_private_directory(target.parent)
    try:
        # mkstemp creates the file with O_EXCL and O_NOFOLLOW, mode 0600, before anything
        # is written to it: nothing planted under its random name is ever opened.
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
            os.fchmod(handle.fileno(), 0o600)  # explicit, whatever the umask
            os.fsync(handle.fileno())
        Path(temp_name).replace(target)
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
    return FileTokenStore(
        store_path_from_config(config),
        client_id=client_id,
        oauth_url=str(config.get("oauth_url") or DEFAULT_OAUTH_URL),
    )


__all__ = [
    "FileTokenStore",
    "TokenStoreError",
    "atomic_write_json",
    "default_store_path",
    "ensure_private_directory",
    "open_store",
    "refresh_token_fingerprint",
    "store_path_from_config",
]
