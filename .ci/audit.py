#!/usr/bin/env python3
"""Audit the packages installed in .venv for known vulnerabilities with pip-audit.

A known vulnerability fails the run. When the vulnerability database cannot answer (no
network, or an index that knows none of the installed versions), the audit is skipped and
a banner says so: a quiet pass would claim an audit that never happened.

pip-audit lives in a venv of its own (.venv-audit), so neither it nor its dependencies
become part of what is audited.

    python3 .ci/audit.py                  # install pip-audit if needed, audit .venv
    python3 .ci/audit.py --report FILE    # only judge a pip-audit JSON report
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUDIT_VENV = ROOT / ".venv-audit"
PIP_AUDIT = "pip-audit>=2.7,<3"


def banner(*lines: str) -> None:
    print("!" * 78)
    for line in lines:
        print(f"!! {line}")
    print("!" * 78, flush=True)


def skipped(why: str) -> int:
    banner("SECURITY AUDIT SKIPPED: the installed packages were NOT checked", why)
    return 0


def judge(report: str) -> int:
    """Exit code for a pip-audit JSON report: 1 on any known vulnerability."""
    try:
        dependencies = json.loads(report)["dependencies"]
    except (ValueError, KeyError, TypeError):
        return skipped("pip-audit wrote no readable report (see its output above)")
    vulnerable = [dep for dep in dependencies if dep.get("vulns")]
    not_audited = [dep for dep in dependencies if dep.get("skip_reason")]
    if vulnerable:
        print("Known vulnerabilities in the installed packages:")
        for dep in vulnerable:
            for vuln in dep["vulns"]:
                fixed = ", ".join(vuln.get("fix_versions") or ()) or "no fixed version yet"
                print(f"  {dep['name']} {dep.get('version')}: {vuln.get('id')} (fixed in {fixed})")
        return 1
    audited = len(dependencies) - len(not_audited)
    if audited == 0:
        return skipped(
            f"the vulnerability database had no answer for any of the {len(dependencies)} "
            "packages (no network, or an index that does not serve them)"
        )
    if not_audited:
        names = ", ".join(sorted(dep["name"] for dep in not_audited))
        banner(
            f"SECURITY AUDIT INCOMPLETE: {audited} packages audited, {len(not_audited)} "
            f"not: {names}"
        )
        return 0
    print(f"pip-audit: {audited} packages audited, no known vulnerabilities")
    return 0


def pip_audit() -> Path | None:
    tool = AUDIT_VENV / "bin" / "pip-audit"
    if tool.exists():
        return tool
    try:
        subprocess.run([sys.executable, "-m", "venv", str(AUDIT_VENV)], check=True)
        subprocess.run(
            [str(AUDIT_VENV / "bin" / "pip"), "install", "--quiet", PIP_AUDIT],
            check=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return tool


def audit(venv: Path) -> int:
    site_packages = sorted(venv.glob("lib/python3*/site-packages"))
    if not site_packages:
        print(f"No site-packages under {venv}: run `make install` first", file=sys.stderr)
        return 2
    tool = pip_audit()
    if tool is None:
        return skipped(f"{PIP_AUDIT} could not be installed (no package index?)")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        command = [str(tool), "--skip-editable", "--progress-spinner", "off", "--timeout", "30"]
        command += [arg for path in site_packages for arg in ("--path", str(path))]
        command += ["--format", "json", "--output", str(report)]
        # Its exit code is not used: the report tells findings from a database out of reach.
        subprocess.run(command, check=False, timeout=1800)
        text = report.read_text(encoding="utf-8") if report.exists() else ""
    return judge(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--report", type=Path, help="judge this pip-audit JSON report only")
    args = parser.parse_args()
    if args.report is not None:
        return judge(args.report.read_text(encoding="utf-8"))
    return audit(args.venv)


if __name__ == "__main__":
    sys.exit(main())
