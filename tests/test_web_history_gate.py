"""Audited history in the web (File Ops, Messages, Captures): no rows and no export without a reason given
in a POST; the grant is for that person and tab, for a limited time; every grant is in the web's audit
naming the person, the tab, the filters and the reason, and in the bus audit trail through the admin API
when one is configured. Real MariaDB, php -S, broker, persister and admin API listener.
"""
from __future__ import annotations

import json
import time

import pytest
from selenium.webdriver.common.by import By

from conftest import wait_for
from test_web_ui import browser, log_in, shot  # noqa: F401  (browser is a fixture)
from test_admin_http import TOKEN, Admin
from test_persister_bus import RunningPersister
from web_support import WebClient, WebSite

SECRET_CHAT = "the payroll numbers are attached"
SECRET_PATH = "/home/alice/contract-draft.odt"
REASON = "ticket 4711: the user asked about a lost message"
T0 = 1_780_000_000.0


def seed(site: WebSite) -> None:
    site.add_server("srv-a", "Head office")
    site.add_row("snapshot_messages", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "direction": "out", "operator": "Otto",
                                                "status": "delivered", "status_ts": T0}, {"body": SECRET_CHAT})
    site.add_row("snapshot_fileops", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "operator": "Otto", "op": "download",
                                               "size": 12, "ok": 1}, {"path": SECRET_PATH})
    site.add_row("snapshot_client_logs", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "level": "INFO", "logger": "agent"},
                 {"message": "plain log line"})


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    seed(site)
    yield site
    site.close()


@pytest.fixture(autouse=True)
def no_grants(site):
    site.admin_sql("DELETE FROM web_history_grants")


def logged_in(site, name: str) -> WebClient:
    client = WebClient(site.base)
    assert client.login(name) == 303
    return client


def give_reason(web: WebClient, tab: str, reason: str = REASON, **filters) -> tuple[int, dict, str]:
    token = web.csrf(f"/{tab}")
    return web.request("POST", "/history/grant", {"csrf": token, "tab": tab, "reason": reason, **filters})


def audit_rows(site) -> list[dict]:
    rows = site.admin_sql("SELECT username, display_name, action, filters, reason, bus_audit, until_ts - ts FROM web_audit ORDER BY id")
    keys = ("username", "display_name", "action", "filters", "reason", "bus_audit", "grant_s")
    return [dict(zip(keys, row)) for row in rows]


def test_without_a_grant_an_audited_tab_asks_why_and_shows_no_rows(site):
    otto = logged_in(site, "otto")
    before = site.state()
    for tab, secret in (("messages", SECRET_CHAT), ("fileops", SECRET_PATH)):
        status, _, page = otto.request("GET", f"/{tab}?client=a-0&q=pay")
        assert status == 200 and 'id="history-reason-form"' in page and 'id="history-table"' not in page
        assert secret not in page
        assert 'name="client" value="a-0"' in page and 'name="q" value="pay"' in page  # the filters go with the reason
        assert 'name="server"' not in page  # only the filters set
        status, _, text = otto.request("GET", f"/{tab}.csv")
        assert status == 403 and "give your reason first" in text and secret not in text
    status, _, page = otto.request("GET", "/captures")
    assert status == 200 and 'id="history-reason-form"' in page
    status, _, page = otto.request("GET", "/logs")  # not audited history: no reason asked
    assert status == 200 and 'id="history-table"' in page and "plain log line" in page
    assert site.state() == before  # asking changed nothing


def test_a_reason_opens_the_tab_for_that_person_and_the_record_names_them(site):
    before = len(audit_rows(site))
    otto = logged_in(site, "otto")
    status, headers, _ = give_reason(otto, "messages", client="a-0")
    assert status == 303 and headers["Location"] == "/messages?client=a-0"
    status, _, page = otto.request("GET", "/messages?client=a-0")
    assert status == 200 and SECRET_CHAT in page and 'id="history-grant"' in page and REASON in page
    status, headers, text = otto.request("GET", "/messages.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv") and SECRET_CHAT in text
    record = audit_rows(site)[before:]
    assert record == [{"username": "otto", "display_name": "Otto Operator", "action": "history.messages",
                       "filters": json.dumps({"client": "a-0"}, separators=(",", ":")), "reason": REASON,
                       "bus_audit": "no admin API configured", "grant_s": pytest.approx(900.0)}]
    # the grant is for that tab and that person only
    status, _, page = otto.request("GET", "/fileops")
    assert 'id="history-reason-form"' in page and SECRET_PATH not in page
    status, _, page = logged_in(site, "ada").request("GET", "/messages")
    assert 'id="history-reason-form"' in page and SECRET_CHAT not in page


