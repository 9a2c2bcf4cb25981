"""The package as users get it: one wheel and sdist build per session, and a tagged git copy.

``built_dist`` runs ``python -m build`` once (the release workflow's command) and every
test that needs the wheel shares it. ``tagged_checkout`` is a git repository holding the
working tree's files with the tag ``v0.1.0``, so ``git+file://...@v0.1.0`` stands in for
the documented ``git+https://github.com/...@v0.1.0`` without the network.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE_TAG = "v0.1.0"


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path

    @property
    def version(self) -> str:
        return self.wheel.name.split("-")[1]


def build(outdir: Path) -> Dist:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"python -m build failed:\n{result.stderr[-3000:]}")
    (wheel,) = outdir.glob("*.whl")
    (sdist,) = outdir.glob("*.tar.gz")
    return Dist(wheel, sdist)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def tagged_copy(destination: Path, tag: str = RELEASE_TAG) -> Path:
    """A fresh repository with the working tree's files (committed or not), tagged."""
    files = _git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split(
        "\0"
    )
    destination.mkdir(parents=True)
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)
    _git(destination, "init", "--quiet")
    _git(destination, "add", "--all")
    _git(destination, "commit", "--quiet", "-m", "release")
    _git(destination, "tag", tag)
    return destination


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def tagged_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tagged_copy(tmp_path_factory.mktemp("checkout") / "tap-pipedrive")
