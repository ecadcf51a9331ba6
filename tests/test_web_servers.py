"""The web UI's Servers tab against the real thing: MariaDB, php -S, the admin HTTP API on a real bus,
a real agent on Xvfb in power dry run, and a headless Chromium. An operator reboots the agent from the
browser (confirmation, reason) and follows the command to "done"; the admin API's audit and the bus's
command record name the web user and the reason; a viewer is refused every action; the sync button
reaches the admin API in the user's name. A screenshot of the tab (dark) goes to ``$EMS_SCREENSHOT_DIR`` only.
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By

from broker.core import keys
from broker.core.config import Timing
from conftest import Bus, Processes, wait_for
from test_admin_http import TOKEN, Admin
from test_notice_display import _x_tools, needs_x, xserver  # noqa: F401
from test_web_ui import browser, log_in, shot, text_of  # noqa: F401
from web_support import WebClient, WebSite, php_routes

pytestmark = needs_x

AGENT = "desk-web-1"


class Stack:
    """A bus, the admin API on it, a real agent in power dry run, and a web site whose config names the API."""

    def __init__(self, root, xvfb, mysql_admin_url):
        self.bus = Bus(root, Timing())
        self.admin_api = Admin(self.bus)
        self.procs = Processes(root)
        agent_dir = root / AGENT
        pair = keys.load_or_create(agent_dir / "keys", "agent")
        self.bus.admin.request("keys.add", public_key=pair.public, client_id=AGENT, role="agent")
        (agent_dir / "policy.json").write_text(json.dumps({"power_dry_run": True, "indicator": "bar"}))
        self.agent = self.procs.ems(AGENT, "agent", "--data-dir", str(agent_dir), "--server", self.bus.endpoint,
                                    f"--server-key={self.bus.server_key}", "--id", AGENT,
                                    "--access-dir", str(agent_dir / "access"), env=xvfb.env())
        wait_for(lambda: AGENT in self.bus.broker.online, 60, interval_s=0.1, what=f"the agent online ({self.agent.log_path})")
        url = f"http://127.0.0.1:{self.admin_api.http.port}"
        self.site = WebSite(mysql_admin_url, root / "web", admin_api=(url, TOKEN), live={"server_id": "srv-a"})
        self.site.add_server("srv-a", "Head office")
        self.site.add_client("srv-a", AGENT, "reception-pc", user="maria")
        self.site.add_server("srv-b", "Remote branch")  # another server's: its actions are shown disabled
        self.site.add_client("srv-b", "branch-pc-1", "branch-pc", user="bob")

    def close(self) -> None:
        self.site.close()
        self.procs.stop_all()
        self.admin_api.close()
        self.bus.close()

    def commands(self) -> list[dict]:
        return self.bus.admin.request("command.list", target=AGENT, limit=1000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, xserver, mysql_admin_url):
    stack = Stack(tmp_path_factory.mktemp("servers"), xserver, mysql_admin_url)
    yield stack
    stack.close()


def act(driver, client: str, action: str, reason: str) -> None:
    """Click a client's action, give the reason in the confirmation dialog and confirm."""
    driver.find_element(By.CSS_SELECTOR, f'#server-clients tr[data-client="{client}"] button[data-kind="{action}"]').click()
    wait_for(lambda: driver.find_element(By.ID, "act-reason").is_displayed(), 10, what="the confirmation dialog")
    driver.find_element(By.ID, "act-reason").send_keys(reason)
    driver.find_element(By.ID, "act-confirm").click()


def test_an_operator_reboots_a_real_agent_in_dry_run_and_the_trail_names_them(stack, browser):
    log_in(browser, stack.site.base, "otto")
    browser.get(stack.site.base + "/servers")
    assert "Head office" in text_of(browser, "servers-table") and "reception-pc" in text_of(browser, "server-clients")
    before = len(stack.commands())
    # the reason is mandatory: an empty one is not sent
    browser.find_element(By.CSS_SELECTOR, f'tr[data-client="{AGENT}"] button[data-kind="reboot"]').click()
    wait_for(lambda: browser.find_element(By.ID, "act-reason").is_displayed(), 10, what="the confirmation dialog")
    browser.find_element(By.ID, "act-confirm").click()
    assert len(stack.commands()) == before
    browser.find_element(By.ID, "act-reason").send_keys("frozen screen, ticket 4711")
    browser.find_element(By.ID, "act-confirm").click()
    cell = f'#server-clients tr[data-client="{AGENT}"] .ems-command-status'
    status = lambda: browser.find_element(By.CSS_SELECTOR, cell).get_attribute("data-status")  # noqa: E731
    wait_for(lambda: status() in ("done", "failed", "expired"), 60, what="the reboot's outcome")
    text = browser.find_element(By.CSS_SELECTOR, cell).text
    assert status() == "done" and "DRY RUN" in text, text
    shot(browser, "web-servers-dark.png")

    (command,) = [c for c in stack.commands() if c["name"] == "power.reboot"]
    assert command["args"]["reason"] == "frozen screen, ticket 4711"
    assert command["args"]["operator"]["name"] == "Otto Operator" and command["status"] == "done"
    assert command["result"]["output"]["dry_run"] is True
    audited = [r for r in stack.admin_api.audit() if r.get("action") == "power.reboot"]
    assert [(r["caller"], r["reason"], r["target"]) for r in audited] == [("Otto Operator", "frozen screen, ticket 4711", AGENT)]
    assert TOKEN not in browser.page_source


