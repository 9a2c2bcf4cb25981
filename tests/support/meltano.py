"""Run the project's Meltano (installed in its own virtualenv) from tests.

Meltano lives in ``.venv-meltano`` so its dependencies never clash with the tap's;
``MELTANO_BIN`` overrides the location. Each test session gets a private Meltano
system database, so runs made by tests never touch a developer's state, and the
environment handed to Meltano drops any ``TAP_PIPEDRIVE_*`` / ``TARGET_*`` values
inherited from the shell so that a real account can never be reached by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_API_TOKEN = "sandbox-api-token"
INHERITED_PREFIXES_TO_DROP = ("TAP_PIPEDRIVE_", "TARGET_", "MELTANO_")


class MeltanoUnavailableError(RuntimeError):
    """Meltano is not installed where the tests look for it."""


def find_meltano() -> Path:
    """Return the Meltano executable: ``MELTANO_BIN``, the project venv, or PATH."""
    configured = os.environ.get("MELTANO_BIN")
    candidates = [Path(configured)] if configured else []
    candidates.append(REPO_ROOT / ".venv-meltano" / "bin" / "meltano")
    on_path = shutil.which("meltano")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise MeltanoUnavailableError(
        "Meltano not found: run `make install` (or set MELTANO_BIN to a meltano executable)"
    )


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment minus plugin settings, plus Meltano's quiet defaults."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(INHERITED_PREFIXES_TO_DROP)
    }
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["MELTANO_PROJECT_ROOT"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def sandbox_tap_environment(api_url: str) -> dict[str, str]:
    """Settings that point the tap, and any OAuth call it might make, at the sandbox."""
    return {
        "TAP_PIPEDRIVE_API_URL": api_url,
        "TAP_PIPEDRIVE_API_TOKEN": SANDBOX_API_TOKEN,
        "TAP_PIPEDRIVE_OAUTH_URL": api_url,
        # The sandbox counts mail messages, which the tap reads only when asked to.
        "TAP_PIPEDRIVE_INCLUDE_MAIL_MESSAGES": "true",
    }


def count_differences(
    loaded: Mapping[str, int], expected: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """(loaded, expected) rows for every stream whose count is off; absent means 0."""
    return {
        stream: (loaded.get(stream, 0), expected.get(stream, 0))
        for stream in sorted({*loaded, *expected})
        if loaded.get(stream, 0) != expected.get(stream, 0)
    }


def configured_plugins() -> list[tuple[str, str]]:
    """(plugin type, name) for every plugin declared in meltano.yml."""
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text(encoding="utf-8"))
    return [
        (plugin_type, plugin["name"])
        for plugin_type, plugins in project.get("plugins", {}).items()
        for plugin in plugins or []
    ]


@dataclass(frozen=True)
class MeltanoProject:
    executable: Path
    system_database: Path

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return clean_environment(
            {"MELTANO_DATABASE_URI": f"sqlite:///{self.system_database}", **(extra or {})}
        )

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``meltano ARGS`` in the project root; never raises on a non-zero exit."""
        return subprocess.run(
            [str(self.executable), *args],
            cwd=REPO_ROOT,
            env=self.environment(env),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ensure_installed(self) -> None:
        """Install plugins unless every declared plugin already has its virtualenv."""
        missing = [
            name
            for plugin_type, name in configured_plugins()
            if not (REPO_ROOT / ".meltano" / plugin_type / name / "venv").is_dir()
        ]
        if not missing:
            return
        result = self.run("install", timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"meltano install failed:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> MeltanoProject:
    """The project's Meltano with all plugins installed and a private system database."""
    try:
        executable = find_meltano()
    except MeltanoUnavailableError as unavailable:
        pytest.skip(str(unavailable))
    project = MeltanoProject(
        executable=executable,
        system_database=tmp_path_factory.mktemp("meltano") / "meltano.db",
    )
    project.ensure_installed()
    return project
