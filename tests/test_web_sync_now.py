""""Sync This Server" end to end: a real bus with a persister, a real sync worker writing into the web UI's
MariaDB, the admin HTTP API, php -S and a headless Chromium. Log rows that went missing from MySQL (as after
a restore or a hand edit; they never change in the store, so incremental sync has nothing to bring them
back with) come back when an operator asks for a full snapshot from the Servers tab with a reason; the
progress is shown, the rows are on the Logs tab again, and the admin API's audit names the web user and
the reason.
"""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from bench.sync_rows import fill
from broker.cli.web_serve import write_web_config
from broker.core.config import Timing
from conftest import Bus, wait_for
from sync.web_db import WRITER_FILE, read_credentials
from sync_support import RunningSync, save_profile
from test_admin_http import TOKEN, Admin
from test_persister_bus import RunningPersister
from test_web_ui import browser, log_in, text_of  # noqa: F401  (browser is a fixture)
from web_support import WebSite

AGENT = "desk-sync-1"
MARKER = "restore-drill"


@pytest.fixture
def stack(tmp_path, mysql_admin_url):
    bus = Bus(tmp_path / "bus", Timing.fast())
    parts = []
    try:
        admin = Admin(bus)
        parts.append(admin.close)
        persister = RunningPersister(bus, tmp_path)
        parts.append(persister.stop)
        site = WebSite(mysql_admin_url, tmp_path / "web", admin_api=(f"http://127.0.0.1:{admin.http.port}", TOKEN))
        parts.append(site.close)
        (tmp_path / "server").mkdir()
        save_profile(bus, tmp_path / "server")  # the live server this web UI acts on is this bus.s
        write_web_config(site.root, f"http://127.0.0.1:{admin.http.port}", TOKEN, live_dir=tmp_path / "server")
        fill(persister.store, 5, clients=(AGENT,), marker=MARKER)  # two log lines among them
        sync = RunningSync(bus, read_credentials(site.root / WRITER_FILE), bus.server_key, site.root)
        parts.append(sync.stop)
        wait_for(lambda: len(logs_in_mysql(site)) == 2, 30, interval_s=0.2, what="the agent's log lines synced into MySQL")
        yield bus, admin, site
    finally:
        for stop in reversed(parts):
            stop()
        bus.close()


def logs_in_mysql(site) -> list[tuple]:
    return site.admin_sql("SELECT id FROM snapshot_client_logs WHERE client_id = %s", (AGENT,))


def test_sync_this_server_brings_missing_rows_back_and_names_the_user(stack, browser):
    bus, admin, site = stack
    site.admin_sql("DELETE FROM snapshot_client_logs WHERE client_id = %s", (AGENT,))  # drift the change feed cannot see
    log_in(browser, site.base, "otto")
    browser.get(site.base + "/logs?client=" + AGENT)
    assert text_of(browser, "history-count").startswith("0 rows")
    browser.get(site.base + "/servers")
    [row] = [r for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-server]") if r.get_attribute("data-server") == bus.server_key]
    row.find_element(By.CSS_SELECTOR, 'button[data-kind="sync"]').click()
    wait_for(lambda: browser.find_element(By.ID, "act-reason").is_displayed(), 10, what="the confirmation dialog")
    browser.find_element(By.ID, "act-reason").send_keys("a client is missing from the list")
    browser.find_element(By.ID, "act-confirm").click()
    wait_for(lambda: row.find_element(By.CSS_SELECTOR, ".ems-sync-progress").get_attribute("data-done") == "1", 60,
             what="the sync's progress to say done")
    assert "synced:" in row.find_element(By.CSS_SELECTOR, ".ems-sync-progress").text
    browser.get(site.base + "/logs?client=" + AGENT)
    assert text_of(browser, "history-count").startswith("2 rows")
    assert MARKER in browser.find_element(By.ID, "history-table").text
    assert any(r.get("action") == "sync.now" and r["caller"] == "Otto Operator" and r["reason"] == "a client is missing from the list"
               for r in admin.audit())
