"""Under Meltano, one inherited extractor per company, as README.md and docs/oauth.md show.

The project here is a copy of this one with two inherited extractors added (the
snippet of the docs); it reuses the installed plugin environments, so nothing is
installed again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import yaml

from tap_pipedrive.auth.store import default_store_path
from tests.support.docs import CommandRunner, browser_stand_in, fenced_commands, without_comment
from tests.support.meltano import REPO_ROOT, MeltanoProject
from tests.support.oauth import free_port, stored_entry, written_secrets
from tests.support.secrets import SecretLedger

# The commands README.md and docs/oauth.md show, run here as written.
DOCUMENTED = (
    "meltano invoke tap-pipedrive--acme:login --login-timeout 300      # choose Acme",
    "meltano invoke tap-pipedrive--globex:login --login-timeout 300    # choose Globex",
    "meltano run tap-pipedrive--acme target-sqlite",
)
# Extractor -> the company its login picks on the consent page.
COMPANIES = {"tap-pipedrive--acme": "acme", "tap-pipedrive--globex": "globex"}


@pytest.fixture
def project(meltano: MeltanoProject, tmp_path: Path) -> Path:
    """This Meltano project plus one inherited extractor per company."""
    root = tmp_path / "project"
    root.mkdir()
    definition = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    definition["plugins"]["extractors"] += [
        {"name": name, "inherit_from": "tap-pipedrive", "select": ["webhooks.*"]}
        for name in COMPANIES
    ]
    (root / "meltano.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    (root / ".meltano").mkdir()
    (root / "output").mkdir()
    for kind in ("extractors", "loaders"):
        (root / ".meltano" / kind).symlink_to(REPO_ROOT / ".meltano" / kind)
    return root


def test_inherited_extractors_log_in_and_run_each_for_their_own_company(
    meltano, project, sandbox, tmp_path
):
    # Two companies besides the sandbox's default one, which the consent page offers
    # first: a login that does not pick its company ends up with the wrong one.
    servers = {extractor: sandbox.add_company(domain) for extractor, domain in COMPANIES.items()}
    shown = fenced_commands()
    for command in DOCUMENTED:
        assert shown.get(command) == ["README.md", "docs/oauth.md"], command
    ledger = SecretLedger(sandbox.client_secret)
    env = meltano.environment(
        {
            "MELTANO_PROJECT_ROOT": str(project),
            "PATH": os.pathsep.join([str(meltano.executable.parent), os.environ["PATH"]]),
            # client_id and client_secret are set once, on tap-pipedrive; both inherit them.
            "TAP_PIPEDRIVE_CLIENT_ID": sandbox.client_id,
            "TAP_PIPEDRIVE_CLIENT_SECRET": sandbox.client_secret,
            "TAP_PIPEDRIVE_OAUTH_URL": sandbox.url,
            "TAP_PIPEDRIVE_REDIRECT_URI": f"http://localhost:{free_port()}/callback",
        }
    )
    runner = CommandRunner(project, env)

    # Before any login the tap stops with one line naming the login that works for this
    # extractor: the documented one, run next.
    before_login = runner.run("meltano invoke tap-pipedrive--acme --discover", check=False)
    assert before_login.returncode != 0
    assert f"`{without_comment(DOCUMENTED[0])}`" in before_login.stderr, before_login.stderr[-2000:]

    for login, (extractor, domain) in zip(DOCUMENTED[:2], COMPANIES.items(), strict=True):
        # The user picks the company on the consent page, as each comment says.
        runner.env["BROWSER"] = browser_stand_in(tmp_path, domain)
        assert f"{extractor}:login" in login
        runner.run(login)

    # The documented run for Acme, then the same for Globex.
    runs = {
        "tap-pipedrive--acme": DOCUMENTED[2],
        "tap-pipedrive--globex": DOCUMENTED[2].replace("--acme", "--globex"),
    }
    for extractor, command in runs.items():
        database = project / "output" / f"{extractor}.db"
        runner.env["TARGET_SQLITE_DATABASE"] = str(database)
        runner.run(command)
        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT DISTINCT company_id FROM webhooks").fetchall()
        assert rows == [(servers[extractor].company.id,)], extractor
    assert sandbox.company.id not in {server.company.id for server in servers.values()}
    # Each extractor keeps its own store file, holding its own company only.
    stores = {
        extractor: default_store_path(
            sandbox.client_id,
            {"MELTANO_PROJECT_ROOT": str(project), "MELTANO_EXTRACTOR_NAME": extractor},
        )
        for extractor in COMPANIES
    }
    for extractor, store in stores.items():
        assert stored_entry(store)["api_domain"] == servers[extractor].url, extractor
    ledger.add(*written_secrets(stores.values()))
    ledger.assert_absent(*(text for r in runner.results for text in (r.stdout, r.stderr)))
