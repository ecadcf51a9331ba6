"""Saved reports over a real MariaDB and php -S: a user saves a history tab's filters, sort and chosen columns
under a name, lists, opens, exports (the tab's CSV), renames and deletes their own; bad input is refused with
a clear reason and changes nothing; nobody sees, opens, renames or deletes another user's report; a report
never shows more than its owner's role may see (a viewer cannot save one of an operator-only tab, and an
operator demoted to viewer can no longer open theirs).
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
import urllib.parse

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

from conftest import wait_for
from test_web_ui import browser, click, log_in, log_out, shot, text_of  # noqa: F401  (browser is a fixture)
from web_support import ACCOUNTS, WebClient, WebSite

T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    for i in range(12):
        site.add_row("snapshot_client_logs", "srv-a", {"id": i + 1, "client_id": f"a-{i % 3}", "ts": T0 + i, "level": "WARNING",
                                                       "logger": "agent.disk" if i % 2 else "agent.net"},
                     {"message": f"disk {i} almost full" if i % 2 else f"link {i} down"})
    site.add_row("snapshot_messages", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "direction": "out", "operator": "Otto",
                                                "status": "delivered", "status_ts": T0}, {"body": "hello"})
    yield site
    site.close()


@pytest.fixture(autouse=True)
def no_reports(site):
    site.admin_sql("DELETE FROM web_reports")
    site.admin_sql("DELETE FROM web_login_attempts")


def logged_in(site, name: str) -> WebClient:
    client = WebClient(site.base)
    assert client.login(name) == 303
    return client


def save(web: WebClient, name: str, tab: str = "logs", **params) -> tuple[int, str, str]:
    """POST /reports as the tab's 'Save as report' form does: (status, Location, body)."""
    form = {"csrf": web.csrf("/reports"), "name": name, "tab": tab, **params}
    status, headers, text = web.request("POST", "/reports", form)
    return status, headers.get("Location", ""), text


def report_id(location: str) -> str:
    match = re.fullmatch(r"/reports\?saved=(\d+)", location)
    assert match, location
    return match.group(1)


def csv_rows(client: WebClient, path: str) -> list[list[str]]:
    status, headers, text = client.request("GET", path)
    assert status == 200 and headers["Content-Type"].startswith("text/csv"), (path, status)
    return list(csv.reader(io.StringIO(text)))


def test_save_list_open_export_rename_delete(site):
    vera = logged_in(site, "vera")
    status, location, _ = save(vera, "Disk warnings", q="disk", sort="ts", dir="asc", per="25", cols="ts,client,message",
                               client="a-1", page="3")
    assert status == 303
    rid = report_id(location)
    status, _, text = vera.request("GET", "/reports")
    assert status == 200 and "Disk warnings" in text and f'data-report="{rid}"' in text
    status, headers, _ = vera.request("GET", f"/reports/open?id={rid}")
    assert status == 303
    opened = urllib.parse.urlsplit(headers["Location"])
    assert opened.path == "/logs"
    assert urllib.parse.parse_qs(opened.query) == {"q": ["disk"], "client": ["a-1"], "sort": ["ts"], "dir": ["asc"],
                                                   "per": ["25"], "cols": ["ts,client,message"]}  # never the page
    status, _, page = vera.request("GET", headers["Location"])
    heads = re.findall(r'<th scope="col" data-column="(\w+)"', page)
    assert status == 200 and heads == ["ts", "client", "message"]
    status, headers, _ = vera.request("GET", f"/reports/csv?id={rid}")
    assert status == 303 and headers["Location"].startswith("/logs.csv?")
    rows = csv_rows(vera, headers["Location"])
    assert rows[0] == ["Time", "Client", "Message"]
    assert [r[1:] for r in rows[1:]] == [["a-1", "disk 1 almost full"], ["a-1", "disk 7 almost full"]]
    # the same rows as the tab's own export asked with the same filters by hand
    assert rows == csv_rows(vera, "/logs.csv?q=disk&client=a-1&sort=ts&dir=asc&cols=ts,client,message")
    form = {"csrf": vera.csrf("/reports"), "id": rid, "name": "Disk warnings (a-1)"}
    assert vera.request("POST", "/reports/rename", form)[0] == 303
    assert site.admin_sql("SELECT name FROM web_reports WHERE id = %s", (rid,)) == (("Disk warnings (a-1)",),)
    assert vera.request("POST", "/reports/delete", {"csrf": vera.csrf("/reports"), "id": rid})[0] == 303
    assert site.admin_sql("SELECT COUNT(*) FROM web_reports") == ((0,),)
    assert vera.request("GET", f"/reports/open?id={rid}")[0] == 404


