"""Headless Chromium on the Airflow UI, shared by the browser tests of the e2e and real-Core stages.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps`` installs them); selenium
uses that chromedriver, so nothing is downloaded. A test package's conftest imports the ``chromium``
and ``browser`` fixtures from here; its tests take ``browser``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="package")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One Chromium for the test package whose conftest imports this fixture: each launch costs
    seconds of CPU, and the modules that use it log in first (``log_in`` clears the cookies). It quits
    when the package's tests end, not at the end of the session: the pytest-xdist worker goes on to
    other tests."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium or chromium-driver is missing; `make test` installs them (make browser-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1400",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium) -> Iterator:
    """The package's Chromium for one test, left on a blank page when the test ends."""
    yield chromium
    leave_the_page(chromium)


def leave_the_page(browser) -> None:
    """Show a blank page until the next ``get``. An Airflow page left open keeps Chromium working
    with nobody looking, 10 to 13 CPU s a minute on its connection list, DAG list and home page
    (measured with no request to the api-server: the page's own rendering), against 0.2 on a blank
    one; the other tests of a package, and a test's wait for a DAG run, take minutes."""
    browser.get("about:blank")


def wait_for(find, timeout: float = 20.0, what: str = "element"):
    """Poll ``find()`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = find()
        except StaleElementReferenceException:  # React re-rendered under us: look again
            found = None
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"the UI never showed {what} within {timeout:.0f}s")


def log_in(browser, base_url: str, user: str, password: str, next_path: str) -> None:
    """Log in through Airflow's own login form, as a person does."""
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{base_url}/auth/login?next={next_path}")
    wait_for(lambda: browser.find_elements(By.NAME, "username"), what="the login form")[0].send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(password)
    [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Sign in"][0].click()
    wait_for(lambda: browser.get_cookie("_token"), what=f"{user}'s session cookie")


def button(container, text: str):
    from selenium.webdriver.common.by import By

    return wait_for(
        lambda: [b for b in container.find_elements(By.TAG_NAME, "button") if b.text.strip() == text],
        what=f"a {text!r} button",
    )[0]


def visible_labels(dialog) -> set[str]:
    from selenium.webdriver.common.by import By

    labels = dialog.find_elements(By.TAG_NAME, "label")
    return {label.text.replace("*", "").strip() for label in labels if label.is_displayed()} - {""}


def open_cerebelum_form(browser, base_url: str, connection_id: str):
    """Open the connection list's "Add Connection" dialog, type ``connection_id``, pick "Cerebelum
    Core"; return the dialog once its Host field is drawn."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{base_url}/connections")
    button(browser, "Add Connection").click()
    dialog = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[role=dialog]"), what="the dialog")[0]
    wait_for(lambda: dialog.find_elements(By.NAME, "connection_id"), what="the id field")[0].send_keys(
        connection_id
    )
    connection_type = dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]")
    connection_type.send_keys("Cerebelum Core")
    wait_for(lambda: browser.find_elements(By.XPATH, "//*[text()='Cerebelum Core']"), what="the type option")
    connection_type.send_keys(Keys.ENTER)
    wait_for(lambda: dialog.find_elements(By.NAME, "host"), what="the host field")
    return dialog


def save_form(browser, dialog) -> None:
    from selenium.webdriver.common.by import By

    button(dialog, "Save").click()
    wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, "[role=dialog]"), what="the dialog closing")


def press_test_and_read_the_answer(browser, connection_id: str, screenshot) -> str:
    """Press the connection list's "Test Connection" button of ``connection_id``; return the
    toast's text (its title and the hook's message)."""
    from selenium.webdriver.common.by import By

    row_button = (
        f"//tr[.//*[normalize-space(text())='{connection_id}']]//button[@aria-label='Test Connection']"
    )
    wait_for(lambda: browser.find_elements(By.XPATH, row_button), what=f"the Test button of {connection_id}")[
        0
    ].click()

    def shown_answer() -> str | None:
        # The toast and its title are read in one look: React may re-render the toast between two
        # (a stale element), and wait_for then looks again.
        for element in browser.find_elements(By.XPATH, "//*[contains(text(), 'Cerebelum Core at')]"):
            if element.is_displayed():
                return element.find_element(By.XPATH, "./ancestor::*[contains(., 'Test Connection')][1]").text
        return None

    title = wait_for(shown_answer, what=f"the Test answer for {connection_id}")
    browser.save_screenshot(str(screenshot))
    return " ".join(title.split())
