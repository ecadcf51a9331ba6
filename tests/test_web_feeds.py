"""The web UI's Inbox, Alerts, Schedules and Broadcasts (Operations tab) against the real thing: MariaDB, php -S,
the admin HTTP API and an alerts service on a real bus with real Curve clients as three agents, and a headless
Chromium.

A CPU alert opens: every web person sees an unread badge in the nav bar; Otto marks his inbox read and his badge
goes while Vera's (a viewer) stays: one inbox per web person, although the web has one bus key. An approval request
lands in Ada's inbox with a link to Approvals. Otto acknowledges the alert with a reason, named; Vera sees no
Acknowledge and her POST is refused. Otto previews a broadcast's recipients, then sends it; its page lists each
recipient. Otto schedules a template (parameters as on Templates, cron, zone, missed policy, reason): it is his; Ada
sees no Pause on it; Otto pauses, resumes and removes it. Bad input is answered with a sentence.
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from broker.core import keys
from broker.core.config import Timing
from broker.core.envelope import Kind
from conftest import Bus, wait_for
from test_admin_http import TOKEN, Admin
from test_alerts import RunningAlerts
from test_templates import PATCH
from test_web_ui import browser, click, log_in, log_out, shot, switch_theme, text_of  # noqa: F401
from web_support import WebClient, WebSite

AGENTS = ("desk-1", "desk-2", "desk-3")
HOSTILE = '<img src=x onerror="window.__xss=1">'


class Stack:
    """A bus with three agents, an alerts service with a CPU rule that fires at once, an operator key (Jane), a
    nightly schedule, the admin API and the site."""

    def __init__(self, root, mysql_admin_url):
        self.bus = Bus(root, Timing())
        self.agents = [self.bus.peer(name) for name in AGENTS]
        self.alerts = RunningAlerts(self.bus, root / "alerts.db")
        admin = self.bus.admin
        admin.request("alerts.rule_put", rule={"name": "cpu-now", "kind": "cpu", "threshold": 50, "clear_s": 0},
                      reason="test: fire at once")
        admin.request("templates.put", **PATCH)
        admin.request("schedules.add", name="nightly-patch", request_op="templates.run", reason="patch night " + HOSTILE,
                      cron="0 2 * * *", tz="Europe/Berlin", args={"name": "patch", "selector": "all", "params": {"window_h": 2}})
        pair = keys.generate()
        admin.request("keys.add", public_key=pair.public, client_id="jane", role="operator", name="Jane Doe")
        self.jane = self.bus.client(pair, hello={"client_id": "jane"})
        self.admin_api = Admin(self.bus)
        self.site = WebSite(mysql_admin_url, root / "web", admin_api=(f"http://127.0.0.1:{self.admin_api.http.port}", TOKEN))

    def close(self) -> None:
        self.site.close()
        self.admin_api.close()
        self.alerts.stop()
        self.bus.close()

    def alert_rows(self) -> list[dict]:
        return self.bus.admin.request("alerts.list", all=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mysql_admin_url):
    stack = Stack(tmp_path_factory.mktemp("feeds"), mysql_admin_url)
    stack.agents[0].publish(Kind.EVENT, "sysinfo", {"cpu_percent": 99.0})
    wait_for(stack.alert_rows, what="the cpu alert")
    yield stack
    stack.close()


def flash(driver) -> str:
    return text_of(driver, "ops-flash")


def badge(driver) -> str:
    return "".join(b.text for b in driver.find_elements(By.ID, "inbox-badge"))


def test_inbox_badge_mark_read_and_acknowledge(stack, browser):
    base = stack.site.base
    log_in(browser, base, "otto")
    assert badge(browser) == "1"  # on the Clients tab: every page's nav bar
    click(browser, browser.find_element(By.ID, "nav-inbox"))
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.ems-notice"), 10, what="the inbox")
    [row] = browser.find_elements(By.CSS_SELECTOR, "tr.ems-notice")
    assert "desk-1" in row.text and "new" in row.text
    shot(browser, "web-operations-inbox-dark.png")
    click(browser, row.find_element(By.CSS_SELECTOR, ".ems-mark-read"))
    wait_for(lambda: flash(browser).startswith("Marked 1"), 10, what="marked read")
    assert badge(browser) == "" and "read" in browser.find_element(By.CSS_SELECTOR, "tr.ems-notice").text

    browser.get(base + "/operations?view=alerts")
    row = browser.find_element(By.CSS_SELECTOR, "tr.ems-alert-open")
    row.find_element(By.NAME, "reason").send_keys("looking at it, ticket 7")
    click(browser, row.find_element(By.CSS_SELECTOR, ".ems-ack-button"))
    wait_for(lambda: flash(browser).startswith("Acknowledged"), 10, what="the acknowledgement")
    assert "Otto Operator: looking at it, ticket 7" in browser.find_element(By.CSS_SELECTOR, "tr.ems-alert").text
    [alert] = stack.alert_rows()
    assert (alert["acked_by"], alert["acked_name"]) == ("web:Otto Operator", "Otto Operator")
    shot(browser, "web-operations-alerts-dark.png")
    switch_theme(browser, "light")
    shot(browser, "web-operations-alerts-light.png")
    switch_theme(browser, "dark")
    log_out(browser, base)

    log_in(browser, base, "vera")  # her own inbox: still unread; no Acknowledge for a viewer
    assert badge(browser) == "1"
    browser.get(base + "/operations?view=alerts")
    assert browser.find_elements(By.CSS_SELECTOR, ".ems-ack-form") == []
    log_out(browser, base)


def test_an_approval_request_links_to_approvals(stack, browser):
    """Jane (an operator key) asks for a reboot that needs a second person: it lands in Ada's web inbox with a link."""
    stack.bus.admin.request("approvals.require", names=["power.reboot"])
    stack.jane.send_command("desk-2", "power.reboot", {"reason": "stuck update " + HOSTILE})
    base = stack.site.base
    log_in(browser, base, "ada")
    browser.get(base + "/operations?view=inbox")
    link = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".ems-to-approvals") or browser.refresh(), 20,
                    what="the approval notice")
    assert browser.execute_script("return window.__xss") is None
    shot(browser, "web-operations-inbox-approval-dark.png")
    click(browser, link[0])
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.ems-approval"), 10, what="the approvals")
    assert "Jane Doe" in browser.find_element(By.CSS_SELECTOR, "tr.ems-approval").text
    log_out(browser, base)


