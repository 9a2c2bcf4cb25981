"""Rewrite the Meltano plugin definition's extractor block from meltano.yml.

``plugins/extractors/tap-pipedrive.yml`` is what another Meltano project installs with
``meltano add --plugin-type extractor tap-pipedrive --from-ref <file>``. Its namespace,
executable, capabilities, settings, settings groups and commands must be those of this
repository's own ``meltano.yml``; its name, label, links and the pinned ``pip_url`` are
its own. ``python tools/plugin_definition.py`` copies the shared keys over;
``--check`` exits 1 when the file is stale (tests/test_docs.py checks it too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "meltano.yml"
DEFINITION = ROOT / "plugins" / "extractors" / "tap-pipedrive.yml"
SHARED_KEYS = (
    "namespace",
    "executable",
    "capabilities",
    "commands",
    "settings_group_validation",
    "settings",
)


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def rendered() -> str:
    """The definition file as it should read."""
    project = yaml.safe_load(PROJECT.read_text(encoding="utf-8"))
    extractor = next(
        plugin for plugin in project["plugins"]["extractors"] if plugin["name"] == "tap-pipedrive"
    )
    current_text = DEFINITION.read_text(encoding="utf-8")
    current = yaml.safe_load(current_text)
    merged = {key: value for key, value in current.items() if key not in SHARED_KEYS}
    # The definition's own keys first, then the shared ones in meltano.yml's order.
    order = [key for key in current if key not in SHARED_KEYS]
    for key in SHARED_KEYS:
        if key in extractor:
            merged[key] = extractor[key]
    body = {key: merged[key] for key in order}
    body.update({key: merged[key] for key in SHARED_KEYS if key in merged})
    dumped = yaml.safe_dump(body, sort_keys=False, width=100, allow_unicode=True)
    return _header(current_text) + dumped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = rendered()
    if args.check:
        stale = DEFINITION.read_text(encoding="utf-8") != text
        if stale:
            print(f"{DEFINITION.relative_to(ROOT)} is stale: run python tools/plugin_definition.py")
        return 1 if stale else 0
    DEFINITION.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
