"""Every command the README and docs/*.md show is run by a test.

Fenced commands (``bash`` and ``crontab`` blocks) are run verbatim, apart from the
explicit substitutions next to each run:

* docs/meltano-project.md, whole: tests/test_walkthrough.py (README and docs/oauth.md
  repeat some of its commands word for word, which that run covers);
* the CLI login, JSON-helper and several-companies commands of README.md and
  docs/oauth.md: this file;
* the rest: ELSEWHERE names the test or CI step that runs each, and why not here.

Inline commands in the prose (`meltano config set ...`, `tap-pipedrive --login ...`)
must at least parse: each runs with ``--help`` (``make -n`` for make targets) against
the pinned Meltano and the installed tap, so an old or mistyped form fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tap_pipedrive.auth.store import default_store_path
from tests.support.docs import (
    DOCUMENTS,
    CommandRunner,
    blocks,
    browser_stand_in,
    fenced_commands,
    inline_commands,
    without_comment,
)
from tests.support.meltano import clean_environment
from tests.support.oauth import consent, free_port, stored_entry
from tests.support.tap_runner import catalog_for

REPO_ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = "docs/meltano-project.md"
BIN_DIR = Path(sys.executable).parent

# Run by test_cli_login_and_json_helpers_as_documented below, in this order.
CLI_COMMANDS = (
    """cat > config.json <<'EOF'\n{"client_id": "…", "client_secret": "…"}\nEOF""",
    "tap-pipedrive --login --config config.json",
    "tap-pipedrive --login --no-browser --config config.json",
    "tap-pipedrive --login --no-browser --client-secret - --config config.json",
    'tap-pipedrive --config config.json --oauth-authorization-url --oauth-state "$STATE"',
    'tap-pipedrive --config config.json --oauth-exchange-code "$REDIRECT_URL" --oauth-state "$STATE"',
    "tap-pipedrive --config config.json --oauth-refresh",
)
# Run by test_several_companies_without_meltano_as_documented below, in this order.
COMPANY_COMMANDS = (
    "tap-pipedrive --login --config acme.json      # choose Acme on the consent page",
    "tap-pipedrive --login --config globex.json    # the same app; choose Globex",
    "tap-pipedrive --config acme.json --catalog catalog.json",
)
# Fenced commands that another test or CI runs: (the file that runs them, how).
ELSEWHERE = {
    "make demo": (
        "tests/test_demo.py",
        "runs scripts/demo.py, the recipe of `make demo` after `make install`",
    ),
    "make test": (".ci/run", "CI runs `make install` and `make test` on a clean clone"),
    "make pytest-sdk-next": (".ci/run", "CI runs it after `make test` (tests/test_ci.py)"),
    "pip install -e .": ("Makefile", "`make install` (.ci/run) runs it into .venv"),
    "pip install tap-pipedrive": (
        "tests/test_release.py",
        "scripts/check_wheel.py pip-installs the built wheel into a clean venv "
        "(the package index is offline here)",
    ),
    'pip install "git+https://github.com/tap-pipedrive/tap-pipedrive.git@v0.1.0"': (
        "tests/test_walkthrough.py",
        "Meltano pip-installs git+file://<tagged copy>@v0.1.0, the same VCS install offline",
    ),
    "tap-pipedrive --about": (
        "tests/test_release.py",
        "scripts/check_wheel.py runs it from the clean venv",
    ),
    "tap-pipedrive --config config.json --estimate": (
        "tests/test_budget.py",
        "runs it against a sandbox and compares its total with what a sync then spends",
    ),
    "python -m tests.fault_matrix": (
        "tests/test_faults.py",
        "runs every scenario of the matrix (run_scenario, run_mix) with fewer seeds; "
        "the module's main only prints the table",
    ),
    "python -m tests.fault_matrix --seeds 5": (
        "tests/test_faults.py",
        "as `python -m tests.fault_matrix`",
    ),
    "TAP_PIPEDRIVE_SWEEP_NOW=true meltano run tap-pipedrive target-postgres": (
        "tests/test_e2e_postgres.py",
        "the sweep of test_meltano_into_postgres_retires_deletes_merges_and_removed_children "
        "runs it with a --state-id-suffix per database, against PostgreSQL",
    ),
    **{
        command: (
            "tests/test_oauth_companies_meltano.py",
            "logs in and runs both inherited extractors of a copy of this project "
            "(a Meltano run is slow: one project serves the whole section)",
        )
        for command in (
            "meltano invoke tap-pipedrive--acme:login --login-timeout 300",
            "meltano invoke tap-pipedrive--globex:login --login-timeout 300",
            "meltano run tap-pipedrive--acme target-sqlite",
        )
    },
}


def documented() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for command, documents in fenced_commands().items():
        where.setdefault(without_comment(command), []).extend(documents)
    return where


def walkthrough_commands() -> set[str]:
    return {without_comment(command) for block in blocks(WALKTHROUGH) for command in block.commands}


def test_every_fenced_command_is_run_by_a_test():
    run_here = {without_comment(c) for c in (*CLI_COMMANDS, *COMPANY_COMMANDS)}
    covered = walkthrough_commands() | run_here | set(ELSEWHERE)
    untested = {command: docs for command, docs in documented().items() if command not in covered}
    assert not untested, f"documented commands no test runs: {untested}"
    stale = (run_here | set(ELSEWHERE)) - set(documented())
    assert not stale, f"tested commands no document shows any more: {stale}"


def test_commands_run_elsewhere_name_what_runs_them():
    for command, (path, _how) in ELSEWHERE.items():
        assert (REPO_ROOT / path).is_file(), (command, path)
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet -e '.[dev]'" in makefile
    for target in ("demo", "test", "pytest-sdk-next"):
        dry_run = subprocess.run(
            ["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert dry_run.returncode == 0, dry_run.stderr
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert '"scripts" / "demo.py"' in (REPO_ROOT / "tests" / "test_demo.py").read_text(
        encoding="utf-8"
    )


def test_documents_use_meltano_4_syntax():
    # `meltano config PLUGIN set ...` is Meltano 2; Meltano 4 says `meltano config set PLUGIN ...`.
    for document in DOCUMENTS:
        text = (REPO_ROOT / document).read_text(encoding="utf-8")
        assert "meltano config tap-pipedrive" not in text, document
        assert "meltano config target-postgres" not in text, document
        assert "python -m tests.sandbox" not in text, document


# --- inline commands ------------------------------------------------------------------------
INLINE = sorted(inline_commands())


@pytest.mark.parametrize("command", INLINE)
def test_inline_command_parses(command, request):
    words = shlex.split(command)
    program, args = words[0], words[1:]
    if program == "python":
        if args[0] == "-m":
            assert importlib.util.find_spec(args[1]) is not None, command
        else:
            assert (REPO_ROOT / args[0]).is_file(), command
        return
    if program == "make":
        result = subprocess.run(
            ["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
        return
    if program == "meltano":
        # The repository's project, with its plugins installed (`meltano invoke` runs one).
        result = request.getfixturevalue("meltano").run(*args, "--help", timeout=300)
    else:  # tap-pipedrive, pipedrive-sandbox: the installed console scripts
        result = subprocess.run(
            [str(BIN_DIR / program), *args, "--help"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    assert "usage" in (result.stdout + result.stderr).lower(), command


# --- the CLI login and JSON helpers ---------------------------------------------------------
def test_cli_login_and_json_helpers_as_documented(sandbox, tmp_path):
    callback_port = free_port()
    config_json = json.dumps(
        {
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            # Where the sandbox is, and a free callback port instead of 33333.
            "api_url": sandbox.url,
            "oauth_url": sandbox.url,
            "redirect_uri": f"http://localhost:{callback_port}",
        }
    )
    state = "documented-state-1234"
    env = clean_environment(
        {
            "PATH": os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")]),
            "BROWSER": browser_stand_in(tmp_path),
            "STATE": state,
        }
    )
    del env["MELTANO_PROJECT_ROOT"]

    def paste_redirect(command: str, process: subprocess.Popen[str]) -> tuple[str, str]:
        assert process.stdin is not None and process.stdout is not None
        if "--client-secret -" in command:
            # The secret comes first, on its own line; the redirect follows on the next.
            process.stdin.write(sandbox.client_secret + "\n")
            process.stdin.flush()
        url = process.stdout.readline().strip()
        assert url.startswith(f"{sandbox.url}/oauth/authorize?"), (command, url)
        return process.communicate(consent(url) + "\n", timeout=120)

    runner = CommandRunner(
        tmp_path,
        env,
        substitutions=[('{"client_id": "…", "client_secret": "…"}', config_json)],
        interact=paste_redirect,
    )
    documented_now = documented()
    for command in CLI_COMMANDS:
        assert without_comment(command) in documented_now, command
    config = tmp_path / "config.json"

    runner.run(CLI_COMMANDS[0])
    assert json.loads(config.read_text())["client_id"] == sandbox.client_id

    for login in CLI_COMMANDS[1:4]:
        if "--client-secret -" in login:
            # The secret only on stdin: the login cannot succeed without reading it there.
            without_secret = json.loads(config.read_text())
            del without_secret["client_secret"]
            config.write_text(json.dumps(without_secret))
        before = len(sandbox.oauth.refresh_tokens)
        result = runner.run(login)
        saved = json.loads(config.read_text())
        assert saved["refresh_token"] in sandbox.oauth.refresh_tokens, result.stderr
        assert len(sandbox.oauth.refresh_tokens) == before + 1
        assert saved["refresh_token"] not in result.stdout + result.stderr
        assert saved["client_secret"] == sandbox.client_secret, login
        assert sandbox.client_secret not in result.stdout + result.stderr, login

    authorization = json.loads(runner.run(CLI_COMMANDS[4]).stdout)
    assert authorization["state"] == state
    runner.env["REDIRECT_URL"] = consent(authorization["authorization_url"])
    exchanged = json.loads(runner.run(CLI_COMMANDS[5]).stdout)
    assert exchanged["config_file"] == str(config)
    assert "access_token" not in exchanged
    refreshed = json.loads(runner.run(CLI_COMMANDS[6]).stdout)
    assert refreshed["refreshed"] is True


def test_several_companies_without_meltano_as_documented(sandbox, tmp_path):
    # Two companies besides the sandbox's default one, which the consent page offers
    # first: a login that does not pick its company ends up with the wrong one.
    companies = {
        "acme.json": sandbox.add_company("acme"),
        "globex.json": sandbox.add_company("globex"),
    }
    callback_port = free_port()
    app = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        # Where the sandbox's token endpoint is, and a free callback port instead of 33333.
        # No api_url: each config reads the API of the company its login chose.
        "oauth_url": sandbox.url,
        "redirect_uri": f"http://localhost:{callback_port}",
    }
    for name in companies:
        (tmp_path / name).write_text(json.dumps(app))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog_for(sandbox, {"webhooks"})))
    env = clean_environment({"PATH": os.pathsep.join([str(BIN_DIR), os.environ.get("PATH", "")])})
    del env["MELTANO_PROJECT_ROOT"]
    runner = CommandRunner(tmp_path, env)
    documented_now = documented()
    for command in COMPANY_COMMANDS:
        assert without_comment(command) in documented_now, command

    for login, (name, company) in zip(COMPANY_COMMANDS[:2], companies.items(), strict=True):
        # The user picks the company on the consent page, as each comment says.
        runner.env["BROWSER"] = browser_stand_in(tmp_path, company.company.domain)
        runner.run(login)
        assert json.loads((tmp_path / name).read_text())["api_domain"] == company.url, login
    # One store for the app (keyed by client id), one entry per company.
    store = default_store_path(sandbox.client_id)
    for company in companies.values():
        stored_entry(store, company.url)

    def synced_companies(command: str) -> list[int]:
        messages = [json.loads(line) for line in runner.run(command).stdout.splitlines()]
        return [
            message["record"]["company_id"]
            for message in messages
            if message["type"] == "RECORD" and message["stream"] == "webhooks"
        ]

    acme, globex = companies.values()
    assert synced_companies(COMPANY_COMMANDS[2]) == [acme.company.id] * 3
    # The same for the other file: Globex's records, with Acme's tokens untouched.
    other = COMPANY_COMMANDS[2].replace("acme.json", "globex.json")
    assert synced_companies(other) == [globex.company.id] * 3
    assert sandbox.company.id not in (acme.company.id, globex.company.id)


def test_help_says_what_the_tap_does_and_its_examples_parse(tmp_path):
    from tap_pipedrive.tap import CLI_HELP

    for name in ("config.json", "catalog.json", "state.json"):
        (tmp_path / name).write_text("{}")

    result = subprocess.run(
        [str(BIN_DIR / "tap-pipedrive"), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Execute the Singer tap." not in result.stdout
    assert "Read Pipedrive CRM data and write it as Singer messages" in result.stdout
    examples = [line for line in CLI_HELP.splitlines() if line.startswith("tap-pipedrive ")]
    assert len(examples) == 5
    for example in examples:
        args = shlex.split(without_comment(example).split(" > ")[0])[1:]
        parsed = subprocess.run(
            [str(BIN_DIR / "tap-pipedrive"), *args, "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert parsed.returncode == 0, (example, parsed.stderr)
        assert "Usage:" in parsed.stdout, example
