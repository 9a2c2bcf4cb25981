"""Declared dependencies, and the CI step that audits the installed ones."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
AUDIT = REPO_ROOT / ".ci" / "audit.py"


def _requirements() -> dict[str, Requirement]:
    """The tap's own requirements (no extras), as installed from pyproject.toml."""
    parsed = (Requirement(text) for text in importlib.metadata.requires("tap-pipedrive") or ())
    return {req.name: req for req in parsed if req.marker is None}


@pytest.mark.parametrize(
    ("name", "first_fixed", "last_affected"),
    [
        ("requests", "2.32.4", "2.32.3"),  # CVE-2024-47081
        ("urllib3", "2.6.0", "2.5.0"),  # CVE-2025-66471: the body cap relies on it
    ],
)
def test_vulnerable_versions_are_excluded(name, first_fixed, last_affected):
    specifier = _requirements()[name].specifier
    assert Version(first_fixed) in specifier
    assert Version(last_affected) not in specifier


def test_backoff_comes_from_the_maintained_fork_only():
    requirements = _requirements()
    assert "backoff" not in requirements
    assert "python-backoff" in requirements
    # Both install into backoff/: the old package must not be in the environment either.
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("backoff")


def _judge(tmp_path: Path, dependencies: list[dict]) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"dependencies": dependencies, "fixes": []}), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(AUDIT), "--report", str(report)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_audit_fails_on_a_known_vulnerability(tmp_path):
    result = _judge(
        tmp_path,
        [
            {
                "name": "requests",
                "version": "2.32.3",
                "vulns": [{"id": "GHSA-9hjg-9r4m-mvj7", "fix_versions": ["2.32.4"], "aliases": []}],
            },
            {"name": "idna", "version": "3.10", "vulns": []},
        ],
    )
    assert result.returncode == 1
    assert "requests 2.32.3: GHSA-9hjg-9r4m-mvj7 (fixed in 2.32.4)" in result.stdout


def test_the_audit_is_skipped_loudly_when_its_database_has_no_answer(tmp_path):
    reason = "Dependency not found on PyPI and could not be audited: idna (3.10)"
    result = _judge(tmp_path, [{"name": "idna", "version": "3.10", "skip_reason": reason}])
    assert result.returncode == 0
    assert "SECURITY AUDIT SKIPPED" in result.stdout


def test_the_audit_says_which_packages_it_could_not_check(tmp_path):
    result = _judge(
        tmp_path,
        [
            {"name": "idna", "version": "3.10", "vulns": []},
            {"name": "attrs", "version": "26.1.0", "skip_reason": "not found"},
        ],
    )
    assert result.returncode == 0
    assert "SECURITY AUDIT INCOMPLETE: 1 packages audited, 1 not: attrs" in result.stdout


def test_an_unreadable_report_is_a_loud_skip(tmp_path):
    report = tmp_path / "report.json"
    report.write_text("", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(AUDIT), "--report", str(report)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    assert "SECURITY AUDIT SKIPPED" in result.stdout


def test_ci_runs_the_audit_before_the_tests():
    steps = [line.split() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert steps.index(["make", "audit"]) < [step[:2] for step in steps].index(["make", "test"])
