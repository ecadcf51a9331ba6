"""Keyboard shortcuts and a client row's context actions in a real headless Chromium over php -S and MariaDB:
"?" opens the list of shortcuts and Esc closes it, "g s" goes to the Servers tab, "/" focuses the filter,
typing in a field triggers nothing; j/k choose a row and Enter opens its actions menu, right-click does too;
the menu jumps to that client's history filtered by it, and (operators) to its row on the Servers tab.
"""
from __future__ import annotations

import urllib.parse

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import wait_for
from test_web_ui import browser, click, log_in, shot  # noqa: F401  (browser is a fixture)
from web_support import WebSite

T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    for i in range(3):
        site.add_client("srv-a", f"a-{i}", f"desk-{i}", user=f"user{i}")
    for i in range(9):
        site.add_row("snapshot_client_logs", "srv-a", {"id": i + 1, "client_id": f"a-{i % 3}", "ts": T0 + i, "level": "INFO",
                                                       "logger": "agent"}, {"message": f"line {i}"})
        site.add_row("snapshot_sessions", "srv-a", {"id": i + 1, "client_id": f"a-{i % 3}", "started": T0 + i,
                                                    "logged_in_user": f"user{i % 3}"})
    yield site
    site.close()


def press(driver, *keys: str) -> None:
    """Keys as a user types them, to whatever has the focus."""
    ActionChains(driver).send_keys(*keys).perform()


def dialog_open(driver) -> bool:
    return "show" in (driver.find_element(By.ID, "keys-dialog").get_attribute("class") or "")


def at(driver, wanted: str) -> bool:
    """Whether the page at ``wanted`` (a path) is loaded and its scripts ran; False while it is being replaced."""
    try:
        return (urllib.parse.urlsplit(driver.current_url).path == wanted
                and driver.execute_script("return document.readyState") == "complete")
    except WebDriverException:
        return False


def test_help_opens_with_a_question_mark_shortcuts_navigate_and_typing_does_not_trigger_them(site, browser):
    log_in(browser, site.base, "vera")
    browser.get(site.base + "/clients")
    press(browser, "?")
    wait_for(lambda: dialog_open(browser) and browser.find_element(By.ID, "keys-list").is_displayed(), 10, what="the help")
    listed = [tr.get_attribute("data-keys") for tr in browser.find_elements(By.CSS_SELECTOR, "#keys-list tr")]
    assert {"g c", "g s", "g l", "g r", "/", "j / k", "Enter", "?", "Esc"} <= set(listed)
    assert "g m" not in listed and "g u" not in listed  # a viewer has no Messages or Users tab
    shot(browser, "web-keys-dark.png")
    press(browser, Keys.ESCAPE)
    wait_for(lambda: not dialog_open(browser), 10, what="the help closed")

    press(browser, "/")
    wait_for(lambda: browser.switch_to.active_element.get_attribute("id") == "filter-q", 10, what="the filter focused")
    press(browser, "g", "s", "?", "j")  # typed into the filter: text, not shortcuts
    assert browser.find_element(By.ID, "filter-q").get_attribute("value") == "gs?j"
    assert at(browser, "/clients") and not dialog_open(browser)
    press(browser, Keys.ESCAPE, "g", "s")  # Esc leaves the field; now they are shortcuts
    wait_for(lambda: at(browser, "/servers"), 10, what="g s: the Servers tab")
    press(browser, "g", "m")  # a tab this role does not have: nothing happens
    press(browser, "g", "l")
    wait_for(lambda: at(browser, "/logs"), 10, what="g l: the Logs tab")


def open_row_menu(driver, index: int) -> None:
    """Choose the client row with j presses (index + 1 of them) and open its menu with Enter."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    press(driver, *(["j"] * (index + 1)))
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#clients-table tbody tr.ems-current")) == 1, 10, what="a row")
    press(driver, Keys.ENTER)


def visible_menu(driver):
    menus = [m for m in driver.find_elements(By.CSS_SELECTOR, "#clients-table .dropdown-menu.show")]
    return menus[0] if len(menus) == 1 else None


def test_a_row_menu_jumps_to_the_clients_history_filtered_by_it(site, browser):
    log_in(browser, site.base, "vera")
    browser.get(site.base + "/clients?sort=host")
    open_row_menu(browser, 1)
    wait_for(lambda: visible_menu(browser) is not None, 10, what="the row menu")
    menu = visible_menu(browser)
    assert menu.find_element(By.CSS_SELECTOR, ".dropdown-header").text == "desk-1"
    jumps = [a.get_attribute("data-jump") for a in menu.find_elements(By.CSS_SELECTOR, ".dropdown-item")]
    assert jumps == ["sessions", "logs"]  # a viewer: no captures, messages, file ops or Servers actions
    assert browser.switch_to.active_element.get_attribute("data-jump") == "sessions"  # the keyboard is in the menu
    shot(browser, "web-row-menu-dark.png")
    press(browser, Keys.ARROW_DOWN, Keys.ENTER)
    wait_for(lambda: at(browser, "/logs"), 10, what="the client's logs")
    assert browser.find_element(By.ID, "filter-client").get_attribute("value") == "a-1"
    clients = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#history-table td.ems-col-client")]
    assert clients == ["a-1"] * 3


def test_right_click_gives_an_operator_the_servers_tab_actions_for_the_client(site, browser):
    log_in(browser, site.base, "otto")
    browser.get(site.base + "/clients?sort=host")
    row = browser.find_elements(By.CSS_SELECTOR, "#clients-table tbody tr")[2]
    ActionChains(browser).context_click(row).perform()
    wait_for(lambda: visible_menu(browser) is not None, 10, what="the row menu on right-click")
    menu = visible_menu(browser)
    jumps = [a.get_attribute("data-jump") for a in menu.find_elements(By.CSS_SELECTOR, ".dropdown-item")]
    assert jumps == ["sessions", "logs", "captures", "messages", "fileops", "servers"]
    click(browser, menu.find_element(By.CSS_SELECTOR, '[data-jump="servers"]'))
    wait_for(lambda: at(browser, "/servers"), 10, what="the Servers tab")
    marked = browser.find_elements(By.CSS_SELECTOR, "tr.ems-marked")
    assert [m.get_attribute("data-client") for m in marked] == ["a-2"]
    press(browser, "g", "c")
    wait_for(lambda: at(browser, "/clients"), 10, what="g c: the Clients tab")
    browser.find_elements(By.CSS_SELECTOR, "#clients-table tbody tr")[0].find_element(By.CSS_SELECTOR, ".ems-row-menu").click()
    wait_for(lambda: visible_menu(browser) is not None, 10, what="the menu from its button")
    click(browser, visible_menu(browser).find_element(By.CSS_SELECTOR, '[data-jump="sessions"]'))
    wait_for(lambda: at(browser, "/sessions"), 10, what="the client's sessions")
    assert {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#history-table td.ems-col-client")} == {"a-0"}
