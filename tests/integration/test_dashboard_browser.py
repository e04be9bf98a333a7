"""The dashboard in a real browser: Debian's headless Chromium driven through /usr/bin/chromedriver, against a
real `printbridge serve`, a real Mosquitto (dynamic security) and `printbridge simulate`.

One bridge, broker, simulated printer and browser serve the whole module (starting them is most of the
cost); each test loads the page afresh and saves a screenshot under its own tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from bridge.agent.jpeg import build_grey_jpeg
from bridge.mqtt.topics import Topics
from tests.reliability.serve import Served
from tests.support.broker import Broker, Probe, requires_dynsec, start_broker

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 20.0

pytestmark = [
    requires_dynsec,
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason="chromium and chromium-driver are not installed (make test installs them)",
    ),
]


@dataclass
class Dashboard:
    broker: Broker
    served: Served
    driver: WebDriver
    printer: dict[str, Any]
    bob_token: str
    bob_printer: dict[str, Any]
    simulator: subprocess.Popen[bytes]

    @property
    def card_selector(self) -> str:
        return f'article.card[data-printer-id="{self.printer["id"]}"]'

    def open(self, token: str | None) -> None:
        """A fresh page; signed in with `token` (None: the sign-in form is left as it is)."""
        self.driver.get(self.served.url + "/")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(self.served.url + "/")
        if token is not None:
            field = wait_for(self.driver, lambda d: visible(d, "#token"), "the sign-in form")
            field.send_keys(token)
            self.driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()

    def card(self) -> WebElement:
        return wait_for(self.driver, lambda d: visible(d, self.card_selector), "the printer's card")

    def text(self, selector: str) -> str:
        return str(self.card().find_element(By.CSS_SELECTOR, selector).text)

    def rest(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.served.token}"}
        return httpx.request(method, f"{self.served.url}{path}", headers=headers, timeout=15, **kwargs)


def visible(driver: WebDriver, selector: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else None


def wait_for(driver: WebDriver, predicate: Callable[[WebDriver], Any], what: str, timeout: float = WAIT_S) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)
    except Exception as exc:
        raise AssertionError(f"timed out waiting for {what}") from exc


def screenshot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
    return path


def chromium(work: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={work / 'chromium-profile'}",
        "--window-size=1000,1100",
    ):
        options.add_argument(flag)
    # Service(executable_path=...) keeps Selenium Manager from looking for (or downloading) a driver.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def cli(served: Served, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PRINTBRIDGE_DB": str(served.db), "PRINTBRIDGE_BASE_TOPIC": served.base_topic}
    out = subprocess.run(
        [sys.executable, "-m", "bridge", *args], env=env, capture_output=True, check=True, timeout=30
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def start_simulator(served: Served, printer: dict[str, Any], work: Path) -> subprocess.Popen[bytes]:
    url = f"mqtt://{served.broker.host}:{served.broker.port}"
    args = ["simulate", "--printer", str(printer["id"]), "--password", printer["auth_token"], "--mqtt-url", url]
    env = {**os.environ, "PRINTBRIDGE_BASE_TOPIC": served.base_topic, "PRINTBRIDGE_DB": str(work / "sim.db")}
    with (work / "simulate.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge", *args, "--status-interval", "0.5", "--print-duration", "900"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_rest(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    work = tmp_path_factory.mktemp("dashboard")
    broker = start_broker(work / "mosquitto")
    served = Served(broker, work, "pbdash")
    simulator: subprocess.Popen[bytes] | None = None
    driver: WebDriver | None = None
    try:
        served.start(timeout=60)
        # Detection only alerts here (no automatic pause), so that the pause test and the alert test stay apart.
        resp = served.request(
            "POST", "/api/v1/printers/", json={"name": "Prusa MK4 (simulated)", "action_on_failure": "NONE"}
        )
        assert resp.status_code == 201, resp.text
        printer = resp.json()

        def printing() -> bool:
            body = served.request("GET", f"/api/v1/printers/{printer['id']}/").json()
            return body["status"] is not None and body["status"]["state"]["text"] == "Printing"

        # A bridge that has just started may make the printer's broker account a moment later (its first
        # reconciliation): until then the broker refuses the simulator, which exits; start it again.
        deadline = time.monotonic() + 60
        while True:
            simulator = start_simulator(served, printer, work)
            wait_rest(lambda s=simulator: s.poll() is not None or printing(), "the simulator to print or stop")
            if simulator.poll() is None or time.monotonic() > deadline:
                break
        wait_rest(printing, "the simulated print in REST")
        bob_token = cli(served, "user", "add", "bob")["token"]
        resp = httpx.post(
            f"{served.url}/api/v1/printers/",
            json={"name": "Bob's secret printer"},
            headers={"Authorization": f"Bearer {bob_token}"},
        )
        assert resp.status_code == 201, resp.text
        driver = chromium(work)
        yield Dashboard(broker, served, driver, printer, bob_token, resp.json(), simulator)
    finally:
        if driver is not None:
            driver.quit()
        if simulator is not None:
            simulator.terminate()
            try:
                simulator.wait(10)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait(10)
        served.stop()
        broker.stop()


def test_a_bad_token_shows_the_form_with_an_error(dashboard: Dashboard, tmp_path: Path) -> None:
    dashboard.open("not-a-token")
    error = wait_for(dashboard.driver, lambda d: visible(d, "#login-error"), "the sign-in error")
    assert error.text == "That token is not valid."
    assert visible(dashboard.driver, "#token") is not None
    assert dashboard.driver.execute_script("return sessionStorage.getItem('printbridge.token')") is None
    assert dashboard.driver.find_elements(By.CSS_SELECTOR, "article.card") == []
    screenshot(dashboard.driver, tmp_path, "bad-token")


def test_the_simulated_print_appears_and_advances_without_a_reload(dashboard: Dashboard, tmp_path: Path) -> None:
    driver = dashboard.driver
    dashboard.open(dashboard.served.token)
    card = dashboard.card()
    assert card.find_element(By.CSS_SELECTOR, ".name").text == "Prusa MK4 (simulated)"
    wait_for(driver, lambda d: dashboard.text(".state") == "Printing", "state Printing")
    assert dashboard.text(".online") == "online"
    assert dashboard.text(".file") == "benchy.gcode"
    driver.execute_script("window.__sameDocument = true")  # gone if the page reloaded

    def progress() -> float:
        text = dashboard.text(".progress-text")
        return float(text.split()[0]) if text and text[0].isdigit() else -1.0

    first = wait_for(driver, lambda d: progress() > 0 and progress(), "a progress figure")
    wait_for(driver, lambda d: progress() > first, f"progress to advance past {first} %")
    assert driver.execute_script("return window.__sameDocument") is True
    assert "left" in dashboard.text(".time-left")
    assert "Tool" in dashboard.text(".temps") and "Bed" in dashboard.text(".temps")
    bar = card.find_element(By.CSS_SELECTOR, ".progress-bar")
    assert float(bar.value_of_css_property("width").removesuffix("px")) > 0

    # A snapshot shows (fetched with the token), and a new one replaces it when the stream says so.
    pid = dashboard.printer["id"]
    topic = Topics(dashboard.served.base_topic).snapshot(pid)
    probe = Probe(dashboard.broker, f"printer-{pid}", dashboard.printer["auth_token"], mqtt5=False)
    assert probe.connect() == 0
    try:
        for n, shade in enumerate((90, 200), start=1):
            shown = int(card.get_attribute("data-snapshots") or 0)
            probe.publish(topic, build_grey_jpeg(shade=shade), qos=1)
            wait_for(driver, lambda d, s=shown: int(card.get_attribute("data-snapshots") or 0) > s, f"snapshot {n}")
    finally:
        probe.close()
    img = card.find_element(By.CSS_SELECTOR, "img.snapshot")
    assert img.is_displayed() and img.get_attribute("src").startswith("blob:")
    assert driver.execute_script("return arguments[0].naturalWidth", img) == 64
    screenshot(driver, tmp_path, "printing")

    # Phone width, dark mode: one column, nothing wider than the screen.
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    driver.set_window_size(390, 1400)
    try:
        wait_for(
            driver,
            lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"),
            "no horizontal scrolling at phone width",
        )
        background = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"  # the dark palette
        screenshot(driver, tmp_path, "phone-dark")
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        driver.set_window_size(1000, 1100)


def test_another_users_printer_never_appears(dashboard: Dashboard, tmp_path: Path) -> None:
    driver = dashboard.driver
    dashboard.open(dashboard.served.token)
    dashboard.card()
    bob = dashboard.bob_printer
    # Bob's printer changes, then Alice's does: the page has seen the first change before the second.
    resp = dashboard.rest("PATCH", f"/api/v1/printers/{bob['id']}/", token=dashboard.bob_token, json={"name": "B2"})
    assert resp.status_code == 200
    resp = dashboard.rest("PATCH", f"/api/v1/printers/{dashboard.printer['id']}/", json={"name": "Alice's MK4"})
    assert resp.status_code == 200
    wait_for(driver, lambda d: dashboard.text(".name") == "Alice's MK4", "the rename on the card")
    ids = [c.get_attribute("data-printer-id") for c in driver.find_elements(By.CSS_SELECTOR, "article.card")]
    assert ids == [str(dashboard.printer["id"])]
    assert "Bob" not in driver.page_source and "B2" not in driver.find_element(By.TAG_NAME, "main").text
    screenshot(driver, tmp_path, "only-alices-printer")


def test_pause_shows_the_acknowledged_outcome_and_resume_brings_it_back(dashboard: Dashboard, tmp_path: Path) -> None:
    driver = dashboard.driver
    dashboard.open(dashboard.served.token)
    wait_for(driver, lambda d: dashboard.text(".state") == "Printing", "state Printing")
    pause = wait_for(
        driver,
        lambda d: (
            (b := dashboard.card().find_element(By.CSS_SELECTOR, 'button[data-action="pause"]')).is_enabled() and b
        ),
        "the Pause button",
    )
    pause.click()
    wait_for(driver, lambda d: dashboard.text(".action-result") == "Pause: acknowledged by the printer", "pause ack")
    wait_for(driver, lambda d: dashboard.text(".state") == "Paused", "state Paused")
    card = dashboard.card()
    card.find_element(By.CSS_SELECTOR, ".commands-box summary").click()
    wait_for(driver, lambda d: "pause (api): acked" in dashboard.text(".commands"), "the pause in recent commands")
    screenshot(driver, tmp_path, "paused")

    resume = wait_for(
        driver,
        lambda d: (
            (b := dashboard.card().find_element(By.CSS_SELECTOR, 'button[data-action="resume"]')).is_enabled() and b
        ),
        "the Resume button",
    )
    resume.click()
    wait_for(driver, lambda d: dashboard.text(".action-result") == "Resume: acknowledged by the printer", "resume")
    wait_for(driver, lambda d: dashboard.text(".state") == "Printing", "state Printing again")
    screenshot(driver, tmp_path, "resumed")


def test_detection_frames_move_the_score_chart_and_raise_the_alert(dashboard: Dashboard, tmp_path: Path) -> None:
    driver = dashboard.driver
    dashboard.open(dashboard.served.token)
    wait_for(driver, lambda d: dashboard.text(".state") == "Printing", "state Printing")
    chart = dashboard.card().find_element(By.CSS_SELECTOR, ".score-chart")
    before = int(chart.get_attribute("data-points") or 0)
    assert not dashboard.card().find_element(By.CSS_SELECTOR, ".alert-banner").is_displayed()

    pid = dashboard.printer["id"]
    probe = Probe(dashboard.broker, f"printer-{pid}", dashboard.printer["auth_token"], mqtt5=False)
    assert probe.connect() == 0
    topic = Topics(dashboard.served.base_topic).detection(pid)
    try:
        # 30 quiet frames set the baseline, then confident failures: an alert (action_on_failure is NONE).
        for n in range(45):
            probe.publish(topic, json.dumps({"p": 0.0 if n < 30 else 1.0}).encode(), qos=1)
    finally:
        probe.close()

    banner = wait_for(
        driver,
        lambda d: (b := dashboard.card().find_element(By.CSS_SELECTOR, ".alert-banner")).is_displayed() and b,
        "the alert banner",
    )
    assert "Possible print failure." in banner.text
    wait_for(
        driver,
        lambda d: (
            int(chart.get_attribute("data-points") or 0) > before and float(chart.get_attribute("data-last") or 0) > 0.3
        ),
        "the score chart to move",
    )
    assert float(dashboard.text(".score")) > 0.3
    screenshot(driver, tmp_path, "alert")

    # A page opened now shows the chart from the print's start (the history is kept by the bridge).
    history = dashboard.rest("GET", f"/api/v1/printers/{pid}/scores/").json()
    assert len(history["points"]) >= 45 and history["points"][-1]["p"] > 0.3
    dashboard.open(dashboard.served.token)
    chart = dashboard.card().find_element(By.CSS_SELECTOR, ".score-chart")
    wait_for(driver, lambda d: int(chart.get_attribute("data-points") or 0) >= 45, "the history on a new page")

    def banner_button(action: str) -> WebElement:
        return dashboard.card().find_element(By.CSS_SELECTOR, f'.alert-banner button[data-action="{action}"]')

    banner_button("mute").click()
    wait_for(driver, lambda d: dashboard.text(".action-result") == "Mute: done", "the mute")
    wait_for(driver, lambda d: banner_button("mute").text == "Unmute alerts", "the button to offer unmuting")
    assert "muted" in dashboard.text(".watching")
    banner_button("mute").click()
    wait_for(driver, lambda d: dashboard.text(".action-result") == "Unmute: done", "the unmute")
    wait_for(driver, lambda d: banner_button("mute").text == "Mute alerts", "the button to offer muting again")

    banner_button("acknowledge").click()
    wait_for(driver, lambda d: dashboard.text(".action-result") == "Acknowledge: done", "the acknowledgment")
    wait_for(driver, lambda d: not dashboard.card().find_element(By.CSS_SELECTOR, ".alert-banner").is_displayed(), "")
    body = dashboard.rest("GET", f"/api/v1/printers/{pid}/").json()
    assert body["current_print"]["alert_acknowledged_at"] is not None
    screenshot(driver, tmp_path, "acknowledged")


def test_cancel_asks_twice_then_shows_the_outcome(dashboard: Dashboard, tmp_path: Path) -> None:
    driver = dashboard.driver
    dashboard.open(dashboard.served.token)
    wait_for(driver, lambda d: dashboard.text(".state") == "Printing", "state Printing")
    cancel = dashboard.card().find_element(By.CSS_SELECTOR, 'button[data-action="cancel"]')
    cancel.click()
    assert cancel.text == "Really cancel?"
    assert dashboard.text(".action-result") == ""  # nothing sent yet
    cancel.click()
    wait_for(driver, lambda d: dashboard.text(".action-result") == "Cancel: acknowledged by the printer", "cancel")
    wait_for(driver, lambda d: dashboard.text(".progress-text") == "not printing", "the print to end")
    card = dashboard.card()
    assert all(
        not card.find_element(By.CSS_SELECTOR, f'button[data-action="{a}"]').is_enabled()
        for a in ("pause", "resume", "cancel")
    )
    screenshot(driver, tmp_path, "cancelled")
