"""The dashboard in a real headless browser (Debian's chromium and chromedriver, driven by
Selenium) against sandbox canaries.

Held at a gate: the page shows it PAUSED at the gate step with its weights, a click on promote
carries it on to COMPLETED, a click on abort restores another paused one, and the page without
its token is refused. Running: a paced ``deploy`` in its own process (``RFS_DEPLOY_SIM_PACE``, as
in tests/cli/test_cli_watch.py) is followed live, its step and weights moving on the page; a click
on pause holds it (the deploy exits 5, the page shows who paused it) and promote completes it.
One browser serves every test of the module."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import SERVICE, Place, make_place
from dashboard_helpers import WHERE, Running, deploy_paused, deploy_running, start_dashboard

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them with apt-get)",
)
#: Bound of every wait on the page: a promote or abort in the sandbox takes seconds, more under load.
PAGE_TIMEOUT = 240


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless chromium for the module (starting one takes seconds); each test opens its
    own dashboard's URL in it."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SE_AVOID_STATS", "true")  # selenium reports no usage anywhere
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
        options.add_argument("--window-size=1200,1000")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return make_place(tmp_path / "project")


def text(driver: Any, element_id: str) -> str:
    """An element's text, read in one script call (the page redraws its lists every second)."""
    return str(driver.execute_script("return document.getElementById(arguments[0]).innerText", element_id))


def rows(driver: Any) -> list[tuple[str, str]]:
    """The deployments table: (data-id, the row's text) of each row, read in one script call."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('#deployments tr')].map(r => [r.dataset.id, r.innerText])"
    )
    return [(str(i), str(t)) for i, t in found]


def click_row(driver: Any, deployment_id: str) -> None:
    """A real click on a deployment's row; a row redrawn between finding and clicking is found again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, f"#deployments tr[data-id='{deployment_id}']").click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"the row of {deployment_id} kept being redrawn")