def test_an_update_check_reads_as_a_dry_run(stack, browser):
    log_in(browser, stack.site.base, "ada")
    browser.get(stack.site.base + "/servers")
    act(browser, AGENT, "update-check", "monthly patch review")
    cell = f'#server-clients tr[data-client="{AGENT}"] .ems-command-status'
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, cell).get_attribute("data-status") == "done", 60, what="the check")
    assert "DRY RUN" in browser.find_element(By.CSS_SELECTOR, cell).text
    assert any(r.get("action") == "update.check" and r["caller"] == "Ada Admin" for r in stack.admin_api.audit())


def test_sync_this_server_reaches_the_admin_api_in_the_users_name(stack, browser):
    log_in(browser, stack.site.base, "otto")
    browser.get(stack.site.base + "/servers")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-server="srv-a"] button[data-kind="sync"]').click()
    wait_for(lambda: browser.find_element(By.ID, "act-reason").is_displayed(), 10, what="the confirmation dialog")
    browser.find_element(By.ID, "act-reason").send_keys("new clients enrolled")
    browser.find_element(By.ID, "act-confirm").click()
    # no sync worker runs in this stack: the admin API's refusal is shown in the dialog, readable
    wait_for(lambda: "sync worker not running" in text_of(browser, "act-error"), 30, what="the sync's answer")
    assert any(r.get("action") == "sync.now" and r["caller"] == "Otto Operator" and r["reason"] == "new clients enrolled"
               for r in stack.admin_api.audit())


def test_another_servers_rows_show_their_actions_disabled_saying_why(stack):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    _, _, page = operator.request("GET", "/servers")
    rows = {sid: page.split(f'<tr data-server="{sid}"', 1)[1].split("</tr>", 1)[0] for sid in ("srv-a", "srv-b")}
    assert 'data-kind="sync"' in rows["srv-a"] and "ems-act-off" not in rows["srv-a"]
    assert 'data-kind="sync"' not in rows["srv-b"] and "disabled" in rows["srv-b"] and "belongs to another EMS server" in rows["srv-b"]
    _, _, branch = operator.request("GET", "/servers?server=srv-b")
    clients = branch.split('id="server-clients"', 1)[1]
    assert "branch-pc" in clients and "ems-act-off" in clients and 'class="btn btn-sm btn-outline-secondary ems-act"' not in clients
    assert "belongs to another EMS server" in clients
    token = operator.csrf("/servers")  # and the server refuses what the page does not offer
    commands, audited = len(stack.commands()), len(stack.admin_api.audit())
    for path, form in {"/servers/sync": {"reason": "r", "server": "srv-b"},
                       "/servers/action": {"client": "branch-pc-1", "action": "reboot", "reason": "r", "server": "srv-b"}}.items():
        status, _, text = operator.request("POST", path, {**form, "csrf": token})
        assert status == 409 and "another EMS server" in json.loads(text)["error"], (path, status, text)
    assert len(stack.commands()) == commands and len(stack.admin_api.audit()) == audited


def test_a_viewer_is_refused_every_action_and_sees_no_buttons(stack):
    viewer = WebClient(stack.site.base)
    assert viewer.login("vera") == 303
    status, _, page = viewer.request("GET", "/servers")
    assert status == 200 and "reception-pc" in page and "ems-act" not in page
    token = viewer.csrf("/servers")
    audited, commands = len(stack.admin_api.audit()), len(stack.commands())
    for path, form in {"/servers/sync": {"reason": "r"},
                       "/servers/action": {"client": AGENT, "action": "reboot", "reason": "r"}}.items():
        status, _, text = viewer.request("POST", path, {**form, "csrf": token})
        assert status == 403 and "may not do this" in text, path
    assert viewer.request("GET", "/servers/command?id=abc")[0] == 403
    assert len(stack.admin_api.audit()) == audited and len(stack.commands()) == commands


def test_an_action_needs_a_reason_and_a_known_action(stack):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    token = operator.csrf("/servers")
    commands = len(stack.commands())
    for form, expected in [({"client": AGENT, "action": "reboot", "reason": "  "}, 422),
                           ({"client": AGENT, "action": "format-disk", "reason": "r"}, 400),
                           ({"client": AGENT, "action": "reboot"}, 422)]:
        status, _, text = operator.request("POST", "/servers/action", {**form, "csrf": token})
        assert status == expected, (form, status, text)
    assert len(stack.commands()) == commands
    status, _, text = operator.request("GET", "/servers/command?id=../status")
    assert status == 400


def test_no_get_reaches_the_admin_api_with_an_action(stack):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    token = operator.csrf("/servers")
    hostile = f"?csrf={token}&client={AGENT}&action=reboot&reason=r&server=srv-a&id=x"
    commands = len(stack.commands())
    for route in php_routes():
        operator.request("GET", route.split()[1] + hostile)
    assert len(stack.commands()) == commands
    assert not [r for r in stack.admin_api.audit() if r["method"] == "POST" and r.get("reason") == "r"]