def test_a_tab_url_with_unknown_columns_shows_the_known_ones(site):
    status, _, page = logged_in(site, "vera").request("GET", "/logs?cols=level,bogus,ts")
    assert status == 200 and re.findall(r'<th scope="col" data-column="(\w+)"', page) == ["ts", "level"]


@pytest.mark.parametrize("name, tab, params, status, reason", [
    ("x" * 101, "logs", {}, 400, "at most 100 characters"),
    ("   ", "logs", {}, 400, "needs a name"),
    ("tab\there", "logs", {}, 400, "without control characters"),
    ("Cols", "logs", {"cols": "ts,password_hash"}, 400, 'no column "password_hash"'),
    ("Cols", "logs", {"cols[]": "bogus"}, 400, 'no column "bogus"'),  # as the column chooser's checkboxes send them
    ("Tab", "web_users", {}, 400, "from the Sessions, Security, Logs"),
    ("Chat", "messages", {}, 403, "may not see the Messages tab"),
    ("Files", "fileops", {"cols": "path"}, 403, "may not see the File Ops tab"),
])
def test_bad_input_is_refused_with_a_reason_and_nothing_changes(site, name, tab, params, status, reason):
    vera = logged_in(site, "vera")
    assert save(vera, "Mine")[0] == 303
    before = site.state()
    got, _, text = save(vera, name, tab, **params)
    assert (got, reason in html.unescape(text)) == (status, True), html.unescape(text)[-1500:]
    assert site.state() == before


def test_duplicate_names_are_refused_on_save_and_on_rename(site):
    otto = logged_in(site, "otto")
    first = report_id(save(otto, "Chats", "messages")[1])
    second = report_id(save(otto, "Chats 2", "messages")[1])
    before = site.state()
    status, _, text = save(otto, "Chats", "logs")
    assert status == 409 and 'You have a report named "Chats" already' in html.unescape(text)
    form = {"csrf": otto.csrf("/reports"), "id": second, "name": "Chats"}
    status, _, text = otto.request("POST", "/reports/rename", form)
    assert status == 409 and "already" in text
    form = {"csrf": otto.csrf("/reports"), "id": first, "name": "y" * 101}
    assert otto.request("POST", "/reports/rename", form)[0] == 400
    assert site.state() == before
    assert save(logged_in(site, "ada"), "Chats", "messages")[0] == 303  # names are per user


@pytest.mark.parametrize("owner, other", [(a, b) for a in ACCOUNTS for b in ACCOUNTS if a != b])
def test_nobody_sees_opens_renames_or_deletes_another_users_report(site, owner, other):
    rid = report_id(save(logged_in(site, owner), f"{owner}'s secret report")[1])
    stranger = logged_in(site, other)
    before = site.state()
    status, _, text = stranger.request("GET", "/reports")
    assert status == 200 and "secret report" not in text and f'data-report="{rid}"' not in text
    for path in (f"/reports/open?id={rid}", f"/reports/csv?id={rid}"):
        status, _, text = stranger.request("GET", path)
        assert status == 404 and "No such report of yours" in text, path
    for path, form in (("/reports/rename", {"id": rid, "name": "taken over"}), ("/reports/delete", {"id": rid})):
        status, _, text = stranger.request("POST", path, {"csrf": stranger.csrf("/reports"), **form})
        assert status == 404 and "No such report of yours" in text, path
    assert site.state() == before


@pytest.mark.parametrize("rid", ["", "0", "-1", "1e3", "99999999999999999999", "1 OR 1=1"])
def test_a_malformed_or_unknown_id_is_not_found(site, rid):
    vera = logged_in(site, "vera")
    assert vera.request("GET", "/reports/open?" + urllib.parse.urlencode({"id": rid}))[0] == 404
    assert vera.request("POST", "/reports/delete", {"csrf": vera.csrf("/reports"), "id": rid})[0] == 404


def test_a_user_has_at_most_200_reports(site):
    ((uid,),) = site.admin_sql("SELECT id FROM web_users WHERE username = 'vera'")
    fillers = [(uid, f"filler {i}") for i in range(199)]
    site.admin_sql("INSERT INTO web_reports (user_id, name, tab, params, created, updated) VALUES "
                   + ", ".join(["(%s, %s, 'logs', '{}', 0, 0)"] * len(fillers)), [v for pair in fillers for v in pair])
    vera = logged_in(site, "vera")
    assert save(vera, "the 200th")[0] == 303
    before = site.state()
    status, _, text = save(vera, "the 201st")
    assert status == 409 and "You have 200 saved reports already" in text
    assert site.state() == before


