"""Under Meltano, one inherited extractor per company: the commands docs/oauth.md shows.

The project here is a copy of this one with two inherited extractors added (the
snippet of the docs); it reuses the installed plugin environments, so nothing is
installed again.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from tap_pipedrive.token_store import default_store_path
from tests.support.meltano import REPO_ROOT, MeltanoProject
from tests.support.oauth import SecretLedger, consent, free_port, written_secrets

COMPANIES = {"tap-pipedrive--acme": "sandbox-company", "tap-pipedrive--globex": "globex"}


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


def test_inherited_extractors_log_in_and_run_each_for_their_own_company(meltano, project, sandbox):
    globex = sandbox.add_company("globex")
    ledger = SecretLedger(sandbox.client_secret)
    env = meltano.environment(
        {
            "MELTANO_PROJECT_ROOT": str(project),
            # client_id and client_secret are set once, on tap-pipedrive; both inherit them.
            "TAP_PIPEDRIVE_CLIENT_ID": sandbox.client_id,
            "TAP_PIPEDRIVE_CLIENT_SECRET": sandbox.client_secret,
            "TAP_PIPEDRIVE_OAUTH_URL": sandbox.url,
            "TAP_PIPEDRIVE_REDIRECT_URI": f"http://localhost:{free_port()}/callback",
        }
    )
    outputs: list[str] = []

    def meltano_command(*args: str, stdin: str | None = None) -> None:
        result = subprocess.run(
            [str(meltano.executable), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=project,
            timeout=600,
            check=False,
        )
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode == 0, result.stderr[-3000:]

    for extractor, company in COMPANIES.items():
        with subprocess.Popen(
            [str(meltano.executable), "invoke", f"{extractor}:login", "--no-browser"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=project,
        ) as login:
            assert login.stdout is not None
            url = login.stdout.readline().strip()
            out, err = login.communicate(consent(url, "allow", company) + "\n", timeout=300)
        outputs.extend([url, out, err])
        assert login.returncode == 0, err[-3000:]

    expected = {
        "tap-pipedrive--acme": sandbox.company.id,
        "tap-pipedrive--globex": globex.company.id,
    }
    for extractor, company_id in expected.items():
        database = project / "output" / f"{extractor}.db"
        env["TARGET_SQLITE_DATABASE"] = str(database)
        meltano_command("run", extractor, "target-sqlite")
        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT DISTINCT company_id FROM webhooks").fetchall()
        assert rows == [(company_id,)], extractor
    # Each extractor keeps its own store file, holding its own company only.
    stores = [
        default_store_path(
            sandbox.client_id,
            {"MELTANO_PROJECT_ROOT": str(project), "MELTANO_EXTRACTOR_NAME": extractor},
        )
        for extractor in COMPANIES
    ]
    assert [store.exists() for store in stores] == [True, True]
    ledger.add(*written_secrets(stores))
    ledger.assert_absent(*outputs)
