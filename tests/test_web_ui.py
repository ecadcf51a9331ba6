"""The web UI in a real headless Chromium (Selenium) over a real php -S and MariaDB: log in, every
server's clients, sorting, filtering, paging, the theme switch, an escaped hostile hostname, log out.
Screenshots of the login page and the Clients tab, dark and light, go to ``$EMS_SCREENSHOT_DIR``
(``make screenshots``: docs/screenshots) and nowhere else.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import wait_for
from web_support import PASSWORD, WebSite

SHOTS_ENV = "EMS_SCREENSHOT_DIR"
HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,800")


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    site.add_server("srv-b", "Branch Lyon")
    for i in range(34):
        site.add_client("srv-a", f"a-{i:02d}", f"office-pc-{i:02d}", online=i % 3 != 0, cpu=float(i * 2), memory=30.0 + i,
                        disk=20.0 + i * 2, user=f"user{i:02d}")
    for i in range(25):
        site.add_client("srv-b", f"b-{i:02d}", f"lyon-laptop-{i:02d}", online=i % 2 == 0, cpu=float(90 - i), memory=60.0,
                        disk=95.0 if i == 0 else 40.0, user=f"lyon{i:02d}", os_name="Windows")
    site.add_client("srv-b", "b-hostile", HOSTILE, cpu=None)
    yield site
    site.close()


@pytest.fixture
def browser(tmp_path):
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors (CSP violations) are readable
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> None:
    target = os.environ.get(SHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / name))


def text_of(driver, element_id: str) -> str:
    """An element's text now; '' while the page is being replaced (wait_for polls again)."""
    try:
        return driver.find_element(By.ID, element_id).text
    except (StaleElementReferenceException, NoSuchElementException):
        return ""
    except WebDriverException as exc:
        if _replaced(exc):
            return ""
        raise


def sort_by(driver, key: str, arrow: str) -> None:
    """Click a column header and wait for the page sorted that way (its arrow on the header)."""
    driver.find_element(By.CSS_SELECTOR, f'a.ems-sort[data-sort="{key}"]').click()
    script = f"var a = document.querySelector('a.ems-sort.active[data-sort=\"{key}\"]'); return a ? a.textContent : '';"
    wait_for(lambda: driver.execute_script(script).endswith(arrow), 10, what=f"sorted by {key} {arrow}")


def rows(driver) -> list[list[str]]:
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "#clients-table tbody tr")]


def log_in(driver, base: str, name: str, password: str = PASSWORD) -> None:
    """Fill in the login form and wait for the answer: the Clients tab, or the form again with an error."""
    driver.get(base + "/login")
    form = driver.find_element(By.ID, "login-form")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    wait_for(lambda: not _attached(form), 10, what="the login's answer")


def _attached(element) -> bool:
    """Whether ``element`` is still in the page (a new page detaches it; Chromium says so in two ways)."""
    try:
        element.is_enabled()
        return True
    except StaleElementReferenceException:
        return False
    except WebDriverException as exc:
        if _replaced(exc):
            return False
        raise


def _replaced(exc: Exception) -> bool:
    """Chromium's other way of saying an element's page was replaced (not a StaleElementReferenceException)."""
    return "does not belong to the document" in str(exc)


def click(driver, element) -> None:
    """A real click, on an element scrolled to the middle of the window first (at once: Bootstrap scrolls smoothly)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    element.click()


def log_out(driver, base: str) -> None:
    driver.find_element(By.ID, "logout").click()
    wait_for(lambda: driver.current_url == base + "/login" and text_of(driver, "login") != "", 10, what="the login page")


def switch_theme(driver, expected: str) -> None:
    driver.find_element(By.ID, "theme-switch").click()
    wait_for(lambda: driver.execute_script("return document.documentElement.dataset.bsTheme") == expected
             and text_of(driver, "theme-switch") != "", 10, what=f"the {expected} theme")


def test_log_in_see_both_servers_sort_filter_page_and_log_out(site, browser):
    browser.get(site.base + "/clients")
    assert browser.current_url == site.base + "/login"  # not logged in: sent to the login page
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("data-bs-theme") == "dark"
    shot(browser, "web-login-dark.png")
    log_in(browser, site.base, "vera", "wrong password")
    assert "Wrong user name or password" in browser.find_element(By.ID, "login-error").text
    log_in(browser, site.base, "vera")
    assert browser.current_url.startswith(site.base + "/clients")
    assert "Vera Viewer" in browser.find_element(By.ID, "whoami").text
    assert "60 clients · page 1 of 2" in text_of(browser, "clients-count")
    assert {row[0] for row in rows(browser)} == {"Head office", "Branch Lyon"}

    sort_by(browser, "cpu", "▲")
    sort_by(browser, "cpu", "▼")  # again: descending
    top = rows(browser)[0]
    assert top[1] == "lyon-laptop-00" and top[6].endswith("90 %")
    shot(browser, "web-clients-dark.png")

    Select(browser.find_element(By.ID, "filter-per")).select_by_value("25")
    wait_for(lambda: "page 1 of 3" in text_of(browser, "clients-count"), 10, what="25 a page")
    assert len(rows(browser)) == 25 and rows(browser)[-1][1] == "office-pc-33"  # cpu 66 ties with lyon-laptop-24: srv-a first
    click(browser, browser.find_element(By.ID, "page-next"))
    wait_for(lambda: "page 2 of 3" in text_of(browser, "clients-count"), 10, what="page 2")
    assert rows(browser)[0][1] == "lyon-laptop-24"

    browser.find_element(By.ID, "filter-q").clear()
    browser.find_element(By.ID, "filter-q").send_keys("lyon-laptop-1")
    browser.find_element(By.ID, "filter-apply").click()
    wait_for(lambda: "10 clients" in text_of(browser, "clients-count"), 10, what="the filter")
    assert {row[1] for row in rows(browser)} == {f"lyon-laptop-1{i}" for i in range(10)}
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("offline")
    wait_for(lambda: "5 clients" in text_of(browser, "clients-count"), 10, what="offline only")
    assert all(row[5] == "offline" for row in rows(browser))

    switch_theme(browser, "light")
    assert "5 clients" in text_of(browser, "clients-count")  # the switch came back to the same view
    browser.get(site.base + "/clients?sort=cpu&dir=desc")
    shot(browser, "web-clients-light.png")
    log_out(browser, site.base)
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("data-bs-theme") == "light"
    shot(browser, "web-login-light.png")
    browser.get(site.base + "/clients")
    assert browser.current_url == site.base + "/login"


def test_a_hostile_hostname_is_shown_as_text(site, browser):
    log_in(browser, site.base, "vera")
    browser.get(site.base + "/clients?q=b-hostile")
    (row,) = rows(browser)
    assert row[1] == HOSTILE
    assert browser.find_elements(By.CSS_SELECTOR, "#clients-table img") == []
    assert browser.title != "pwned"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text


def test_a_viewer_sees_no_users_tab_and_is_refused_the_page(site, browser):
    log_in(browser, site.base, "vera")
    assert browser.find_elements(By.LINK_TEXT, "Users") == []
    browser.get(site.base + "/users")
    assert "may not do this" in browser.find_element(By.ID, "error-message").text
    log_out(browser, site.base)
    log_in(browser, site.base, "ada")
    browser.find_element(By.LINK_TEXT, "Users").click()
    wait_for(lambda: "Ada Admin" in text_of(browser, "users-table"), 10, what="the users page")
