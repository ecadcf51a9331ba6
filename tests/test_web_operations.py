"""The web UI's Operations tab against the real thing: MariaDB, php -S, the admin HTTP API on a real bus with real
Curve clients as three agents, and a headless Chromium.

Otto (operator) previews a template run's targets (a dry run: nothing is sent), then runs it; the template needs a
second person, so it is held and Otto's own request shows "waiting for another person" with no buttons. Ada (admin)
approves it with a reason and the run starts, in Otto's name. Ada may not cancel Otto's run (the broker says who
may); Otto cancels it with a reason. Viewers see every list and act on nothing; bad input changes nothing and is
answered with a sentence.
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from broker.core.config import Timing
from broker.core.envelope import Kind
from conftest import Bus, wait_for
from test_admin_http import TOKEN, Admin
from test_templates import PATCH
from test_web_ui import browser, click, log_in, log_out, shot, switch_theme, text_of  # noqa: F401
from web_support import WebClient, WebSite

AGENTS = ("desk-1", "desk-2", "desk-3")
HOSTILE = '<img src=x onerror="window.__xss=1">'


class Stack:
    """A bus with three agents that take commands and never answer (so a run stays running), two templates (one
    needs a second person), the admin API and the site."""

    def __init__(self, root, mysql_admin_url):
        self.bus = Bus(root, Timing())
        self.agents = [self.bus.peer(name) for name in AGENTS]
        self.bus.admin.request("templates.put", **PATCH)
        self.bus.admin.request("templates.put", **{**PATCH, "name": "patch-2p", "approval": True,
                                                   "description": "patch, with a second person's approval " + HOSTILE})
        self.admin_api = Admin(self.bus)
        self.site = WebSite(mysql_admin_url, root / "web", admin_api=(f"http://127.0.0.1:{self.admin_api.http.port}", TOKEN))

    def close(self) -> None:
        self.site.close()
        self.admin_api.close()
        self.bus.close()

    def runs(self) -> list[dict]:
        return self.bus.admin.request("bulk.list", limit=50)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mysql_admin_url):
    stack = Stack(tmp_path_factory.mktemp("operations"), mysql_admin_url)
    yield stack
    stack.close()


def flash(driver) -> str:
    return text_of(driver, "ops-flash")


def test_preview_then_run_held_then_another_person_approves_then_only_the_starter_cancels(stack, browser):
    base = stack.site.base
    log_in(browser, base, "otto")
    browser.get(base + "/operations?view=templates")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'tr[data-name="patch-2p"] .ems-choose'))
    wait_for(lambda: browser.find_elements(By.ID, "run-form"), 10, what="the run form")
    assert browser.find_elements(By.ID, "run-start") == []  # no Run before the targets were seen
    browser.find_element(By.ID, "param-window_h").send_keys("4")
    Select(browser.find_element(By.ID, "param-channel")).select_by_value("beta")
    browser.find_element(By.ID, "run-selector").send_keys("id:desk-*")
    click(browser, browser.find_element(By.ID, "run-preview"))
    wait_for(lambda: "3 agent(s) match" in text_of(browser, "run-preview-list"), 10, what="the preview")
    assert "nothing was sent" in text_of(browser, "run-preview-list") and stack.runs() == []
    assert browser.execute_script("return window.__xss") is None  # the hostile description is text
    browser.execute_script("document.getElementById('run-reason').scrollIntoView({block: 'start', behavior: 'instant'});")
    shot(browser, "web-operations-preview-dark.png")
    browser.find_element(By.ID, "run-reason").send_keys("patch day, ticket 12")
    click(browser, browser.find_element(By.ID, "run-start"))
    wait_for(lambda: "Held:" in flash(browser), 10, what="the held run's page")
    [run] = stack.runs()
    assert run["state"] == "held" and run["args"]["operator"]["name"] == "Otto Operator"
    assert (run["args"]["window_h"], run["args"]["channel"], run["args"]["reason"]) == (4, "beta", "patch day, ticket 12")

    browser.get(base + "/operations")
    row = browser.find_element(By.CSS_SELECTOR, "tr.ems-approval")
    assert "waiting for another person" in row.text and row.find_elements(By.CSS_SELECTOR, "button") == []
    assert "Otto Operator" in row.text and "patch day, ticket 12" in row.text
    log_out(browser, base)

    log_in(browser, base, "ada")
    browser.get(base + "/operations")
    shot(browser, "web-operations-approvals-dark.png")
    row = browser.find_element(By.CSS_SELECTOR, "tr.ems-approval")
    row.find_element(By.NAME, "reason").send_keys("change 81 checked")
    click(browser, row.find_element(By.CSS_SELECTOR, ".ems-approve"))
    wait_for(lambda: flash(browser).startswith("Approved"), 10, what="the approval")
    assert "asked by Otto Operator" in flash(browser)
    [run] = stack.runs()
    assert run["state"] == "running" and run["why"] == "approved by Ada Admin: change 81 checked"

    # Ada did not start it: the broker refuses her cancel, the page says so and the run goes on
    browser.get(base + f"/operations?view=bulk&run={run['id']}")
    browser.find_element(By.ID, "cancel-reason").send_keys("not mine to stop")
    click(browser, browser.find_element(By.ID, "cancel-run"))
    wait_for(lambda: "who started it" in flash(browser), 10, what="the refusal")
    assert "Nothing was changed" in flash(browser) and stack.runs()[0]["state"] == "running"
    shot(browser, "web-operations-refused-dark.png")
    switch_theme(browser, "light")
    shot(browser, "web-operations-run-light.png")
    switch_theme(browser, "dark")
    log_out(browser, base)

    # desk-1 answers its command: the run's progress shows one of three finished
    [target] = [t for t in stack.bus.admin.request("bulk.get", id=run["id"])["targets"] if t["client_id"] == "desk-1"]
    stack.agents[0].send(Kind.RESULT, data={"ok": True, "output": {"dry_run": True}}, corr=target["command_id"],
                         topic="command.desk-1")
    wait_for(lambda: stack.bus.admin.request("bulk.get", id=run["id"])["counts"].get("done") == 1, 10, what="desk-1 done")
    log_in(browser, base, "otto")
    browser.get(base + "/operations?view=bulk")
    assert "1 of 3 finished" in browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{run["id"]}"]').text
    assert "Otto Operator" in browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{run["id"]}"]').text
    shot(browser, "web-operations-bulk-dark.png")
    click(browser, browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{run["id"]}"] a'))
    wait_for(lambda: browser.find_elements(By.ID, "cancel-reason"), 10, what="the run's page")
    assert sorted(r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "#run-targets tbody tr")) == list(AGENTS)
    browser.find_element(By.ID, "cancel-reason").send_keys("wrong window")
    click(browser, browser.find_element(By.ID, "cancel-run"))
    wait_for(lambda: flash(browser).startswith("Cancelled"), 10, what="the cancel")
    assert "cancelled by Otto Operator: wrong window" in flash(browser)
    assert text_of(browser, "run-state") == "cancelled" and browser.find_elements(By.ID, "cancel-run") == []
    assert stack.runs()[0]["state"] == "cancelled"


def test_viewers_see_and_cannot_act(stack):
    """Tried: a viewer opening each view and posting each action. Expected: the lists render without a form or a
    Run link; every POST is 403 and nothing is started or decided."""
    viewer = WebClient(stack.site.base)
    assert viewer.login("vera") == 303
    for view in ("approvals", "bulk", "templates"):
        status, _, text = viewer.request("GET", f"/operations?view={view}")
        assert status == 200 and 'id="ops-views"' in text and "ems-decide" not in text and "ems-choose" not in text
    token = viewer.csrf("/operations")
    before = len(stack.runs())
    for path, form in (("/operations/run", {"template": "patch", "selector": "all", "p[window_h]": "1", "reason": "x"}),
                       ("/operations/decide", {"id": "x", "approve": "1", "reason": "x"}),
                       ("/operations/cancel", {"id": "x", "reason": "x"})):
        status, _, text = viewer.request("POST", path, {"csrf": token, **form})
        assert status == 403 and "may not do this" in text
    assert len(stack.runs()) == before


@pytest.mark.parametrize("path,form,says", [
    ("/operations/decide", {"id": "no-such-request", "approve": "1", "reason": "ok"}, "no approval request"),
    ("/operations/decide", {"id": "x", "approve": "1", "reason": ""}, "A reason is required"),
    ("/operations/decide", {"id": "x", "approve": "maybe", "reason": "ok"}, "Unknown request or decision"),
    ("/operations/cancel", {"id": "no-such-run", "reason": "ok"}, "no bulk run"),
    ("/operations/cancel", {"id": "../x", "reason": "ok"}, "Unknown run"),
])
def test_bad_decisions_and_cancels_are_answered_with_a_sentence(stack, path, form, says):
    """Tried: an unknown request or run id, no reason, a decision that is neither approve nor deny, an id with a
    path in it. Expected: back to the list with a message that says what was wrong; nothing changed."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    status, headers, _ = client.request("POST", path, {"csrf": client.csrf("/operations"), **form})
    assert status == 303
    status, _, text = client.request("GET", headers["Location"])
    assert status == 200 and says.lower() in text.lower()


