#!/usr/bin/env python3
"""Say loudly when a pytest run skipped the spec-conformance tests.

Those tests read Pipedrive's official OpenAPI specs from ../shared/pipedrive-openapi,
which the repository does not carry; without them they skip, and a green run would
otherwise hide that the tap's schemas were never compared with the specs. Given the
output of a pytest run (with ``-ra``, the project's default), this prints a banner and,
on GitHub Actions, a ``::warning::`` annotation and a line in the job summary. It
always exits 0: a missing spec is a warning, not a failure.

    python3 .ci/spec_skips.py pytest.log
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The reason tests/support/specs.py gives (SPECS_MISSING), as pytest's -ra summary shows it.
SKIP_LINE = re.compile(r"^SKIPPED \[\d+\] (?P<module>\S+?\.py)(?::\d+)?: OpenAPI specs not found")


def skipped_modules(log: str) -> list[str]:
    """The test modules the run skipped for want of the specs, in the order pytest listed them."""
    found = [match["module"] for match in map(SKIP_LINE.match, log.splitlines()) if match]
    return list(dict.fromkeys(found))


def report(modules: list[str], summary_path: str | None) -> str:
    """The warning for ``modules``; also appended to the GitHub job summary when there is one."""
    message = (
        f"Spec-conformance tests SKIPPED ({', '.join(modules)}): the OpenAPI specs were not "
        "found in ../shared/pipedrive-openapi, so the schemas were not checked against them."
    )
    if summary_path:
        with Path(summary_path).open("a", encoding="utf-8") as summary:
            summary.write(f"### :warning: Spec-conformance tests skipped\n\n{message}\n")
    return message


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    log_path = Path(argv[0])
    if not log_path.is_file():
        print(f"::warning title=No pytest output::{log_path} not found; spec skips unknown")
        return 0
    modules = skipped_modules(log_path.read_text(encoding="utf-8", errors="replace"))
    if not modules:
        print("No spec-conformance test was skipped for want of the OpenAPI specs.")
        return 0
    message = report(modules, os.environ.get("GITHUB_STEP_SUMMARY"))
    print("!" * 78)
    print(f"::warning title=Spec-conformance tests skipped::{message}")
    print("!" * 78)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
