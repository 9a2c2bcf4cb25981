"""docs/meltano-project.md, followed command by command in an empty folder.

Every fenced command of the walkthrough runs, in order, with the pinned Meltano, against
the sandbox (started by the documented `meltano invoke tap-pipedrive:sandbox`) and a
private PostgreSQL; the rows that land must be the sandbox's. What cannot run offline is
mapped to a local equivalent in SUBSTITUTIONS / NOT_RUN below, and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.support.docs import Block, CommandRunner, blocks, browser_stand_in
from tests.support.meltano import MeltanoUnavailableError, clean_environment, find_meltano
from tests.support.oauth import consent, free_port
from tests.support.postgres import PostgresServer
from tests.support.release import RELEASE_TAG, Dist

REPO_ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = "docs/meltano-project.md"
SEPARATE_PROJECT = "separate project"
DEFINITION_URL = (
    "https://raw.githubusercontent.com/tap-pipedrive/tap-pipedrive/v0.1.0/"
    "plugins/extractors/tap-pipedrive.yml"
)
RELEASE_PIP_URL = "git+https://github.com/tap-pipedrive/tap-pipedrive.git@v0.1.0"
MELTANO_INSTALL = 'pip install "meltano>=4.4,<5"'
# Documented commands this test does not run, and what it checks instead.
NOT_RUN = {
    MELTANO_INSTALL: "Meltano comes from requirements/meltano.txt; its version must match",
}
SCHEMA = "pipedrive"

pytestmark = pytest.mark.timeout(900)


def walkthrough_blocks() -> list[Block]:
    return [block for block in blocks(WALKTHROUGH) if block.commands]


def loader_definition(path: Path) -> Path:
    """The repo's target-postgres block as a plugin definition (Meltano Hub is offline)."""
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres"]
    path.write_text(yaml.safe_dump(loader, sort_keys=False), encoding="utf-8")
    return path


def pinned_meltano_version(meltano: Path) -> str:
    output = subprocess.run(
        [str(meltano), "--version"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return output.split()[-1]


def answer_consent(command: str, process: subprocess.Popen[str]) -> tuple[str, str]:
    """A user on a server: open the printed URL elsewhere, allow, paste the redirect."""
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert "/oauth/authorize?" in url, f"{command} printed {url!r} instead of the consent URL"
    return process.communicate(consent(url) + "\n", timeout=300)


def expected_counts(sandbox_url: str, streams: list[str]) -> dict[str, int]:
    with urllib.request.urlopen(
        f"{sandbox_url}/_sandbox/counts?streams={','.join(streams)}", timeout=30
    ) as response:
        return dict(json.load(response))


def loaded_counts(server: PostgresServer) -> dict[str, int]:
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (SCHEMA,),
            )
        ]
        return {
            table: int(connection.execute(f'SELECT count(*) FROM {SCHEMA}."{table}"').fetchone()[0])  # type: ignore[index]
            for table in tables
        }