def test_a_demoted_users_report_of_an_operator_tab_no_longer_opens(site):
    otto = logged_in(site, "otto")
    rid = report_id(save(otto, "Chats", "messages", cols="ts,body")[1])
    assert otto.request("GET", f"/reports/open?id={rid}")[0] == 303
    site.admin_sql("UPDATE web_users SET role = 'viewer' WHERE username = 'otto'")
    try:
        for path in (f"/reports/open?id={rid}", f"/reports/csv?id={rid}"):
            status, _, text = otto.request("GET", path)
            assert status == 403 and "may not see the Messages tab" in text
        status, _, text = otto.request("GET", "/reports")
        assert status == 200 and "not for your role" in text and f"/reports/open?id={rid}" not in text
        assert otto.request("GET", "/messages.csv?cols=ts,body")[0] == 403  # nor does the tab's export itself
        form = {"csrf": otto.csrf("/reports"), "id": rid}
        assert otto.request("POST", "/reports/delete", form)[0] == 303  # but it can still be deleted
    finally:
        site.admin_sql("UPDATE web_users SET role = 'operator' WHERE username = 'otto'")


def shown(driver) -> tuple[list[str], list[list[str]]]:
    """The history table's column keys and its rows' cell texts."""
    heads = [th.get_attribute("data-column") for th in driver.find_elements(By.CSS_SELECTOR, "#history-table thead th")]
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in driver.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")]
    return heads, cells


def heads_now(driver) -> list[str]:
    """The history table's column keys now; [] while the page is being replaced (wait_for asks again)."""
    try:
        return shown(driver)[0]
    except StaleElementReferenceException:
        return []
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):  # Chromium's other word for a replaced page
            return []
        raise


def test_in_a_browser_save_a_report_see_it_open_it_export_it_delete_it_and_log_out(site, browser):
    log_in(browser, site.base, "vera")
    browser.get(site.base + "/logs?client=a-1&sort=ts&dir=asc&per=25&page=2")
    click(browser, browser.find_element(By.ID, "columns-menu"))
    for key in ("server", "level", "logger"):
        click(browser, browser.find_element(By.ID, f"col-{key}"))  # unchecked: not shown
    click(browser, browser.find_element(By.ID, "filter-apply"))
    wait_for(lambda: heads_now(browser) == ["ts", "client", "message"], 10, what="the chosen columns")
    heads, before = shown(browser)
    shot(browser, "web-logs-columns-dark.png")
    assert [row[1:] for row in before] == [["a-1", f"link {i} down" if i % 2 == 0 else f"disk {i} almost full"]
                                          for i in (1, 4, 7, 10)]
    browser.find_element(By.ID, "report-name").send_keys("Client a-1, short")
    click(browser, browser.find_element(By.ID, "report-save-button"))
    wait_for(lambda: browser.current_url.startswith(site.base + "/reports?saved=")
             and "Client a-1, short" in text_of(browser, "reports-table"), 10, what="the reports list")
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#reports-table tbody tr[data-report]")
    assert row.find_element(By.CSS_SELECTOR, ".ems-report-name").text == "Client a-1, short"
    assert "columns ts, client, message" in row.text and "table-success" in row.get_attribute("class")
    ((params,),) = site.admin_sql("SELECT params FROM web_reports")
    assert json.loads(params) == {"q": "", "server": "", "client": "a-1", "sort": "ts", "dir": "asc", "per": "25",
                                  "cols": "ts,client,message"}  # the page size kept, the page not
    shot(browser, "web-reports-dark.png")
    csv_link = row.find_element(By.CSS_SELECTOR, ".ems-report-csv").get_attribute("href")
    click(browser, row.find_element(By.CSS_SELECTOR, ".ems-report-open"))
    wait_for(lambda: browser.current_url.startswith(site.base + "/logs?") and heads_now(browser) == heads, 10,
             what="the opened report")
    assert shown(browser) == (heads, before)
    # its CSV, fetched with the browser's session: the same rows as the table (times in UTC ISO form there)
    web = WebClient(site.base)
    web.cookies["ems_web"] = browser.get_cookie("ems_web")["value"]
    status, headers, _ = web.request("GET", csv_link.removeprefix(site.base))
    assert status == 303
    rows = csv_rows(web, headers["Location"])
    assert rows[0] == ["Time", "Client", "Message"] and [r[1:] for r in rows[1:]] == [b[1:] for b in before]
    assert [r[0] for r in rows[1:]] == [f"2026-05-28T20:26:{40 + i}Z" for i in (1, 4, 7, 10)]  # T0 + i
    browser.get(site.base + "/reports")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#reports-table .ems-report-delete button"))
    wait_for(lambda: "No saved reports yet" in text_of(browser, "reports-table"), 10, what="the deletion")
    assert site.admin_sql("SELECT COUNT(*) FROM web_reports") == ((0,),)
    log_out(browser, site.base)
    browser.get(site.base + "/reports")
    assert browser.current_url == site.base + "/login"
