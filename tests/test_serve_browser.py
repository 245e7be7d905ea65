"""The web page in a real browser: headless Chromium (Debian's package) via Selenium.

A uvicorn server on a free loopback port serves a tiny catalog holding an item
titled `<script>alert(1)</script>`; the test types a query, waits for results,
checks them and checks that the title shows as text and no script ran.
`make test` installs Chromium when it can; without it this test skips, saying why.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import uvicorn
from serve_fakes import SCRIPT_TITLE, FakeRetriever, free_port, running, save_run, tiny_dataset

from genrec.serve.app import create_app
from genrec.serve.model import load_served_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,900",
)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium not installed (/usr/bin/chromium, /usr/bin/chromedriver): "
           "run `make test` as root or `apt-get install chromium chromium-driver`",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = save_run(tmp_path_factory.mktemp("browser-run"), tiny_dataset())
    app = create_app(run, loader=lambda folder: load_served_model(
        folder, ["fake", "other"], build=lambda name, r, dataset, split: FakeRetriever(dataset, name=name)))
    port = free_port()
    with running(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="genrec-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _waiting(browser):
    """A 20 s wait that looks again when the page re-renders an element between finding it and reading it
    (a stale element reference is a moment of the page, not a failure)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))


def test_search_shows_results_and_catalog_text_stays_text(server, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    wait = _waiting(browser)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    box = browser.find_element(By.ID, "q")
    box.send_keys("script notebook", Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#results .column-head .what"), "script notebook"))
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit .title")]
    assert titles == ["script writing notebook", SCRIPT_TITLE]  # 2 shared words, then 1
    hit = browser.find_elements(By.CSS_SELECTOR, "#results .hit")[1]
    assert hit.find_element(By.CLASS_NAME, "title").get_attribute("textContent") == SCRIPT_TITLE
    assert hit.find_element(By.CLASS_NAME, "category").text == "electronics › <b>phones</b>"
    assert hit.find_element(By.CLASS_NAME, "price").text == "$1.00"
    assert hit.find_element(By.CLASS_NAME, "origin").text == "AI-generated"
    assert browser.find_elements(By.CSS_SELECTOR, "#results script, #results b") == []
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text  # reading it raises when no alert is open
    assert browser.execute_script("return document.scripts.length") == 1  # only app.js


def test_picking_a_user_shows_history_and_recommends_with_an_empty_box(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    wait = _waiting(browser)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    Select(browser.find_element(By.ID, "user")).select_by_value("1")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history .hit")) == 3)
    history = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history .hit .title")]
    assert history == ["green wool hat", "trail running socks", "red running shoe"]  # newest first
    wait.until(lambda d: "for user 1" in d.find_element(By.CSS_SELECTOR, "#results .what").text)
    assert "recommendations" in browser.find_element(By.CSS_SELECTOR, "#results .what").text
    shown = {e.get_attribute("data-item-id") for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit")}
    assert shown and not shown & {"1", "3", "6"}  # the fake retriever skips history: it got the history


def test_side_by_side_shows_two_retrievers_for_the_same_request(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    wait = _waiting(browser)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    browser.find_element(By.ID, "compare").click()
    browser.find_element(By.ID, "q").send_keys("hat", Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .column")) == 2
               and all("hat" in e.text for e in d.find_elements(By.CSS_SELECTOR, "#results .what")))
    columns = browser.find_elements(By.CSS_SELECTOR, "#results .column")
    assert [c.get_attribute("data-retriever") for c in columns] == ["fake", "other"]
    for column in columns:
        assert column.find_element(By.CSS_SELECTOR, ".hit .title").text == "green wool hat"
