"""`tap-pipedrive --login` in a real headless Chromium.

The tap opens the browser through Python's ``webbrowser`` (``$BROWSER`` points at a
small launcher script that starts headless Chromium with a DevTools port); the test
attaches Selenium to that browser, clicks Allow or Deny on the sandbox's consent
page, and checks what the tap and the browser end up showing.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (CI installs them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tap_pipedrive.auth.store import store_path_from_config
from tests.support.oauth import (
    REPO_ROOT,
    code_calls,
    error_lines,
    free_port,
    stored_entry,
    tap_command,
    tap_env,
)

CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

webdriver = pytest.importorskip("selenium.webdriver")
if not CHROMIUM or not CHROMEDRIVER.is_file():
    pytest.skip(
        "needs Chromium and chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--no-proxy-server --disable-dev-shm-usage"
)

LAUNCHER = """#!/bin/sh
# Started by Python's webbrowser (via $BROWSER) with the URL to open as $1.
# setsid: the browser gets its own process group, which the test stops at the end.
setsid {chromium} {flags} --remote-debugging-address=127.0.0.1 --remote-debugging-port=0 \\
  --user-data-dir="{profile}" "$1" >"{profile}.log" 2>&1 </dev/null &
echo $! >"{profile}.pid"
"""


class HeadlessChromium:
    """The browser the tap launches, and a Selenium session attached to it."""

    def __init__(self, directory: Path) -> None:
        self.profile = directory / "profile"
        self.launcher = directory / "open-browser"
        self.launcher.write_text(
            LAUNCHER.format(chromium=CHROMIUM, flags=CHROMIUM_FLAGS, profile=self.profile)
        )
        self.launcher.chmod(self.launcher.stat().st_mode | stat.S_IEXEC)
        self.driver = None

    def attach(self, timeout: float = 60) -> webdriver.Chrome:
        """Wait until the tap has started the browser, then take control of it."""
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "the tap never started the browser"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        options = webdriver.ChromeOptions()
        options.add_experimental_option("debuggerAddress", f"127.0.0.1:{port}")
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        return self.driver

    def click(self, button_id: str) -> None:
        wait = WebDriverWait(self.driver, 30)
        wait.until(expected_conditions.element_to_be_clickable((By.ID, button_id))).click()

    def wait_for_text(self, text: str, timeout: float = 30) -> str:
        WebDriverWait(self.driver, timeout).until(lambda d: text in d.page_source)
        return self.driver.page_source

    def close(self) -> None:
        if self.driver is not None:
            with contextlib.suppress(Exception):
                self.driver.quit()
        pid_file = Path(f"{self.profile}.pid")
        if pid_file.exists():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


@pytest.fixture
def chromium(tmp_path):
    browser = HeadlessChromium(tmp_path)
    yield browser
    browser.close()


@pytest.fixture
def config_file(tmp_path, sandbox, secret_ledger):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "oauth_url": sandbox.url,
                "api_url": sandbox.url,
                "redirect_uri": f"http://localhost:{free_port()}",
            }
        )
    )
    return path


def start_login(config_file: Path, chromium: HeadlessChromium) -> subprocess.Popen:
    return subprocess.Popen(
        tap_command("--config", str(config_file), "--login", "--login-timeout", "120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tap_env(BROWSER=str(chromium.launcher)),
        cwd=REPO_ROOT,
    )


def test_login_in_headless_chromium_allow(sandbox, config_file, chromium, secret_ledger):
    with start_login(config_file, chromium) as tap:
        chromium.attach()
        chromium.click("allow")
        page = chromium.wait_for_text("tap-pipedrive is authorized")
        out, err = tap.communicate(timeout=120)
    assert tap.returncode == 0, err
    assert "close this tab" in page
    config = json.loads(config_file.read_text())
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert config["refresh_token"] in sandbox.oauth.refresh_tokens
    assert sandbox.oauth.access_valid(config["access_token"])
    assert config["api_domain"] == sandbox.url
    assert config["token_expires_at"].endswith("Z")
    store = store_path_from_config(config)
    assert stored_entry(store)["refresh_token"] == config["refresh_token"]
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert [call["status"] for call in code_calls(sandbox)] == [200]
    assert f"Authorized tap-pipedrive for {sandbox.url}" in out
    secret_ledger.assert_absent(out, err, page)


def test_login_in_headless_chromium_deny(sandbox, config_file, chromium, secret_ledger):
    before = config_file.read_text()
    with start_login(config_file, chromium) as tap:
        chromium.attach()
        chromium.click("deny")
        page = chromium.wait_for_text("Authorization failed")
        out, err = tap.communicate(timeout=120)
    assert tap.returncode == 1
    assert "user_denied" in page
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and "denied in the browser (user_denied)" in lines[0]
    assert config_file.read_text() == before
    assert sandbox.token_calls == []
    secret_ledger.assert_absent(out, err, page)
