"""The demo's HTML report, rendered by headless Chromium: the numbers and the bars show.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (CI installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.test_demo import demo

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

LOADED = {"deals": 2000, "users": 12, "persons": 1468}
EXPECTED = {"deals": 2000, "users": 12, "persons": 1470}
SUMMARY_LOG = """\
2026-01-01T00:00:00.000000Z [info     ] meltano      Running job
2026-01-01T00:00:01.000000Z [info     ] tap-pipedrive Progress deals: 2,000 records (100/s)
2026-01-01T00:00:02.000000Z [info     ] tap-pipedrive Sync summary: records, API calls and time per stream
2026-01-01T00:00:02.000000Z [info     ] tap-pipedrive stream      records    calls       time
2026-01-01T00:00:02.000000Z [info     ] tap-pipedrive deals         2,000        5  1 min 02 s
2026-01-01T00:00:02.000000Z [info     ] tap-pipedrive persons       1,468    1,471      6.2 s
2026-01-01T00:00:02.000000Z [info     ] tap-pipedrive users            12        1      0.4 s
2026-01-01T00:00:02.000000Z [info     ] tap-pipedrive total         3,480    1,477  1 min 09 s
"""


def test_run_summary_reads_the_taps_table():
    assert demo.run_summary(SUMMARY_LOG) == {
        "deals": {"records": 2000, "calls": 5, "seconds": 62.0},
        "persons": {"records": 1468, "calls": 1471, "seconds": 6.2},
        "users": {"records": 12, "calls": 1, "seconds": 0.4},
    }
    assert demo.run_summary("no summary in this log") == {}


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _width(row, css: str) -> float:
    return float(row.find_element(By.CSS_SELECTOR, f".{css} span").size["width"])


def test_report_renders_numbers_and_bars(tmp_path, browser):
    report = tmp_path / "report.html"
    demo.write_report(report, LOADED, EXPECTED, demo.run_summary(SUMMARY_LOG), "demo report")
    source = report.read_text(encoding="utf-8")
    # Self-contained: no script, nothing loaded from anywhere.
    assert "<script" not in source and "http" not in source and "src=" not in source

    browser.get(report.as_uri())
    assert browser.title == "demo report"
    rows = {
        row.get_attribute("data-stream"): row
        for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    }
    assert list(rows) == ["deals", "persons", "users"]
    deals, persons = rows["deals"], rows["persons"]
    assert deals.find_element(By.CSS_SELECTOR, ".loaded").text == "2,000"
    assert deals.find_element(By.CSS_SELECTOR, ".expected").text == "2,000 expected"
    assert deals.find_element(By.CSS_SELECTOR, ".calls").text == "5"
    assert deals.find_element(By.CSS_SELECTOR, ".time").text == "62.0 s"
    assert persons.find_element(By.CSS_SELECTOR, ".expected").text == "1,470 expected"
    assert persons.text.endswith("differs") and deals.text.endswith("ok")
    assert "3,480 records loaded, 3,482 expected; 1,477 API calls." in browser.find_element(
        By.ID, "totals"
    ).text.replace("\n", " ")
    # Bars are drawn to scale: the longest is the column's largest value.
    assert _width(deals, "loaded") == pytest.approx(_width(deals, "expected"), abs=1)
    assert _width(persons, "loaded") == pytest.approx(_width(deals, "loaded") * 1468 / 2000, abs=2)
    assert _width(persons, "calls") > 0 and _width(deals, "calls") == pytest.approx(
        _width(persons, "calls") * 5 / 1471, abs=1
    )
    assert _width(rows["users"], "time") < _width(deals, "time")