@pytest.mark.parametrize("form,says", [
    ({"template": "patch", "selector": "", "p[window_h]": "1", "preview": "1"}, "Say which agents"),
    ({"template": "patch", "selector": "all", "p[window_h]": "99", "preview": "1"}, "window_h"),
    ({"template": "patch", "selector": "desk-*", "p[window_h]": "1", "preview": "1"}, "is not a client id"),
    ({"template": "patch", "selector": "all", "p[window_h]": "1", "max_parallel": "0", "preview": "1"}, "Max parallel is a whole"),
    ({"template": "patch", "selector": "all", "p[window_h]": "1", "canary": "-1", "preview": "1"}, "Canary is a whole"),
    ({"template": "patch", "selector": "all", "p[window_h]": "1", "halt_failure_pct": "101", "preview": "1"}, "Halt failure pct"),
    ({"template": "patch", "selector": "all", "p[bad name]": "1", "preview": "1"}, "parameters: letters"),
    ({"template": "patch", "selector": "all", "p[window_h]": "1", "preview": "0", "previewed": "all"}, "A reason is required"),
    ({"template": "no-such", "selector": "all", "preview": "1"}, "no template"),
])
def test_bad_runs_start_nothing_and_say_why(stack, form, says):
    """Tried: no selector, a parameter out of its range, a selector the broker cannot read, pacing of 0 / -1 / 101,
    a parameter name that is not one, a run without a reason, an unknown template. Expected: the form again (422)
    with a sentence naming the problem; no run started."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    before = len(stack.runs())
    status, _, text = client.request("POST", "/operations/run", {"csrf": client.csrf("/operations"), **form})
    assert status == 422 and says.lower() in text.lower(), text[-2000:]
    assert len(stack.runs()) == before


def test_run_with_a_selector_changed_since_its_preview_previews_again(stack):
    """Tried: Run (with a reason) after changing the selector from the one previewed, and with none previewed.
    Expected: nothing starts; the page shows the new selector's targets and a Run button for them."""
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    before = len(stack.runs())
    for previewed in ("id:desk-1", None):
        form = {"csrf": client.csrf("/operations"), "template": "patch", "selector": "id:desk-*", "p[window_h]": "2",
                "reason": "patch", "preview": "0", **({"previewed": previewed} if previewed else {})}
        status, _, text = client.request("POST", "/operations/run", form)
        assert status == 200 and "3 agent(s) match" in text and 'id="run-start"' in text
        assert 'name="previewed" value="id:desk-*"' in text
    assert len(stack.runs()) == before
