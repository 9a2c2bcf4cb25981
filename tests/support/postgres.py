"""A throwaway PostgreSQL server for tests, built from the Debian binaries.

The server lives in a fresh temporary directory, listens on a free port on
127.0.0.1 only, keeps its unix socket inside that directory and requires a
password over TCP, so loaders are exercised the way they would be in
production. PostgreSQL refuses to run as root, so when the tests run as root
(as CI does) every server command runs as the ``postgres`` system user.

Registered as a pytest plugin from ``tests/conftest.py``; tests ask for the
``postgres_server`` (session-wide) or ``postgres_database`` (one empty
database per test) fixtures. Both skip, with the reason, when no PostgreSQL
binaries are installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

SERVER_USER = "postgres"
SUPERUSER = "tap_test"
START_ATTEMPTS = 3
# Durability settings are pointless for a database that is deleted after the run,
# and turning them off keeps loader tests fast on a two-core machine.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
}


class PostgresUnavailableError(RuntimeError):
    """No usable PostgreSQL installation on this machine."""


@dataclass(frozen=True)
class PostgresServer:
    """Connection facts of a running test server."""

    host: str
    port: int
    user: str
    password: str
    database: str
    socket_dir: Path

    @property
    def dsn(self) -> str:
        """A libpq URL for this database (contains the throwaway password)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def with_database(self, database: str) -> PostgresServer:
        return dataclasses.replace(self, database=database)

    def target_postgres_env(self, schema: str = "public") -> dict[str, str]:
        """Environment variables that point Meltano's ``target-postgres`` here."""
        return {
            "TARGET_POSTGRES_HOST": self.host,
            "TARGET_POSTGRES_PORT": str(self.port),
            "TARGET_POSTGRES_USER": self.user,
            "TARGET_POSTGRES_PASSWORD": self.password,
            "TARGET_POSTGRES_DATABASE": self.database,
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
        }


def find_bin_dir() -> Path:
    """Locate the directory that holds ``initdb``, ``pg_ctl`` and ``postgres``.

    ``PG_BIN_DIR`` wins; then ``pg_config --bindir``; then the newest Debian
    ``/usr/lib/postgresql/<version>/bin``; then whatever ``initdb`` is on PATH.
    """
    candidates: list[Path] = []
    if os.environ.get("PG_BIN_DIR"):
        candidates.append(Path(os.environ["PG_BIN_DIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    debian_dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: _version_key(path.parent.name),
        reverse=True,
    )
    candidates.extend(debian_dirs)
    initdb_on_path = shutil.which("initdb")
    if initdb_on_path:
        candidates.append(Path(initdb_on_path).resolve().parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PostgresUnavailableError(
        "PostgreSQL server binaries not found (install the Debian 'postgresql' package "
        "or set PG_BIN_DIR)"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _ServerProcessOwner:
    """Runs server commands as a non-root user when we are root."""

    def __init__(self) -> None:
        self.as_other_user = os.geteuid() == 0
        if self.as_other_user:
            try:
                self.account: pwd.struct_passwd | None = pwd.getpwnam(SERVER_USER)
            except KeyError as missing:
                raise PostgresUnavailableError(
                    f"running as root but there is no '{SERVER_USER}' system user to run "
                    "PostgreSQL as"
                ) from missing
        else:
            self.account = None

    def give(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if self.as_other_user else []
        result = subprocess.run(
            [*prefix, *command],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{Path(command[0]).name} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server and stop and delete it afterwards."""
    bin_dir = find_bin_dir()
    owner = _ServerProcessOwner()
    # mkdtemp under /tmp rather than pytest's tmp_path: the server user must be able
    # to reach the directory, and pytest's base directory is private to root.
    root = Path(tempfile.mkdtemp(prefix="tap-pipedrive-pg-"))
    data_dir = root / "data"
    socket_dir = root / "socket"
    log_file = root / "server.log"
    password = secrets.token_urlsafe(18)
    password_file = root / "password"
    try:
        socket_dir.mkdir()
        password_file.write_text(password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
        for path in (root, socket_dir, password_file):
            owner.give(path)
        owner.run(
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        port = _start(owner, bin_dir, data_dir, socket_dir, log_file)
        try:
            yield PostgresServer(
                host="127.0.0.1",
                port=port,
                user=SUPERUSER,
                password=password,
                database="postgres",
                socket_dir=socket_dir,
            )
        finally:
            owner.run(
                [str(bin_dir / "pg_ctl"), "--pgdata", str(data_dir), "--mode=fast", "-w", "stop"],
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(
    owner: _ServerProcessOwner, bin_dir: Path, data_dir: Path, socket_dir: Path, log_file: Path
) -> int:
    """Start the server on a free port, retrying if another process grabs the port first."""
    last_error = ""
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        settings = {
            **FAST_SETTINGS,
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(socket_dir),
        }
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        result = owner.run(
            [
                str(bin_dir / "pg_ctl"),
                "--pgdata",
                str(data_dir),
                "--log",
                str(log_file),
                "--options",
                options,
                "--timeout=60",
                "-w",
                "start",
            ],
            check=False,
        )
        if result.returncode == 0:
            return port
        last_error = log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(f"PostgreSQL did not start after {START_ATTEMPTS} attempts:\n{last_error}")


def create_database(server: PostgresServer, name: str) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(server: PostgresServer, name: str) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server shared by the whole test session."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailableError as unavailable:
            pytest.skip(str(unavailable))
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A fresh, empty database on the shared server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    create_database(postgres_server, name)
    try:
        yield postgres_server.with_database(name)
    finally:
        drop_database(postgres_server, name)