def test_broadcast_preview_send_and_receipts_and_schedules(stack, browser):
    base = stack.site.base
    log_in(browser, base, "otto")
    browser.get(base + "/operations?view=broadcasts")
    assert browser.find_elements(By.ID, "broadcast-send") == []  # no Send before the recipients were seen
    browser.find_element(By.ID, "broadcast-selector").send_keys("id:desk-*")
    browser.find_element(By.ID, "broadcast-text").send_keys("Fire drill at 15:00 " + HOSTILE)
    click(browser, browser.find_element(By.ID, "broadcast-preview"))
    wait_for(lambda: "3 agent(s) match" in text_of(browser, "broadcast-preview-list"), 10, what="the preview")
    assert stack.bus.admin.request("broadcast.list") == []
    shot(browser, "web-operations-broadcasts-preview-dark.png")
    browser.find_element(By.ID, "broadcast-reason").send_keys("drill announced by facilities")
    click(browser, browser.find_element(By.ID, "broadcast-send"))
    wait_for(lambda: flash(browser).startswith("Sent to 3"), 10, what="the broadcast")
    assert sorted(r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "tr.ems-recipient")) == list(AGENTS)
    assert HOSTILE in text_of(browser, "broadcast-text-shown") and browser.execute_script("return window.__xss") is None
    [sent] = stack.bus.admin.request("broadcast.list")
    assert sent["person"] == "Otto Operator" and sent["reason"] == "drill announced by facilities"
    shot(browser, "web-operations-broadcasts-recipients-dark.png")
    browser.get(base + "/operations?view=broadcasts")
    shot(browser, "web-operations-broadcasts-dark.png")

    browser.get(base + "/operations?view=schedules")
    row = browser.find_element(By.CSS_SELECTOR, "tr.ems-schedule")
    assert "nightly-patch" in row.text and "0 2 * * *" in row.text and "Europe/Berlin" in row.text
    assert row.find_element(By.CSS_SELECTOR, ".ems-next").text.strip() not in ("", "—")
    shot(browser, "web-operations-schedules-dark.png")
    switch_theme(browser, "light")
    shot(browser, "web-operations-schedules-light.png")
    switch_theme(browser, "dark")
    log_out(browser, base)


