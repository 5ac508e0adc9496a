"""The live plant board in a real browser (issue 13, item 2): Debian's Chromium,
headless, driven by Selenium through chromium-driver, against ``tap api`` started as
a process on the local stack's PostgreSQL and Redis.

The page must show a device's value, follow its change (polling ``/devices``), and
show an anomaly injected after it loaded (the SSE stream) in the feed and on the
device's row; the device page must draw its chart. Screenshots go to the test's
folder (printed, and kept by pytest under its basetemp).

Skips, saying why, where Chromium or chromium-driver is not installed
(``apt-get install -y --no-install-recommends chromium chromium-driver``; ``.ci/run``
installs them): a machine with only Python, Node and make still passes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.fixtures import FreshDatabase
from e2e.plant_writer import PlantWriter
from local_pipeline.services import LocalServices, RedisServer
from local_pipeline.services.api_reader import api_environment
from processor.contract.environment import ProcessorSettings
from processor.contract.record import SensorType
from processor.core.model import AnomalyType, Severity

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the board's browser test needs Debian's chromium and chromium-driver "
    "(apt-get install -y --no-install-recommends chromium chromium-driver); not installed",
)

#: Longest wait for the page to show a change: the board polls every 2 s.
PAGE_WAIT_S = 20


def _wait(check: Callable[[], Any], what: str, timeout: float = PAGE_WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:  # an element not there yet, a stale one: look again
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"the board did not show {what} within {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def api_process(
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    clean_redis: RedisServer,
    aws_env: dict[str, str],
    writer: PlantWriter,
    tmp_path: Path,
) -> Iterator[str]:
    """``tap api`` as a process (the command, not an in-process app); its URL. After
    ``writer``, whose processor environment migrates the database."""
    env = os.environ | api_environment(local_services, fresh_database.name)
    url = f"http://127.0.0.1:{env['TAP_API_PORT']}"
    log = (tmp_path / "tap-api.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tap_cli.main", "api"], env=env, stdout=log, stderr=log
    )
    try:
        _wait(
            lambda: (
                process.poll() is None
                and httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
            ),
            "a ready API",
            timeout=30,
        )
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def writer(
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    db_secret_arn: str,
    redis_secret_arn: str,
    aws_env: dict[str, str],
) -> Iterator[PlantWriter]:
    env = local_services.processor_environment(
        "unused", db_secret_arn, redis_secret_arn, db_name=fresh_database.name
    )
    with PlantWriter(ProcessorSettings.from_environ(env)) as plant_writer:
        yield plant_writer


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_board_follows_values_and_shows_an_injected_anomaly(
    api_process: str, writer: PlantWriter, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    now = datetime.now(UTC).replace(microsecond=0)
    # Two facilities, three lines; an hour of history for the chart of t-01.
    history = [
        PlantWriter.reading("t-01", i, now - timedelta(minutes=60 - i), 20.0 + (i % 5) * 0.1)
        for i in range(60)
    ]
    others = [
        PlantWriter.reading(
            "p-01", 1, now, 3.2, line="l02", sensor_type=SensorType.PRESSURE, unit="bar"
        ),
        PlantWriter.reading("t-02", 1, now, 18.0, facility="fac2", line="l07"),
    ]
    writer.write([*history, *others])
    browser.get(f"{api_process}/board/")

    def row_text(device: str, column: str) -> str:
        cell = browser.find_element(By.CSS_SELECTOR, f'tr[data-device="{device}"] td.{column}')
        return str(cell.text)

    # Every check reads the page inside _wait: the board re-renders its table on each
    # poll (every 2 s), so an element found a moment ago may be gone (stale) by now.
    _wait(lambda: row_text("t-01", "value") == "20.40 C", "t-01's latest value")
    _wait(lambda: row_text("t-02", "value") == "18.00 C", "t-02's latest value")

    def facilities() -> list[str | None]:
        found = browser.find_elements(By.CSS_SELECTOR, "[data-facility]")
        return [e.get_attribute("data-facility") for e in found]

    _wait(lambda: facilities() == ["fac1", "fac2"], "the two facilities in order")
    _wait(lambda: "live" in browser.find_element(By.ID, "stream-state").text, "a live stream")
    browser.save_screenshot(str(tmp_path / "board-before.png"))

    # The value changes: the next poll shows it.
    writer.write([PlantWriter.reading("t-01", 60, now + timedelta(seconds=1), 21.7)])
    _wait(lambda: row_text("t-01", "value") == "21.70 C", "t-01's new value")

    # An anomaly injected now reaches the page through the SSE stream.
    spike = PlantWriter.reading("t-02", 2, now + timedelta(seconds=2), 95.0, facility="fac2",
                                line="l07")  # fmt: skip
    writer.write([spike], [PlantWriter.anomaly(spike, AnomalyType.LIMIT, Severity.CRITICAL)])
    _wait(
        lambda: [
            li
            for li in browser.find_elements(By.CSS_SELECTOR, "#feed li[data-anomaly-id]")
            if "t-02" in li.text and "limit" in li.text and "critical" in li.text
        ],
        "the injected anomaly (limit, critical) in the feed",
    )
    _wait(lambda: row_text("t-02", "anomalies").startswith("1"), "t-02's open anomaly")
    _wait(
        lambda: (
            "alarm"
            in str(
                browser.find_element(By.CSS_SELECTOR, 'tr[data-device="t-02"]').get_attribute(
                    "class"
                )
            )
        ),
        "t-02's row marked as an alarm",
    )
    browser.save_screenshot(str(tmp_path / "board-anomaly.png"))

    # The device page draws the last hours.
    def open_device_page() -> bool:
        browser.find_element(By.LINK_TEXT, "t-01").click()
        return True

    _wait(open_device_page, "t-01's link to click")

    def chart_points() -> int:
        line = browser.find_element(By.CSS_SELECTOR, "#history polyline")
        return int(str(line.get_attribute("data-points")))

    _wait(lambda: chart_points() >= 60, "t-01's chart with the last hours (>= 60 points)")
    # The device page replaces the plant view (it showed both before board.css's fix).
    _wait(
        lambda: not browser.find_element(By.ID, "plant-view").is_displayed(),
        "the plant view hidden on the device page",
    )
    browser.save_screenshot(str(tmp_path / "board-device.png"))
    print(f"board screenshots: {tmp_path}")
    for name in ("board-before.png", "board-anomaly.png", "board-device.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
