"""The release: `python -m build` gives a wheel and an sdist that install like any package."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.support.release import Dist

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(900)


def wheel_metadata(dist: Dist):
    with zipfile.ZipFile(dist.wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(wheel.read(name).decode("utf-8")), wheel.namelist()


def test_wheel_metadata_license_urls_and_entry_points(built_dist: Dist):
    metadata, names = wheel_metadata(built_dist)
    assert metadata["Name"] == "tap-pipedrive"
    assert metadata["Version"] == built_dist.version
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "License" not in metadata  # the deprecated free-text field is gone
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.14" in classifiers
    assert "Programming Language :: Python :: 3.10" not in classifiers  # past its end of life
    assert metadata["Requires-Python"] == ">=3.11"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls["Homepage"] == "https://github.com/tap-pipedrive/tap-pipedrive"
    assert set(urls) >= {"Homepage", "Documentation", "Changelog", "Issues"}
    # The sandbox ships with the tap, data file included, with its console script.
    assert "pipedrive_sandbox/shapes.json" in names
    assert "tap_pipedrive/py.typed" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(built_dist.wheel) as wheel:
        scripts = wheel.read(entry_points).decode("utf-8")
    assert "tap-pipedrive = tap_pipedrive.tap:TapPipedrive.cli" in scripts
    assert "pipedrive-sandbox = pipedrive_sandbox.__main__:main" in scripts
    assert not any(n.startswith("tests/") for n in names)


def test_sdist_carries_what_a_rebuild_and_a_reader_need(built_dist: Dist):
    with tarfile.open(built_dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "PKG-INFO",
        "plugins/extractors/tap-pipedrive.yml",
        "pipedrive_sandbox/shapes.json",
        "docs/meltano-project.md",
    ):
        assert needed in names, needed


def test_wheel_installs_and_syncs_from_a_clean_venv(built_dist: Dist):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "check_wheel.py"), str(built_dist.wheel)],
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"tap-pipedrive v{built_dist.version}," in result.stdout
    assert "'deals': " in result.stdout