def test_viewers_see_counts_and_cannot_act(stack):
    """Tried: a viewer opening each view and posting acknowledge and broadcast. Expected: the lists render without a
    form; a broadcast's text and recipients are not shown; both POSTs are 403 and nothing is sent or acknowledged;
    marking her own inbox read is hers to do."""
    viewer = WebClient(stack.site.base)
    assert viewer.login("vera") == 303
    for view in ("inbox", "alerts", "schedules", "broadcasts"):
        status, _, text = viewer.request("GET", f"/operations?view={view}")
        assert status == 200 and 'id="ops-views"' in text and "ems-ack-form" not in text and "broadcast-form" not in text
    token = viewer.csrf("/operations")
    before = len(stack.bus.admin.request("broadcast.list"))
    for path, form in (("/operations/ack", {"id": "1", "reason": "x"}),
                       ("/operations/schedule", {"template": "patch", "selector": "all", "cron": "@daily", "reason": "x"}),
                       ("/operations/schedule-change", {"id": "x", "action": "pause", "reason": "x"}),
                       ("/operations/broadcast", {"selector": "all", "text": "hi", "reason": "x", "preview": "0"})):
        status, _, text = viewer.request("POST", path, {"csrf": token, **form})
        assert status == 403 and "may not do this" in text
    assert len(stack.bus.admin.request("broadcast.list")) == before
    status, headers, _ = viewer.request("POST", "/operations/inbox-read", {"csrf": token, "all": "1"})
    assert status == 303 and "Marked" in viewer.request("GET", headers["Location"])[2]


@pytest.mark.parametrize("path,form,says", [
    ("/operations/ack", {"id": "987654", "reason": "ok"}, "no open alert"),
    ("/operations/ack", {"id": "1", "reason": ""}, "A reason is required"),
    ("/operations/ack", {"id": "-1", "reason": "ok"}, "Unknown alert"),
    ("/operations/ack", {"id": str(2**63), "reason": "ok"}, "Unknown alert"),
    ("/operations/inbox-read", {"id": "0"}, "Unknown notice"),
    ("/operations/inbox-read", {"id": "x"}, "Unknown notice"),
])
def test_bad_acks_and_marks_are_answered_with_a_sentence(stack, path, form, says):
    """Tried: an unknown alert, no reason, ids of -1, 2^63, 0 and text. Expected: back to the view with a message
    that says what was wrong; nothing changed."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    status, headers, _ = client.request("POST", path, {"csrf": client.csrf("/operations"), **form})
    assert status == 303
    status, _, text = client.request("GET", headers["Location"])
    assert status == 200 and says.lower() in text.lower()


@pytest.mark.parametrize("form,says", [
    ({"selector": "", "text": "hi", "preview": "1"}, "A selector (which agents) and a message"),
    ({"selector": "all", "text": " ", "preview": "1"}, "A selector (which agents) and a message"),
    ({"selector": "desk-*", "text": "hi", "preview": "1"}, "is not a client id"),
    ({"selector": "all", "text": "hi", "preview": "0", "previewed": "all", "reason": ""}, "A reason is required"),
])
def test_bad_broadcasts_send_nothing_and_say_why(stack, form, says):
    """Tried: no selector, a blank message, a selector the broker cannot read, a send without a reason. Expected:
    the form again (422) with a sentence naming the problem; nothing sent."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    before = len(stack.bus.admin.request("broadcast.list"))
    status, _, text = client.request("POST", "/operations/broadcast", {"csrf": client.csrf("/operations"), **form})
    assert status == 422 and says.lower() in text.lower(), text[-2000:]
    assert len(stack.bus.admin.request("broadcast.list")) == before