def test_an_expired_grant_asks_again(site):
    otto = logged_in(site, "otto")
    assert give_reason(otto, "fileops")[0] == 303
    assert SECRET_PATH in otto.request("GET", "/fileops")[2]
    site.admin_sql("UPDATE web_history_grants SET expires = %s", (time.time() - 1,))
    status, _, page = otto.request("GET", "/fileops")
    assert status == 200 and 'id="history-reason-form"' in page and SECRET_PATH not in page
    assert otto.request("GET", "/fileops.csv")[0] == 403


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_no_reason_no_grant(site, reason):
    before = len(audit_rows(site))
    otto = logged_in(site, "otto")
    status, _, page = give_reason(otto, "messages", reason)
    assert status == 422 and 'id="history-reason-error"' in page and SECRET_CHAT not in page
    assert len(audit_rows(site)) == before
    assert 'id="history-reason-form"' in otto.request("GET", "/messages")[2]


def test_only_audited_tabs_and_only_their_roles_take_a_grant(site):
    vera, otto = logged_in(site, "vera"), logged_in(site, "otto")
    before = site.state()
    assert give_reason(vera, "messages")[0] == 403  # a viewer may not read chat at all
    for tab in ("logs", "users", "../messages", ""):
        status, _, _ = otto.request("POST", "/history/grant", {"csrf": otto.csrf("/clients"), "tab": tab, "reason": REASON})
        assert status == 403, tab
    assert site.state() == before


def test_in_a_browser_the_reason_form_opens_the_tab(site, browser):  # noqa: F811
    log_in(browser, site.base, "otto")
    browser.get(site.base + "/messages?client=a-0")
    assert not browser.find_elements(By.ID, "history-table")
    shot(browser, "web-reason-dark.png")
    browser.find_element(By.ID, "history-reason").send_keys(REASON)
    browser.find_element(By.ID, "history-reason-submit").click()
    wait_for(lambda: browser.find_elements(By.ID, "history-table"), 10, what="the Messages tab's rows")
    assert browser.current_url.endswith("/messages?client=a-0")
    assert SECRET_CHAT in browser.find_element(By.ID, "history-table").text
    assert REASON in browser.find_element(By.ID, "history-grant").text


def test_a_grant_is_forwarded_to_the_bus_audit_in_the_persons_name(bus, mysql_admin_url, tmp_path):
    """With the admin API configured, the bus audit trail gets history.<tab> with the person and the reason."""
    persister = RunningPersister(bus, tmp_path)
    admin = Admin(bus)
    site = WebSite(mysql_admin_url, tmp_path / "web", admin_api=(f"http://127.0.0.1:{admin.http.port}", TOKEN))
    try:
        seed(site)
        otto = logged_in(site, "otto")
        assert give_reason(otto, "messages", client="a-0", q="payroll")[0] == 303
        assert SECRET_CHAT in otto.request("GET", "/messages")[2]

        def bus_audit():
            rows = bus.admin.request("store.query", kind="audit", limit=100)
            return [r for r in rows if r["action"] == "history.messages"]

        detail = wait_for(bus_audit, 15, interval_s=0.1, what="the bus audit row")[0]["detail"]
        assert (detail["operator_name"], detail["via"], detail["reason"]) == ("Otto Operator", "admin-http", REASON)
        assert detail["client_id"] == "a-0" and detail["text"] == "payroll"
        assert audit_rows(site)[-1]["bus_audit"] == "recorded as Otto Operator"
    finally:
        site.close()
        admin.close()
        persister.stop()
