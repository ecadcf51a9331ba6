"""The web UI's history tabs (Sessions, Security, Logs, File Ops, Messages, Captures) over a real MariaDB and
php -S: paging, filters, allowlisted sorting, CSV export (formula cells neutralised), sealed fields opened in PHP
only for the roles the broker lets read them, and hostile log lines, chat text and file names shown as text
in a real headless Chromium.
"""
from __future__ import annotations

import csv
import html
import io
import json
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from broker.core.permissions import HISTORY_READERS
from test_web_ui import browser, log_in, shot  # noqa: F401  (browser is a fixture)
from web_support import WebClient, WebSite
from sync.web_crypto import WebKey, aad_for, key_path

XSS_LOG = '<script>alert("log")</script>'
XSS_CHAT = '<img src=x onerror=alert("chat")>'
XSS_FILE = '/home/alice/<svg onload=alert("file")>.txt'
FORMULA_LOG = '=HYPERLINK("http://evil.example","click")'
FORMULA_CHAT = "@SUM(1+1)*cmd|' /C calc'!A0"
SECRET_CHAT = "the payroll numbers are attached"
TAB_ROLES = {"sessions": "viewer", "security": "viewer", "logs": "viewer", "fileops": "operator",
             "messages": "operator", "captures": "operator"}
T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    site.add_server("srv-b", "Branch Lyon")
    for i in range(30):
        site.add_row("snapshot_sessions", "srv-a", {"id": i + 1, "client_id": f"a-{i % 3}", "started": T0 + i * 60,
                                                    "ended": T0 + i * 60 + 30, "logged_in_user": f"user{i:02d}", "end_reason": "logout"})
    site.add_row("snapshot_sessions", "srv-b", {"id": 1, "client_id": "b-0", "started": T0, "logged_in_user": "lyon"})
    logs = [XSS_LOG, FORMULA_LOG, "disk almost full"]
    for i, message in enumerate(logs):
        site.add_row("snapshot_client_logs", "srv-a", {"id": i + 1, "client_id": "a-0", "ts": T0 + i, "level": "WARNING",
                                                       "logger": "agent.disk"}, {"message": message})
    site.add_row("snapshot_messages", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "direction": "out", "operator": "Otto",
                                                "status": "delivered", "status_ts": T0}, {"body": XSS_CHAT})
    site.add_row("snapshot_messages", "srv-a", {"id": 2, "client_id": "a-1", "ts": T0 + 1, "direction": "in", "operator": "Otto",
                                                "status": "delivered", "status_ts": T0}, {"body": FORMULA_CHAT})
    site.add_row("snapshot_messages", "srv-b", {"id": 3, "client_id": "b-0", "ts": T0 + 2, "direction": "out", "operator": "Otto",
                                                "status": "sent", "status_ts": T0}, {"body": SECRET_CHAT})
    site.add_row("snapshot_fileops", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "operator": "Otto", "op": "download",
                                               "size": 12, "ok": 0}, {"path": XSS_FILE, "error": "+permission denied"})
    site.add_row("snapshot_security", "srv-b", {"id": 1, "origin": "broker", "subject": "b-0", "ts": T0, "event": "auth.refused",
                                                "severity": "warning", "detail": json.dumps({"peer": XSS_LOG})})
    site.add_row("snapshot_captures", "srv-a", {"id": 1, "client_id": "a-0", "ts": T0, "width": 1280, "height": 800,
                                                "format": "jpeg", "quality": 70, "operator": "Otto"})
    yield site
    site.close()


def logged_in(site, name: str, *reasons_for: str) -> WebClient:
    """A logged-in client; ``reasons_for``: audited tabs it first gives a reason for (test_web_history_gate.py)."""
    client = WebClient(site.base)
    assert client.login(name) == 303
    for tab in reasons_for:
        status, _, _ = client.request("POST", "/history/grant", {"csrf": client.csrf("/clients"), "tab": tab,
                                                                  "reason": "test: read the seeded history"})
        assert status == 303, tab
    return client


def php_tabs() -> dict:
    root = Path(__file__).resolve().parents[1] / "web" / "src"
    code = f"require '{root}/bootstrap.php'; echo json_encode(Ems\\Web\\HistoryTabs::TABS);"
    return json.loads(subprocess.run(["php", "-r", code], capture_output=True, text=True, check=True).stdout)


