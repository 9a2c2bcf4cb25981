"""Every command the README and docs/*.md show is run by a test.

Fenced commands (``bash`` and ``crontab`` blocks) are run verbatim, apart from the
explicit substitutions next to each run:

* docs/meltano-project.md, whole: tests/test_walkthrough.py (README and docs/oauth.md
  repeat some of its commands word for word, which that run covers);
* the CLI login and JSON-helper commands of README.md and docs/oauth.md: this file;
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
from tests.support.oauth import consent, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = "docs/meltano-project.md"
BIN_DIR = Path(sys.executable).parent

# Run by test_cli_login_and_json_helpers_as_documented below, in this order.
CLI_COMMANDS = (
    """cat > config.json <<'EOF'\n{"client_id": "…", "client_secret": "…"}\nEOF""",
    "tap-pipedrive --login --config config.json",
    "tap-pipedrive --login --no-browser --config config.json",
    'tap-pipedrive --config config.json --oauth-authorization-url --oauth-state "$STATE"',
    'tap-pipedrive --config config.json --oauth-exchange-code "$REDIRECT_URL" --oauth-state "$STATE"',
    "tap-pipedrive --config config.json --oauth-refresh",
)
# Fenced commands that another test or CI runs: (the file that runs them, how).
ELSEWHERE = {
    "make demo": (
        "tests/test_demo.py",
        "runs scripts/demo.py, the recipe of `make demo` after `make install`",
    ),
    "make test": (".ci/run", "CI runs `make install` and `make test` on a clean clone"),
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
}


def documented() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for command, documents in fenced_commands().items():
        where.setdefault(without_comment(command), []).extend(documents)
    return where


def walkthrough_commands() -> set[str]:
    return {without_comment(command) for block in blocks(WALKTHROUGH) for command in block.commands}


def test_every_fenced_command_is_run_by_a_test():
    covered = walkthrough_commands() | {without_comment(c) for c in CLI_COMMANDS} | set(ELSEWHERE)
    untested = {command: docs for command, docs in documented().items() if command not in covered}
    assert not untested, f"documented commands no test runs: {untested}"
    stale = ({without_comment(c) for c in CLI_COMMANDS} | set(ELSEWHERE)) - set(documented())
    assert not stale, f"tested commands no document shows any more: {stale}"


def test_commands_run_elsewhere_name_what_runs_them():
    for command, (path, _how) in ELSEWHERE.items():
        assert (REPO_ROOT / path).is_file(), (command, path)
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet -e '.[dev]'" in makefile
    for target in ("demo", "test"):
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
        assert process.stdout is not None
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

    for login in CLI_COMMANDS[1:3]:
        before = len(sandbox.oauth.refresh_tokens)
        result = runner.run(login)
        saved = json.loads(config.read_text())
        assert saved["refresh_token"] in sandbox.oauth.refresh_tokens, result.stderr
        assert len(sandbox.oauth.refresh_tokens) == before + 1
        assert saved["refresh_token"] not in result.stdout + result.stderr

    authorization = json.loads(runner.run(CLI_COMMANDS[3]).stdout)
    assert authorization["state"] == state
    runner.env["REDIRECT_URL"] = consent(authorization["authorization_url"])
    exchanged = json.loads(runner.run(CLI_COMMANDS[4]).stdout)
    assert exchanged["config_file"] == str(config)
    assert "access_token" not in exchanged
    refreshed = json.loads(runner.run(CLI_COMMANDS[5]).stdout)
    assert refreshed["refreshed"] is True


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