def test_walkthrough_from_meltano_init_to_a_scheduled_job(
    postgres_database: PostgresServer, built_dist: Dist, tagged_checkout: Path, tmp_path
):
    try:
        meltano = find_meltano()
    except MeltanoUnavailableError as unavailable:
        pytest.skip(str(unavailable))
    assert pinned_meltano_version(meltano) in SpecifierSet(">=4.4,<5")

    # The tag's definition, installing the tag from the local repository.
    definition = tagged_checkout / "plugins" / "extractors" / "tap-pipedrive.yml"
    text = definition.read_text(encoding="utf-8")
    assert RELEASE_PIP_URL in text
    local_definition = tmp_path / "tap-pipedrive.yml"
    local_definition.write_text(
        text.replace(RELEASE_PIP_URL, f"git+file://{tagged_checkout}@{RELEASE_TAG}"),
        encoding="utf-8",
    )
    port, callback_port = free_port(), free_port()
    pg = postgres_database
    substitutions = [
        (DEFINITION_URL, str(local_definition)),
        ("--variant meltanolabs", f"--from-ref {loader_definition(tmp_path / 'loader.yml')}"),
        ("/path/to/tap-pipedrive", str(tagged_checkout)),
        ("/path/to/tap_pipedrive-0.1.0-py3-none-any.whl", str(built_dist.wheel)),
        ("8765", str(port)),
        ("<your-api-token>", "sandbox-api-token"),
        ("<client-id>", "sandbox-client-id"),
        ("<client-secret>", "sandbox-client-secret"),
        (
            "-h localhost -p 5432 -U pipedrive analytics",
            f"-h {pg.host} -p {pg.port} -U {pg.user} {pg.database}",
        ),
        ("host localhost", f"host {pg.host}"),
        ("port 5432", f"port {pg.port}"),
        ("user pipedrive", f"user {pg.user}"),
        ("<postgres-password>", pg.password),
        ("database analytics", f"database {pg.database}"),
        ("cd /srv/my-pipedrive", "cd ."),
        ("/var/log/pipedrive.log", str(tmp_path / "cron.log")),
    ]
    env = clean_environment(
        {
            "PATH": os.pathsep.join([str(meltano.parent), os.environ.get("PATH", "")]),
            # The user's browser: presses "Allow" on the sandbox's consent page.
            "BROWSER": browser_stand_in(tmp_path),
            # A free callback port rather than 33333, so parallel runs never collide.
            "TAP_PIPEDRIVE_REDIRECT_URI": f"http://localhost:{callback_port}",
            # psql's password prompt, answered.
            "PGPASSWORD": pg.password,
        }
    )
    del env["MELTANO_PROJECT_ROOT"]
    work = tmp_path / "work"
    work.mkdir()
    runner = CommandRunner(work, env, substitutions, interact=answer_consent)
    sandbox_url = f"http://127.0.0.1:{port}"
    selected: list[str] = []
    expected: dict[str, int] = {}
    runs = 0
    separate_runner: list[CommandRunner] = []
    try:
        for block in walkthrough_blocks():
            if block.tag == SEPARATE_PROJECT:
                other = tmp_path / "other"
                other.mkdir()
                separate = CommandRunner(other, env, substitutions)
                separate_runner.append(separate)
                separate.run_all(["meltano init my-pipedrive", "cd my-pipedrive"])
                separate.run_all(block.commands)
                version = separate.run("meltano invoke tap-pipedrive --version").stdout
                assert f"v{built_dist.version}," in version, version
                continue
            for command in block.commands:
                if command in NOT_RUN:
                    continue
                result = runner.run(command)
                if command == "meltano invoke tap-pipedrive --version":
                    # The version comes from the git tag the pip_url pins.
                    assert "tap-pipedrive v0.1.0," in result.stdout, result.stdout
                elif command.startswith("meltano invoke tap-pipedrive:sandbox"):
                    runner.wait_for_port(port)
                elif command.startswith("meltano config set tap-pipedrive _select"):
                    patterns = json.loads(command.split(" _select ", 1)[1].strip("'"))
                    selected = [pattern.removesuffix(".*") for pattern in patterns]
                elif command == "meltano select tap-pipedrive --list":
                    assert "deals" in result.stdout, result.stdout
                elif command.startswith("psql "):
                    assert int(result.stdout.split()[2]) > 0, result.stdout
                elif command.startswith("meltano invoke tap-pipedrive:login"):
                    assert "oauth" in result.stdout + result.stderr
                elif "meltano run " in command or "meltano schedule run " in command:
                    # Every run, the first and the scheduled ones (upserts), leaves exactly
                    # the sandbox's rows of the selected streams.
                    runs += 1
                    expected = expected or expected_counts(sandbox_url, selected)
                    assert all(expected.values()), expected
                    assert loaded_counts(pg) == expected
    finally:
        runner.stop()
        print(runner.timings())
        if separate_runner:
            print(separate_runner[0].timings())
    assert runs == 3  # meltano run, meltano schedule run, the cron line
    assert len(expected) == len(selected) == 10
    project = work / "my-pipedrive"
    # The logins left their tokens in the project's token store, private to the user.
    store = project / ".meltano" / "tap-pipedrive" / "oauth"
    (token_file,) = [p for p in store.iterdir() if p.suffix == ".json"]
    assert token_file.stat().st_mode & 0o077 == 0
    assert (tmp_path / "cron.log").read_text(encoding="utf-8")
    # Step 9 pointed the tap back at Pipedrive.
    config = yaml.safe_load((project / "meltano.yml").read_text(encoding="utf-8"))
    (tap,) = config["plugins"]["extractors"]
    assert "api_url" not in tap.get("config", {})
    assert "oauth_url" not in tap.get("config", {})