def wait_for(driver: Any, what: str, condition: Callable[[Any], bool]) -> None:
    """Wait on the DOM, bounded; the failure names what was awaited and what the page showed."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.25).until(lambda d: condition(d))
    except TimeoutException:
        shown = driver.find_element("tag name", "body").text
        raise AssertionError(f"the page did not show {what} in {PAGE_TIMEOUT}s; it shows:\n{shown}") from None


def click(driver: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.ID, element_id)
    assert button.is_enabled(), f"{element_id} is disabled"
    button.click()


def shown(driver: Any, deployment_id: str, status: str) -> bool:
    return text(driver, "detail-id") == deployment_id and text(driver, "detail-status") == status


def action_done(driver: Any, command: str) -> str:
    """The outcome of the newest command the page ran, once it ended ('' while it runs)."""
    newest = driver.execute_script(
        "const a = document.querySelector('#actions .action'); return a && a.innerText"
    )
    if not newest or not newest.startswith(command) or "running" in newest:
        return ""
    return str(newest)


def test_promote_and_abort_from_the_page(browser: Any, place: Place, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    first = deploy_paused(place, "v2.0.0")
    status = place.run("--json", "status", *WHERE).json()
    dashboard: Running = start_dashboard(place)
    try:
        browser.get(dashboard.url)
        wait_for(browser, f"{first} PAUSED", lambda d: shown(d, first, "PAUSED"))
        step = text(browser, "detail-step")
        assert step.startswith(f"step {status['step']}/{status['total_steps']}: pause until promoted"), step
        assert text(browser, "detail-weights") == "weights: blue 80 % / green 20 % (v2.0.0 on green: 20 %)"
        assert f"paused at step {status['paused']['step']} by {status['paused']['by']}" in text(
            browser, "detail-paused"
        )
        assert [i for i, _ in rows(browser)] == [first]
        assert browser.find_elements(By.CSS_SELECTOR, "#timeline rect[data-outcome='paused']")
        assert not browser.find_element(By.ID, "btn-pause").is_enabled()  # a paused one is held already
        browser.save_screenshot(str(tmp_path / "paused.png"))

        click(browser, "btn-promote")
        command = f"rfs-deploy promote --stack production --service {SERVICE}"
        wait_for(browser, "the promote's outcome", lambda d: bool(action_done(d, command)))
        outcome = action_done(browser, command)
        assert f"{command}: exit 0" in outcome and f"deployment {first}: COMPLETED" in outcome, outcome
        wait_for(browser, f"{first} COMPLETED", lambda d: shown(d, first, "COMPLETED"))
        assert text(browser, "detail-weights") == "weights: blue 0 % / green 100 % (v2.0.0 on green: 100 %)"
        assert not browser.find_element(By.ID, "btn-promote").is_enabled()
        assert not browser.find_element(By.ID, "btn-abort").is_enabled()
        browser.save_screenshot(str(tmp_path / "completed.png"))

        # without the token the page is refused (403, the body says so)
        browser.get(dashboard.base + "/")
        assert "forbidden" in browser.find_element(By.TAG_NAME, "body").text
        assert dashboard.get("/")[0] == 403

        # another release held at its gate: the page follows the newest; abort restores it
        second = deploy_paused(place, "v3.0.0", "--ami", "ami-0aa1100000000a300")
        browser.get(dashboard.url)
        wait_for(browser, f"{second} PAUSED", lambda d: shown(d, second, "PAUSED"))
        click_row(browser, second)
        click(browser, "btn-abort")
        command = f"rfs-deploy abort --stack production --service {SERVICE}"
        wait_for(browser, "the abort's outcome", lambda d: bool(action_done(d, command)))
        outcome = action_done(browser, command)
        assert f"{command}: exit 0" in outcome and f"deployment {second}: ROLLED_BACK" in outcome, outcome
        wait_for(browser, f"{second} ROLLED_BACK", lambda d: shown(d, second, "ROLLED_BACK"))
        assert "journal: aborted, on request" in text(browser, "detail-what")
        # the first deployment is still listed, as it ended
        listed = rows(browser)
        assert [i for i, _ in listed] == [second, first]
        assert "COMPLETED" in listed[1][1]
        after = place.run("--json", "status", *WHERE).json()
        assert (after["deployment_id"], after["journal"], after["status"]) == (
            second,
            "aborted",
            "ROLLED_BACK",
        )
    finally:
        code, err = dashboard.stop()
    assert code == 130 and "Traceback" not in err, err


def action_running(driver: Any, command: str) -> bool:
    """The newest command the page ran is ``command`` and still runs."""
    newest = driver.execute_script(
        "const a = document.querySelector('#actions .action'); return a && a.innerText"
    )
    return bool(newest) and str(newest).startswith(f"{command}: running")


def live(driver: Any) -> bool:
    """The shown deployment is running at a step the page names."""
    return text(driver, "detail-status") == "IN_PROGRESS" and bool(
        re.fullmatch(r"step \d+/\d+: .+", text(driver, "detail-step"))
    )


def test_the_page_follows_a_running_canary_and_pauses_it(browser: Any, place: Place, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    deploy = deploy_running(place, "v2.0.0")
    dashboard: Running | None = None
    try:
        dashboard = start_dashboard(place)
        browser.get(dashboard.url)
        wait_for(browser, "a deployment IN_PROGRESS at a step", live)
        deployment_id = text(browser, "detail-id")
        first_step, first_weights = text(browser, "detail-step"), text(browser, "detail-weights")
        assert first_weights.startswith("weights: blue "), first_weights
        assert "30 %" not in first_weights, f"the page first saw it at 30 % already: {first_weights}"
        assert browser.find_element(By.ID, "btn-pause").is_enabled()
        assert browser.find_element(By.ID, "btn-abort").is_enabled()
        assert not browser.find_element(By.ID, "btn-promote").is_enabled()  # nothing holds it

        # the live view moves: later reads show another step and the weights of the 30 % step
        at_30 = "weights: blue 70 % / green 30 % (v2.0.0 on green: 30 %)"
        wait_for(
            browser,
            "the analysis at 30 %",
            lambda d: live(d) and text(d, "detail-weights") == at_30 and "analyze" in text(d, "detail-step"),
        )
        assert text(browser, "detail-id") == deployment_id
        assert text(browser, "detail-step") != first_step
        step = text(browser, "detail-step")
        assert [(i, "IN_PROGRESS" in t) for i, t in rows(browser)] == [(deployment_id, True)]
        assert browser.find_elements(By.CSS_SELECTOR, "#timeline rect[data-outcome='running']")
        # the 10 % analysis has ended by now: its verdicts are listed with their numbers
        wait_for(browser, "the verdicts of the 10 % analysis", lambda d: "PASS" in text(d, "verdicts"))
        assert "=" in text(browser, "verdicts")
        browser.save_screenshot(str(tmp_path / "running.png"))

        click(browser, "btn-pause")
        command = f"rfs-deploy pause --stack production --service {SERVICE}"
        wait_for(browser, "the pause running", lambda d: action_running(d, command))
        # a second press while it runs is refused, and the page keeps saying so until the next press
        click(browser, "btn-pause")
        refusal = "pause refused: another command is still running"
        wait_for(browser, "the refusal", lambda d: refusal in text(d, "error"))
        polled = text(browser, "updated")
        wait_for(browser, "the next poll", lambda d: text(d, "updated") != polled)
        assert refusal in text(browser, "error")
        wait_for(browser, "the pause's outcome", lambda d: bool(action_done(d, command)))
        outcome = action_done(browser, command)
        assert f"{command}: exit 0" in outcome, outcome
        assert re.search(r"PAUSED at step \d+/\d+ by \S+@\S+; continue: rfs-deploy promote", outcome), outcome
        out, err = deploy.communicate(timeout=120)
        assert deploy.returncode == 5, err  # the deploy's own process ends with the paused code
        record = json.loads(out)
        assert (record["deployment_id"], record["status"]) == (deployment_id, "PAUSED")

        wait_for(browser, f"{deployment_id} PAUSED", lambda d: shown(d, deployment_id, "PAUSED"))
        status = place.run("--json", "status", *WHERE).json()
        assert (status["status"], status["journal"]) == ("PAUSED", "paused")
        paused = text(browser, "detail-paused")
        assert f"paused at step {status['paused']['step']} by {status['paused']['by']} since " in paused, (
            paused
        )
        assert "@" in status["paused"]["by"]
        assert text(browser, "detail-weights") == at_30  # held where it was
        # the step as status says it: the held weight's step, before the analysis it cut short
        assert text(browser, "detail-step").startswith(f"step {status['step']}/{status['total_steps']}: ")
        assert status["step"] < int(step.split(" ", 2)[1].split("/")[0])
        assert not browser.find_element(By.ID, "btn-pause").is_enabled()
        assert browser.find_element(By.ID, "btn-promote").is_enabled()
        browser.save_screenshot(str(tmp_path / "paused.png"))

        click(browser, "btn-promote")
        command = f"rfs-deploy promote --stack production --service {SERVICE}"
        wait_for(browser, "the promote's outcome", lambda d: bool(action_done(d, command)))
        outcome = action_done(browser, command)
        assert f"{command}: exit 0" in outcome and f"deployment {deployment_id}: COMPLETED" in outcome, (
            outcome
        )
        wait_for(browser, f"{deployment_id} COMPLETED", lambda d: shown(d, deployment_id, "COMPLETED"))
        assert text(browser, "detail-weights") == "weights: blue 0 % / green 100 % (v2.0.0 on green: 100 %)"
        assert refusal not in text(browser, "error")  # the next press cleared it
        assert place.run("--json", "status", *WHERE).json()["status"] == "COMPLETED"
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.communicate(timeout=30)
        if dashboard is not None:
            code, err = dashboard.stop()
    assert code == 130 and "Traceback" not in err, err
