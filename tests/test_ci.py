"""CI: the Python versions it tests, the next singer-sdk, and the warning about spec skips."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.support.specs import SPECS_MISSING

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
SPEC_SKIPS = REPO_ROOT / ".ci" / "spec_skips.py"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def classifier_versions() -> list[str]:
    prefix = "Programming Language :: Python :: "
    found = [c.removeprefix(prefix) for c in PYPROJECT["project"]["classifiers"]]
    return [v for v in found if re.fullmatch(r"3\.\d+", v)]


def as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_the_workflow_tests_every_python_the_package_declares():
    versions = classifier_versions()
    jobs = workflow()["jobs"]
    assert jobs["tests"]["strategy"]["matrix"]["python-version"] == versions
    # Types: the oldest and the newest.
    assert jobs["types"]["strategy"]["matrix"]["python-version"] == [versions[0], versions[-1]]
    oldest = versions[0]
    assert PYPROJECT["project"]["requires-python"] == f">={oldest}"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + oldest.replace(".", "")
    assert PYPROJECT["tool"]["mypy"]["python_version"] == oldest


def test_no_python_past_its_end_of_life_and_the_newest_included():
    versions = [as_tuple(v) for v in classifier_versions()]
    # 3.10 reached its end of life in October 2026.
    assert min(versions) >= (3, 11)
    assert max(versions) >= (3, 14)
    assert versions == sorted(versions)
    assert versions == [(3, minor) for minor in range(versions[0][1], versions[-1][1] + 1)]


def _steps(job: str) -> list[dict]:
    return workflow()["jobs"][job]["steps"]


def test_every_test_job_reports_skipped_spec_tests_even_after_a_failure():
    for job in ("tests", "tests-sdk-next"):
        steps = _steps(job)
        runs = [step.get("run", "") for step in steps]
        (pytest_index,) = [i for i, run in enumerate(runs) if "tee pytest.log" in run]
        # Without pipefail, tee's success would hide a failed pytest.
        assert steps[pytest_index]["shell"] == "bash", job
        (report_index,) = [i for i, run in enumerate(runs) if ".ci/spec_skips.py" in run]
        assert report_index > pytest_index, job
        assert runs[report_index].split()[-1] == "pytest.log", job
        assert steps[report_index]["if"] == "always()", job


def test_the_next_sdk_runs_in_ci():
    ci_run = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = [line.split()[:2] for line in ci_run.splitlines() if line.strip()]
    assert steps.index(["make", "test"]) < steps.index(["make", "pytest-sdk-next"])
    assert ".ci/spec_skips.py" in ci_run
    assert any("make pytest-sdk-next" in step.get("run", "") for step in _steps("tests-sdk-next"))


def test_the_next_sdk_is_a_0_55_pre_release_ahead_of_the_pin():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    (next_version,) = re.findall(r"^SDK_NEXT := (\S+)$", makefile, flags=re.MULTILINE)
    assert re.fullmatch(r"0\.55\.0(a|b|rc)\d+", next_version), next_version
    (pin,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("singer-sdk")]
    assert pin == "singer-sdk[msgspec]~=0.54.9"
    dry_run = subprocess.run(
        ["make", "--dry-run", "--always-make", "pytest-sdk-next"],  # the install recipes too
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert f"'singer-sdk[msgspec]=={next_version}'" in dry_run.stdout
    assert "-m 'not end_to_end'" in dry_run.stdout


def _report(tmp_path: Path, log: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log_path = tmp_path / "pytest.log"
    log_path.write_text(log, encoding="utf-8")
    summary = tmp_path / "summary.md"
    result = subprocess.run(
        [sys.executable, str(SPEC_SKIPS), str(log_path)],
        capture_output=True,
        text=True,
        env={"GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    return result, summary.read_text(encoding="utf-8") if summary.exists() else ""


def _pytest_summary_of_a_spec_skip(tmp_path: Path) -> str:
    """What pytest -ra prints for a module skipped as the spec tests skip, for real."""
    module = tmp_path / "tests" / "test_spec_conformance.py"
    module.parent.mkdir()
    module.write_text(
        f"import pytest\n\npytest.skip({SPECS_MISSING!r}, allow_module_level=True)\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "1 skipped" in result.stdout, result.stdout
    return result.stdout


def test_a_spec_skip_becomes_a_warning_and_a_job_summary_line(tmp_path):
    log = _pytest_summary_of_a_spec_skip(tmp_path)
    result, summary = _report(tmp_path, log)
    assert result.returncode == 0
    (warning,) = [line for line in result.stdout.splitlines() if line.startswith("::warning")]
    assert warning.startswith("::warning title=Spec-conformance tests skipped::")
    assert "tests/test_spec_conformance.py" in warning
    assert "../shared/pipedrive-openapi" in warning
    assert "Spec-conformance tests skipped" in summary
    assert "tests/test_spec_conformance.py" in summary


def test_no_warning_when_the_spec_tests_ran(tmp_path):
    log = "tests/test_spec_conformance.py ....\nSKIPPED [1] tests/test_x.py:3: other reason\n"
    result, summary = _report(tmp_path, log)
    assert result.returncode == 0
    assert "::warning" not in result.stdout
    assert summary == ""


def test_a_missing_log_is_a_warning_not_silence(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SPEC_SKIPS), str(tmp_path / "absent.log")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("::warning")


def test_end_to_end_tests_are_marked_from_the_fixtures_they_use():
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"),
            *("-m", "end_to_end", "tests/test_loaders.py", "tests/test_ci.py"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    collected = [line.split("::") for line in result.stdout.splitlines() if "::" in line]
    # Every loader test drives Meltano (the `meltano` fixture); none of this module does.
    loader_tests = re.findall(
        r"^def (test_\w+)", (REPO_ROOT / "tests" / "test_loaders.py").read_text(), re.M
    )
    assert sorted(name for _, name in collected) == sorted(loader_tests)
    assert {module for module, _ in collected} == {"tests/test_loaders.py"}
