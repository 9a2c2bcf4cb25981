"""The commands the README and docs/*.md show, read from their Markdown, and a runner for them.

A *documented command* is a command line of a fenced ``bash`` block, indented inside a
list item or not (a heredoc and its body count as one command; ``\\`` continues a
line), or the command part of a ``crontab`` line. Tests run them verbatim, except for
the explicit substitutions a test passes to :class:`CommandRunner` (a placeholder such
as ``<client-id>``, a URL that needs the internet), so a command that breaks in the
docs breaks a test.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", *sorted(f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md")))
SHELL_FENCES = ("bash", "sh", "shell")
CRONTAB_FENCE = "crontab"
MARKER = re.compile(r"<!--\s*walkthrough:\s*(?P<tag>[^>]*?)\s*-->")
HEREDOC = re.compile(r"<<-?\s*'?\"?(?P<word>\w+)'?\"?")
# Words that start a command in an inline code span (`meltano run ...`).
COMMAND_WORDS = ("meltano ", "tap-pipedrive ", "pipedrive-sandbox", "make ", "python ", "pip ")


@dataclass(frozen=True)
class Block:
    document: str
    fence: str
    tag: str  # from a preceding <!-- walkthrough: TAG --> line, else ""
    commands: tuple[str, ...]


def _split_commands(lines: Sequence[str]) -> tuple[str, ...]:
    commands: list[str] = []
    pending: list[str] = []
    heredoc_end: str | None = None
    for line in lines:
        if heredoc_end is not None:
            pending.append(line)
            if line.strip() == heredoc_end:
                commands.append("\n".join(pending))
                pending, heredoc_end = [], None
            continue
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        pending.append(line)
        if stripped.endswith("\\"):
            continue
        match = HEREDOC.search(line)
        if match:
            heredoc_end = match.group("word")
            continue
        commands.append("\n".join(pending))
        pending = []
    if pending:
        commands.append("\n".join(pending))
    return tuple(commands)


def blocks(document: str) -> list[Block]:
    """The shell and crontab blocks of one Markdown file (path relative to the repo)."""
    lines = (REPO_ROOT / document).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        # A fence may be indented, inside a list item; its body carries the same indent.
        indent = len(line) - len(line.lstrip(" "))
        if line[indent:].startswith("```") and line[indent + 3 :].strip():
            fence = line[indent + 3 :].strip()
            end = index + 1
            while not lines[end].lstrip(" ").startswith("```"):
                end += 1
            body = [
                text[indent:] if text[:indent].isspace() else text
                for text in lines[index + 1 : end]
            ]
            previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = MARKER.fullmatch(previous.strip())
            tag = marker.group("tag") if marker else ""
            if fence in SHELL_FENCES:
                found.append(Block(document, fence, tag, _split_commands(body)))
            elif fence == CRONTAB_FENCE:
                cron = tuple(
                    " ".join(entry.split()[5:])
                    for entry in body
                    if entry.strip() and not entry.lstrip().startswith("#")
                )
                found.append(Block(document, fence, tag, cron))
            index = end + 1
        else:
            index += 1
    return found


def fenced_commands(documents: Sequence[str] = DOCUMENTS) -> dict[str, list[str]]:
    """Every fenced command -> the documents that show it."""
    where: dict[str, list[str]] = {}
    for document in documents:
        for block in blocks(document):
            for command in block.commands:
                where.setdefault(command, []).append(document)
    return where


def inline_commands(documents: Sequence[str] = DOCUMENTS) -> dict[str, list[str]]:
    """Inline code spans outside fences that read as a command (`meltano run ...`)."""
    where: dict[str, list[str]] = {}
    for document in documents:
        text = (REPO_ROOT / document).read_text(encoding="utf-8")
        prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M).replace("\n", " ")
        for match in re.finditer(r"`([^`]+)`", prose):
            span = " ".join(match.group(1).split())
            if span.startswith(COMMAND_WORDS):
                where.setdefault(span, []).append(document)
    return where


def without_comment(command: str) -> str:
    """The command without a trailing shell comment (quotes respected)."""
    quote = ""
    for position, char in enumerate(command):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or command[position - 1].isspace()):
            return command[:position].rstrip()
    return command.rstrip()


@dataclass
class Result:
    command: str
    run_as: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


@dataclass
class CommandRunner:
    """Runs documented commands one by one like a user in one terminal.

    ``cd DIR`` moves the runner; a command ending in ``&`` starts in the background
    (stopped by :meth:`stop`); ``interact`` handles commands that wait for the user
    (``--no-browser`` logins). ``substitutions`` are (documented text, local text) pairs,
    applied in order: the explicit, minimal mapping from the docs to this machine.
    """

    cwd: Path
    env: dict[str, str]
    substitutions: Sequence[tuple[str, str]] = ()
    interact: Callable[[str, subprocess.Popen[str]], tuple[str, str]] | None = None
    timeout: float = 600
    results: list[Result] = field(default_factory=list)
    background: list[subprocess.Popen[str]] = field(default_factory=list)

    def local(self, command: str) -> str:
        for documented, local in self.substitutions:
            command = command.replace(documented, local)
        return command

    def run(self, command: str, *, check: bool = True) -> Result:
        run_as = self.local(without_comment(command))
        started = time.monotonic()
        if run_as.startswith("cd ") and "&&" not in run_as:
            self.cwd = (self.cwd / os.path.expanduser(shlex.split(run_as)[1])).resolve()
            result = Result(command, run_as, 0, "", "")
        elif run_as.endswith("&") and not run_as.endswith("&&"):
            process = subprocess.Popen(
                ["bash", "-c", f"exec {run_as[:-1].strip()}"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            self.background.append(process)
            result = Result(command, run_as, 0, "", "")
        elif self.interact is not None and "--no-browser" in run_as:
            with subprocess.Popen(
                ["bash", "-c", run_as],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as process:
                out, err = self.interact(run_as, process)
            result = Result(command, run_as, process.returncode, out, err)
        else:
            completed = subprocess.run(
                ["bash", "-c", run_as],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
            result = Result(
                command, run_as, completed.returncode, completed.stdout, completed.stderr
            )
        result.seconds = time.monotonic() - started
        self.results.append(result)
        if check and result.returncode != 0:
            raise AssertionError(
                f"documented command failed ({result.returncode}): {command}\n"
                f"ran as: {run_as}\n{result.stderr[-3000:]}{result.stdout[-1000:]}"
            )
        return result

    def timings(self) -> str:
        """One line per command run: seconds and the command as run (for -rP)."""
        return "\n".join(f"{r.seconds:7.1f} s  {r.run_as[:150]}" for r in self.results)

    def run_all(self, commands: Sequence[str]) -> list[Result]:
        return [self.run(command) for command in commands]

    def wait_for_port(self, port: int, timeout: float = 60) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if any(p.poll() is not None for p in self.background):
                break
            time.sleep(0.2)
        raise AssertionError(f"nothing listens on port {port}")

    def stop(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()


def browser_stand_in(directory: Path, company: str | None = None) -> str:
    """A ``BROWSER`` executable that consents on the sandbox (tests/support/consent_browser.py).

    ``company`` is the one it picks on the consent page of a sandbox with several.
    Python's ``webbrowser`` takes ``$BROWSER`` as one program name, hence a wrapper file.
    """
    script = directory / (f"browser-{company}" if company else "browser")
    helper = REPO_ROOT / "tests" / "support" / "consent_browser.py"
    choice = f' --company "{company}"' if company else ""
    script.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{helper}"{choice} "$@"\n', encoding="utf-8"
    )
    script.chmod(0o755)
    return str(script)
