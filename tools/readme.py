"""Regenerate the README's generated sections so they cannot drift from the code.

- ``settings``: the settings table of ``tap-pipedrive --about --format=markdown``;
- ``streams``: the stream table of ``tools/stream_table.py``.

Each section sits between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers.
``python tools/readme.py`` rewrites them; ``--check`` exits 1 when README.md is stale.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

from singer_sdk.about import AboutFormatter

from tap_pipedrive.tap import TapPipedrive

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def settings_table() -> str:
    """The '## Settings' part of the SDK's markdown --about output."""
    about = AboutFormatter.get_formatter("markdown").format_about(TapPipedrive._get_about_info())
    match = re.search(r"^## Settings\n(.*?)(?=^## |\Z)", about, flags=re.M | re.S)
    if match is None:
        msg = "--about --format=markdown has no Settings section"
        raise RuntimeError(msg)
    return match.group(1).strip() + "\n"


def streams_table() -> str:
    path = ROOT / "tools" / "stream_table.py"
    spec = importlib.util.spec_from_file_location("stream_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return str(module.render())


SECTIONS = {"settings": settings_table, "streams": streams_table}


def render(text: str) -> str:
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", flags=re.S)
        if not pattern.search(text):
            msg = f"README.md lacks the markers of the {name!r} section"
            raise RuntimeError(msg)
        body = build()
        text = pattern.sub(lambda m, body=body: f"{m.group(1)}{body}{m.group(2)}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("README.md is stale: run `python tools/readme.py`", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