def table_text(page: str) -> str:
    return page[page.index('id="history-table"'):]


def csv_rows(client: WebClient, path: str) -> list[list[str]]:
    status, headers, text = client.request("GET", path)
    assert status == 200 and headers["Content-Type"].startswith("text/csv"), (path, status, text[:300])
    assert headers["Content-Disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(text)))


def test_each_tab_needs_the_role_the_broker_needs_to_read_its_history():
    kinds = {"sessions": "sessions", "security": "security", "logs": "logs", "fileops": "fileops",
             "messages": "messages", "captures": "captures"}
    tabs = php_tabs()
    assert {name: tab["role"] for name, tab in tabs.items()} == TAB_ROLES
    for name, kind in kinds.items():
        assert ("viewer" in HISTORY_READERS[kind]) == (TAB_ROLES[name] == "viewer"), name
        for key, (_, _, how) in tabs[name]["columns"].items():
            if how.startswith("sealed:"):  # a sealed field never opens for less than its tab's readers
                assert {"viewer": 1, "operator": 2, "admin": 3}[how[7:]] >= {"viewer": 1, "operator": 2}[TAB_ROLES[name]]


def test_a_viewer_never_gets_chat_text_file_paths_or_captures(site):
    vera = logged_in(site, "vera")
    status, _, page = vera.request("GET", "/sessions")
    assert status == 200
    for name in ("fileops", "messages", "captures"):
        assert f'href="/{name}"' not in page  # not in the menu
        for path in (f"/{name}", f"/{name}.csv", f"/{name}.csv?sort=body&q=payroll"):
            status, headers, text = vera.request("GET", path)
            assert status == 403 and "may not do this" in text, path
            assert headers["Content-Type"].startswith("text/html")
            for secret in (SECRET_CHAT, html.escape(XSS_CHAT), "alert(&quot;file", "permission denied"):
                assert secret not in text
    status, _, page = vera.request("GET", "/logs")  # log lines: every role that may read the logs history
    assert status == 200 and html.escape(XSS_LOG, quote=True).replace("&#x27;", "&#039;") in page


def test_an_operator_sees_sealed_fields_opened_and_escaped(site):
    otto = logged_in(site, "otto", "messages", "fileops")
    escape = lambda text: html.escape(text, quote=True).replace("&#x27;", "&#039;")  # noqa: E731
    status, _, page = otto.request("GET", "/messages")
    assert status == 200 and escape(XSS_CHAT) in page and SECRET_CHAT in page and XSS_CHAT not in page
    status, _, page = otto.request("GET", "/fileops")
    assert status == 200 and escape(XSS_FILE) in page and XSS_FILE not in page and "+permission denied" in page
    status, _, page = otto.request("GET", "/logs")
    assert status == 200 and escape(XSS_LOG) in page and "<script>alert" not in page
    status, _, page = otto.request("GET", "/security")
    assert status == 200 and "auth.refused" in page and "<script>alert" not in table_text(page)


def test_a_value_sealed_for_another_row_or_key_does_not_open(site):
    moved = WebKey.load_or_create(key_path(site.root)).seal("moved here", aad_for("snapshot_messages", "body", "srv-a", 1))
    strange = WebKey(b"k" * 32).seal("other key", aad_for("snapshot_messages", "body", "srv-a", 11))
    for row_id, blob in ((10, moved), (11, strange)):
        with site.writer() as conn, conn.cursor() as cursor:
            cursor.execute("INSERT INTO snapshot_messages (server_id, id, client_id, ts, direction, body, status, status_ts) "
                           "VALUES ('srv-a', %s, 'a-9', %s, 'out', %s, 'sent', 0)", (row_id, T0, blob))
    try:
        status, _, page = logged_in(site, "otto", "messages").request("GET", "/messages?client=a-9")
        assert status == 200 and "moved here" not in page and "other key" not in page
        assert page.count("[sealed value could not be opened]") == 2
    finally:
        site.admin_sql("DELETE FROM snapshot_messages WHERE client_id = 'a-9'")


def test_paging_and_the_server_client_and_text_filters(site):
    vera = logged_in(site, "vera")
    _, _, page = vera.request("GET", "/sessions?per=25")
    assert "31 rows · page 1 of 2" in page
    _, _, page = vera.request("GET", "/sessions?per=25&page=2")
    assert "page 2 of 2" in page and table_text(page).count("<tr>") == 1 + 6  # the header and 6 rows
    _, _, page = vera.request("GET", "/sessions?server=srv-b")
    assert "1 rows" in page and "lyon" in table_text(page)
    _, _, page = vera.request("GET", "/sessions?client=a-1")
    assert "10 rows" in page
    _, _, page = vera.request("GET", "/sessions?q=user2")
    assert "10 rows" in page
    _, _, page = vera.request("GET", "/sessions?sort=started&dir=asc&per=25")
    text = table_text(page)
    assert text.index("user00") < text.index("user01")


@pytest.mark.parametrize("tab", sorted(TAB_ROLES))
def test_sort_and_filter_parameters_outside_the_allowlist_are_ignored(site, tab):
    ada = logged_in(site, "ada", *(["messages", "fileops", "captures"] if TAB_ROLES[tab] == "operator" else []))
    default = php_tabs()[tab]["sort"]
    for query in ["sort=body", "sort=message", "sort=path", "sort=t.id;DROP TABLE servers", "sort[]=x", "dir=sideways",
                  "per=100000", "page=-3", "q[]=x", "server[]=x", "sort=(SELECT SLEEP(5))", "sort=row_id"]:
        status, _, page = ada.request("GET", f"/{tab}?" + urllib.parse.quote(query, safe="=&"))
        assert status == 200 and 'id="history-table"' in page, query
        assert f'class="ems-sort active" data-sort="{default}"' in page, query
        assert f'<option value="50" selected>' in page
        status, _, _ = ada.request("GET", f"/{tab}.csv?" + urllib.parse.quote(query, safe="=&"))
        assert status == 200, query
    _, _, page = ada.request("GET", f"/{tab}?" + urllib.parse.urlencode({"client": "' OR 1=1 -- ", "server": "x' OR '1'='1"}))
    assert "0 rows" in page
    assert site.admin_sql("SELECT COUNT(*) FROM servers") == ((2,),)


def test_csv_export_has_the_same_filters_opens_sealed_fields_and_neutralises_formulas(site):
    otto = logged_in(site, "otto", "messages", "fileops")
    before = site.state()
    rows = csv_rows(otto, "/logs.csv?sort=ts&dir=asc&page=7&per=25")
    assert rows[0] == ["Time", "Server", "Client", "Level", "Logger", "Message"]
    assert [row[5] for row in rows[1:]] == [XSS_LOG, "'" + FORMULA_LOG, "disk almost full"]
    assert rows[1][0] == "2026-05-28T20:26:40Z" and rows[1][1] == "Head office"
    rows = csv_rows(otto, "/messages.csv?server=srv-a&sort=ts&dir=asc")
    assert [row[5] for row in rows[1:]] == [XSS_CHAT, "'" + FORMULA_CHAT]
    rows = csv_rows(otto, "/fileops.csv")
    assert rows[1][5] == XSS_FILE and rows[1][8] == "'+permission denied"
    assert len(csv_rows(otto, "/sessions.csv?client=a-2")) == 1 + 10
    assert site.state() == before  # an export changes nothing


def test_hostile_log_lines_chat_text_and_file_names_show_as_text_in_a_browser(site, browser):  # noqa: F811
    logged_in(site, "otto", "messages", "fileops")  # a grant is the person's, whichever session gave the reason
    log_in(browser, site.base, "otto")
    for tab, column, text in (("logs", "message", XSS_LOG), ("messages", "body", XSS_CHAT), ("fileops", "path", XSS_FILE)):
        browser.get(f"{site.base}/{tab}?sort=ts&dir=asc")
        cells = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"#history-table td.ems-col-{column}")]
        assert text in cells, (tab, cells)
        assert browser.find_elements(By.CSS_SELECTOR, "#history-table img, #history-table svg, #history-table script") == []
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text
        if tab in ("logs", "messages"):
            shot(browser, f"web-{tab}-dark.png")
    nav = {link.text for link in browser.find_elements(By.CSS_SELECTOR, ".ems-nav .nav-link")}
    assert {"Clients", "Sessions", "Security", "Logs", "File Ops", "Messages", "Captures"} <= nav
