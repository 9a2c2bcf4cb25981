"""Check a built wheel the way a user would meet it: a clean venv, nothing from the checkout.

    python scripts/check_wheel.py dist/tap_pipedrive-<version>-py3-none-any.whl

Creates a new virtualenv, installs the wheel (dependencies from the package index), then
from that venv and a directory outside the repository: `tap-pipedrive --version` must
name the wheel's version, `tap-pipedrive --about` must list the settings, and a sync
of a few streams against the wheel's own `pipedrive-sandbox` must deliver exactly the
records the sandbox holds. Exits 1 with one line on any failure. Used by the release
workflow and by tests/test_release.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import venv
from collections import Counter
from pathlib import Path

# Core lists: one request per page each, so the check stays quick.
STREAMS = ("deals", "persons", "organizations")
SANDBOX_ARGS = ("--port", "0", "--seed", "1", "--scale", "0.05")
TIMEOUT = 300.0


class CheckError(Exception):
    """A failed check, reported as one line."""


def wheel_version(wheel: Path) -> str:
    # tap_pipedrive-<version>-py3-none-any.whl (PEP 427)
    return wheel.name.split("-")[1]


def run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise CheckError(f"{what} exited {result.returncode}: {tail[0]}")
    return result.stdout


def selected_catalog(catalog: dict, streams: tuple[str, ...]) -> dict:
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def check(wheel: Path, work: Path) -> str:
    venv_dir = work / "venv"
    venv.create(venv_dir, with_pip=True)
    bin_dir = venv_dir / "bin"
    # Only the venv on PATH, and nothing that would import from the checkout.
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": os.environ.get("HOME", str(work)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CACHE_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    run([str(bin_dir / "pip"), "install", "--quiet", str(wheel)], work, env, "pip install")

    version = run(["tap-pipedrive", "--version"], work, env, "tap-pipedrive --version")
    if wheel_version(wheel) not in version:
        raise CheckError(f"--version says {version.strip()!r}, the wheel is {wheel.name}")
    about = json.loads(
        run(["tap-pipedrive", "--about", "--format=json"], work, env, "tap-pipedrive --about")
    )
    if "api_token" not in about.get("settings", {}).get("properties", {}):
        raise CheckError("--about lists no api_token setting")

    sandbox = subprocess.Popen(
        ["pipedrive-sandbox", *SANDBOX_ARGS],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        url = sandbox.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise CheckError(f"pipedrive-sandbox printed {url!r} instead of its URL")
        config = work / "config.json"
        config.write_text(json.dumps({"api_url": url, "api_token": "sandbox-api-token"}))
        catalog = json.loads(
            run(
                ["tap-pipedrive", "--config", str(config), "--discover"],
                work,
                env,
                "tap-pipedrive --discover",
            )
        )
        catalog_file = work / "catalog.json"
        catalog_file.write_text(json.dumps(selected_catalog(catalog, STREAMS)))
        output = run(
            ["tap-pipedrive", "--config", str(config), "--catalog", str(catalog_file)],
            work,
            env,
            "tap-pipedrive sync",
        )
        counts_url = f"{url}/_sandbox/counts?streams={','.join(STREAMS)}"
        # The URL the sandbox printed, checked above to be http://127.0.0.1.
        with urllib.request.urlopen(counts_url, timeout=30) as response:  # noqa: S310
            expected = json.load(response)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    records = Counter(
        message["stream"]
        for message in map(json.loads, output.splitlines())
        if message["type"] == "RECORD"
    )
    if dict(records) != expected or not all(expected.values()):
        raise CheckError(f"records {dict(records)} differ from the sandbox's {expected}")
    return f"{wheel.name}: {version.strip()}; synced {dict(records)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/check_wheel.py", description=__doc__)
    parser.add_argument("wheel", type=Path)
    args = parser.parse_args(argv)
    wheel = args.wheel.resolve()
    if not wheel.is_file() or wheel.suffix != ".whl":
        print(f"error: {args.wheel} is not a wheel file", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tap-pipedrive-wheel-") as work:
        try:
            print(check(wheel, Path(work)))
        except (CheckError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
