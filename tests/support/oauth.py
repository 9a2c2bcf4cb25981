"""Helpers for the OAuth login and token store tests.

``consent`` plays the part of a user in a browser without JavaScript: it loads the
sandbox's consent page, submits the form the way the Allow or Deny button would,
and hands back the redirect the sandbox answers with. The ledger of secrets is in
``tests/support/secrets.py``.
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.delivery import tap_environment

REPO_ROOT = Path(__file__).resolve().parents[2]


class _FormReader(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, tuple[str, str]] = {}
        self.choices: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.action = values.get("action")
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values.get("value", "")
        elif tag == "select":
            self._select = values["name"]
            self.choices[self._select] = []
        elif tag == "option" and self._select is not None:
            self.choices[self._select].append(values.get("value", ""))
            # A browser submits the first option unless the user picks another.
            self.fields.setdefault(self._select, values.get("value", ""))
        elif tag == "button" and "id" in values:
            self.buttons[values["id"]] = (values.get("name", ""), values.get("value", ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def consent(authorization_url: str, decision: str = "allow", company: str | None = None) -> str:
    """Answer the sandbox's consent page; return the redirect URL it sends the browser to.

    ``company`` picks the company (its subdomain) on a sandbox with several.
    """
    with urllib.request.urlopen(authorization_url, timeout=10) as response:
        page = response.read().decode("utf-8")
    form = _FormReader()
    form.feed(page)
    assert form.action, "the consent page has no form"
    if company is not None:
        assert company in form.choices.get("company", []), f"no company {company!r} offered"
        form.fields["company"] = company
    name, value = form.buttons[decision]
    body = urllib.parse.urlencode({**form.fields, name: value}).encode()
    target = urllib.parse.urljoin(authorization_url, form.action)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(urllib.request.Request(target, data=body, method="POST"), timeout=10)
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 302, redirect.code
        return str(redirect.headers["Location"])
    raise AssertionError("the consent form did not redirect")


def visit(url: str) -> tuple[int, str]:
    """GET a URL the way a browser following a redirect would."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


@dataclass
class ScriptedBrowser:
    """Stands in for ``webbrowser.open``: consents in a thread, then follows the redirect."""

    decision: str = "allow"
    rewrite: object = None  # optional callable(redirect_url) -> redirect_url
    company: str | None = None
    opened: list[str] = field(default_factory=list)
    pages: list[tuple[int, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __call__(self, url: str) -> bool:
        self.opened.append(url)
        thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._threads.append(thread)
        thread.start()
        return True

    def _run(self, url: str) -> None:
        try:
            redirect = consent(url, self.decision, self.company)
            if callable(self.rewrite):
                redirect = self.rewrite(redirect)
            self.pages.append(visit(redirect))
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=10)
        if self.errors:
            raise self.errors[0]


def free_port() -> int:
    """A port free on 127.0.0.1 and, where it exists, on ::1 (a localhost login binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not ipv6_loopback() or _free_on_ipv6(port):
            return port
    raise AssertionError("no port is free on both loopback addresses")


def ipv6_loopback() -> bool:
    """Whether this machine can listen on ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _free_on_ipv6(port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", port))
    except OSError:
        return False
    return True


def tap_env(**extra: str) -> dict[str, str]:
    """The environment for a tap subprocess: no inherited tap settings or Meltano context."""
    return tap_environment(extra)


def tap_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tap_pipedrive", *args]


def run_tap_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tap_command(*args),
        capture_output=True,
        text=True,
        input=input,
        env=env if env is not None else tap_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )


def refresh_calls(sandbox) -> list[dict]:
    return [call for call in sandbox.token_calls if call["grant_type"] == "refresh_token"]


def code_calls(sandbox) -> list[dict]:
    return [call for call in sandbox.token_calls if call["grant_type"] == "authorization_code"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line]


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


def written_secrets(paths: Iterable[Path]) -> list[str]:
    """Token values found in JSON files the tap wrote (to add them to a ledger)."""
    found = []
    for path in paths:
        if path.exists():
            data = json.loads(path.read_text())
            for item in data.get("authorizations", [data]):
                found += [
                    str(item[key]) for key in ("access_token", "refresh_token") if item.get(key)
                ]
    return found


def stored_entry(path: Path, api_domain: str | None = None) -> dict:
    """The token store's one authorization, or the one of the company at ``api_domain``."""
    entries = json.loads(path.read_text())["authorizations"]
    if api_domain is None:
        assert len(entries) == 1, [entry["api_domain"] for entry in entries]
        return entries[0]
    (entry,) = [entry for entry in entries if entry["api_domain"] == api_domain]
    return entry


def expire_stored_access_token(path: Path, api_domain: str | None = None) -> None:
    """Make a stored access token look expired, as it is an hour after the last run."""
    data = json.loads(path.read_text())
    entry = stored_entry(path, api_domain)
    for item in data["authorizations"]:
        if item["api_domain"] == entry["api_domain"]:
            item["expires_at"] = time.time() - 1
    path.write_text(json.dumps(data))


def record_count(messages: list[dict], stream: str) -> int:
    return sum(1 for m in messages if m["type"] == "RECORD" and m["stream"] == stream)