def test_schedule_a_template_then_pause_resume_and_remove_it(stack, browser):
    base = stack.site.base
    log_in(browser, base, "otto")
    browser.get(base + "/operations?view=schedules&template=patch")
    wait_for(lambda: browser.find_elements(By.ID, "schedule-form"), 10, what="the schedule form")
    browser.find_element(By.ID, "sparam-window_h").send_keys("3")
    browser.find_element(By.ID, "schedule-selector").send_keys("id:desk-*")
    browser.find_element(By.ID, "schedule-name").send_keys("weekday-patch")
    browser.find_element(By.ID, "schedule-cron").send_keys("30 3 * * 1-5")
    browser.find_element(By.ID, "schedule-tz").clear()
    browser.find_element(By.ID, "schedule-tz").send_keys("Europe/Berlin")
    browser.find_element(By.ID, "schedule-reason").send_keys("weekday patch window")
    shot(browser, "web-operations-schedules-form-dark.png")
    click(browser, browser.find_element(By.ID, "schedule-add"))
    wait_for(lambda: flash(browser).startswith("Scheduled weekday-patch"), 10, what="the schedule")
    [mine] = [s for s in stack.bus.admin.request("schedules.list") if s["name"] == "weekday-patch"]
    assert (mine["owner_name"], mine["args"]["operator"]["id"], mine["args"]["params"]["window_h"]) == ("Otto Operator", "web:Otto Operator", "3")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{mine["id"]}"]')
    row.find_element(By.NAME, "reason").send_keys("holiday week")
    click(browser, row.find_element(By.CSS_SELECTOR, ".ems-pause"))
    wait_for(lambda: flash(browser).startswith("Paused"), 10, what="paused")
    assert stack.bus.admin.request("schedules.get", id=mine["id"])["state"] == "paused"
    shot(browser, "web-operations-schedules-paused-dark.png")
    log_out(browser, base)

    log_in(browser, base, "ada")  # not hers: no buttons (and the broker would refuse her)
    browser.get(base + "/operations?view=schedules")
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{mine["id"]}"]').find_elements(By.CSS_SELECTOR, "button") == []
    log_out(browser, base)

    log_in(browser, base, "otto")
    browser.get(base + "/operations?view=schedules")
    for button, says in ((".ems-resume", "Resumed"), (".ems-remove", "Removed")):
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{mine["id"]}"]')
        row.find_element(By.NAME, "reason").send_keys("back to normal")
        click(browser, row.find_element(By.CSS_SELECTOR, button))
        wait_for(lambda: flash(browser).startswith(says), 10, what=says)
    assert [s for s in stack.bus.admin.request("schedules.list") if s["name"] == "weekday-patch"] == []
    log_out(browser, base)


@pytest.mark.parametrize("form,says", [
    ({"template": "../x"}, "Choose a template first"),
    ({"cron": ""}, "either a cron expression"),
    ({"at": "2030-01-01 10:00"}, "either a cron expression"),
    ({"reason": ""}, "A reason is required"),
    ({"cron": "61 * * * *"}, "minute"),
    ({"tz": "Mars/Olympus"}, "Mars/Olympus"),
    ({"p[window_h]": "99"}, "window_h"),
    ({"selector": ""}, "Say which agents"),
    ({"missed": "twice"}, "missed"),
])
def test_bad_schedules_make_nothing_and_say_why(stack, form, says):
    """Tried: a template name with a path in it, neither cron nor a time, both, no reason, a cron minute of 61, an
    unknown zone, a parameter out of range, no selector, an unknown missed policy. Expected: the form again (422)
    with a sentence naming the problem; no schedule made."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    before = len(stack.bus.admin.request("schedules.list"))
    good = {"template": "patch", "name": "bad-one", "p[window_h]": "2", "selector": "all", "cron": "0 4 * * *", "tz": "UTC",
            "missed": "skip", "reason": "nightly"}
    status, _, text = client.request("POST", "/operations/schedule", {"csrf": client.csrf("/operations"), **good, **form})
    assert status == 422 and says.lower() in text.lower(), text[-2000:]
    assert len(stack.bus.admin.request("schedules.list")) == before


@pytest.mark.parametrize("form,says", [
    ({"id": "no-such", "action": "pause", "reason": "x"}, "no schedule"),
    ({"id": "x", "action": "explode", "reason": "x"}, "Unknown schedule or action"),
    ({"id": "x", "action": "pause", "reason": ""}, "A reason is required"),
])
def test_bad_schedule_changes_are_answered_with_a_sentence(stack, form, says):
    """Tried: an unknown schedule, an unknown action, no reason. Expected: back to the list saying what was wrong."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    status, headers, _ = client.request("POST", "/operations/schedule-change", {"csrf": client.csrf("/operations"), **form})
    assert status == 303
    status, _, text = client.request("GET", headers["Location"])
    assert status == 200 and says.lower() in text.lower()
