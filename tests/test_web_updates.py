"""The web UI's Updates tab and the Servers tab's auto-sync against the real thing: MariaDB, php -S, the admin
HTTP API on a real bus, THREE real agents on Xvfb in power dry run (one on a machine with no package manager,
so its update check and apply really fail), a real sync worker, and a headless Chromium.

An operator checks all three for updates from the browser, then rolls the updates out in waves of one: the
rollout stops after the wave with the failing agent and never sends the third its command. Viewers look but
cannot start or step anything; bad input changes nothing; auto-sync set by an admin reaches the sync worker
(read back) and is refused for an operator.
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from broker.core import keys
from broker.core.config import Timing
from broker.core.errors import RemoteError
from conftest import Bus, Processes, wait_for
from sync.web_db import WRITER_FILE, read_credentials
from sync.worker import SyncConfig
from sync_support import RunningSync
from test_admin_http import TOKEN, Admin
from test_notice_display import _x_tools, needs_x, xserver  # noqa: F401
from test_web_ui import browser, click, log_in, shot, text_of  # noqa: F401
from web_support import WebClient, WebSite

pytestmark = needs_x

#: client id -> host name; the web orders a batch by host name, so the failing one is the second wave
AGENTS = {"upd-a": "a-desk", "upd-b": "b-desk-nopkg", "upd-c": "c-desk"}
FAILING = "upd-b"
WORKERS_ENV = "PHP_CLI_SERVER_WORKERS"
HOSTILE = '<img src=x onerror="window.__xss=1">'


class Stack:
    """A bus, the admin API, three agents in power dry run (FAILING without a package manager on its PATH),
    a sync worker writing into the web site's database, and the site."""

    def __init__(self, root, xvfb, mysql_admin_url):
        self.bus = Bus(root, Timing())
        self.admin_api = Admin(self.bus)
        self.procs = Processes(root)
        empty = root / "no-package-manager"
        empty.mkdir()
        for client_id in AGENTS:
            agent_dir = root / client_id
            pair = keys.load_or_create(agent_dir / "keys", "agent")
            self.bus.admin.request("keys.add", public_key=pair.public, client_id=client_id, role="agent")
            (agent_dir / "policy.json").write_text(json.dumps({"power_dry_run": True, "indicator": "bar"}))
            env = {**xvfb.env(), **({"PATH": str(empty)} if client_id == FAILING else {})}
            self.procs.ems(client_id, "agent", "--data-dir", str(agent_dir), "--server", self.bus.endpoint,
                           f"--server-key={self.bus.server_key}", "--id", client_id, "--access-dir", str(agent_dir / "access"), env=env)
        wait_for(lambda: set(AGENTS) <= set(self.bus.broker.online), 90, interval_s=0.1, what="three agents online")
        # php -S with several workers, so that two pages' steps really run at once; stopped as a process group
        saved = os.environ.get(WORKERS_ENV)
        os.environ[WORKERS_ENV] = "4"
        try:
            self.site = WebSite(mysql_admin_url, root / "web", admin_api=(f"http://127.0.0.1:{self.admin_api.http.port}", TOKEN))
        finally:
            if saved is None:
                del os.environ[WORKERS_ENV]
            else:
                os.environ[WORKERS_ENV] = saved
        self.site.add_server("srv-a", "Head office")
        for client_id, host in AGENTS.items():
            self.site.add_client("srv-a", client_id, host)
        self.site.add_client("srv-a", "other-1", "zz-not-selected")
        self.site.add_client("srv-a", "ghost-x", HOSTILE)  # in the web's snapshot, unknown to the broker
        self.sync = RunningSync(self.bus, read_credentials(self.site.root / WRITER_FILE), "srv-sync", root,
                                config=SyncConfig(wait_s=1.0, full_every_s=300.0))
        wait_for(self._sync_answers, 30, interval_s=0.1, what="the sync worker on the bus")

    def _sync_answers(self) -> bool:
        try:
            return bool(self.bus.admin.request("sync.status"))
        except RemoteError:  # UNAVAILABLE until the worker has joined the bus
            return False

    def close(self) -> None:
        self.sync.stop()
        if self.site.process.poll() is None:
            os.killpg(self.site.process.pid, signal.SIGTERM)  # its own session: the server and its workers
        self.site.close()
        self.procs.stop_all()
        self.admin_api.close()
        self.bus.close()

    def commands(self, client_id: str, name: str) -> list[dict]:
        return [c for c in self.bus.admin.request("command.list", target=client_id, limit=1000) if c["name"] == name]

    def all_commands(self) -> int:
        return sum(len(self.bus.admin.request("command.list", target=c, limit=1000)) for c in AGENTS)

    def batches(self) -> tuple:
        return self.site.admin_sql("SELECT id, state, current_wave FROM web_update_batches ORDER BY id")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, xserver, mysql_admin_url):
    stack = Stack(tmp_path_factory.mktemp("updates"), xserver, mysql_admin_url)
    yield stack
    stack.close()


def flat(form: dict) -> list[tuple[str, str]]:
    """A form with list values (``pick[]``) as the pairs a browser posts."""
    return [(name, item) for name, value in form.items() for item in (value if isinstance(value, list) else [value])]


def statuses(driver) -> dict[str, str]:
    """client id -> status shown in the batch's table."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#run-targets tbody tr')).map(r => [r.dataset.client, r.dataset.status]);")
    return dict(rows)


def row_text(driver, client_id: str) -> str:
    return driver.execute_script(
        f"var r = document.querySelector('#run-targets tr[data-client=\"{client_id}\"]'); return r ? r.textContent : '';")


def finished(driver) -> bool:
    return driver.execute_script("var r = document.getElementById('update-run'); return r ? r.dataset.state : '';") != "running"


def check_all_three(stack, driver, reason: str) -> str:
    """From the Updates tab: filter to the three agents, select all matching, give a reason, check; the check's URL."""
    driver.get(stack.site.base + "/updates?q=desk")
    assert "3 clients match" in text_of(driver, "updates-count")
    shot(driver, "web-updates-dark.png")
    click(driver, driver.find_element(By.ID, "pick-all"))
    driver.find_element(By.ID, "check-reason").send_keys(reason)
    click(driver, driver.find_element(By.ID, "check-start"))
    wait_for(lambda: "/updates/run?id=" in driver.current_url, 15, what="the check's page")
    wait_for(lambda: finished(driver), 90, interval_s=0.2, what="every check's outcome")
    return driver.current_url


def test_an_update_check_across_three_real_agents_then_a_rollout_that_stops_after_the_failing_wave(stack, browser):
    log_in(browser, stack.site.base, "otto")
    check_url = check_all_three(stack, browser, "monthly patch review")
    assert statuses(browser) == {"upd-a": "done", "upd-b": "failed", "upd-c": "done"}
    assert "DRY RUN" in row_text(browser, "upd-a") and "DRY RUN" in row_text(browser, "upd-c")
    assert "no supported package manager" in row_text(browser, FAILING)
    assert "3 of 3 clients finished, 1 failed" in text_of(browser, "run-summary")
    for client_id in AGENTS:  # one command each, in the web user's name, with the one reason
        (command,) = stack.commands(client_id, "update.check")
        assert command["args"]["operator"]["name"] == "Otto Operator" and command["args"]["reason"] == "monthly patch review"
    audited = [r for r in stack.admin_api.audit() if r.get("action") == "update.check"]
    assert sorted(r["target"] for r in audited) == sorted(AGENTS) and {r["caller"] for r in audited} == {"Otto Operator"}
    assert stack.commands("other-1", "update.check") == []
    shot(browser, "web-updates-check-dark.png")

    # apply in waves of one, the failing client included: wave 1 (a) passes, wave 2 (b) fails, c is never sent
    click(browser, browser.find_element(By.ID, "apply-skip"))
    for name, value in {"apply-first": "1", "apply-size": "1", "apply-stop": "1"}.items():
        browser.find_element(By.ID, name).clear()
        browser.find_element(By.ID, name).send_keys(value)
    browser.find_element(By.ID, "apply-reason").send_keys("patch tuesday, ticket 88")
    click(browser, browser.find_element(By.ID, "apply-start"))
    wait_for(lambda: browser.current_url != check_url and "/updates/run?id=" in browser.current_url, 15, what="the rollout's page")
    wait_for(lambda: finished(browser), 90, interval_s=0.2, what="the rollout's end")
    assert text_of(browser, "run-state") == "stopped"
    assert statuses(browser) == {"upd-a": "done", "upd-b": "failed", "upd-c": "skipped"}
    assert "Wave 2 had 1 failure" in text_of(browser, "run-note")
    assert "2 of 3 clients finished, 1 failed, 1 not started · wave 2 of 3" in text_of(browser, "run-summary")
    shot(browser, "web-updates-rollout-dark.png")
    (applied,) = stack.commands("upd-a", "update.apply")
    assert applied["status"] == "done" and applied["result"]["output"]["dry_run"] is True
    assert applied["args"]["reason"] == "patch tuesday, ticket 88" and applied["args"]["operator"]["name"] == "Otto Operator"
    assert [c["status"] for c in stack.commands(FAILING, "update.apply")] == ["failed"]
    assert stack.commands("upd-c", "update.apply") == []
    # stepping a stopped rollout again sends nothing
    client = WebClient(stack.site.base)
    assert client.login("otto") == 303
    rollout_id = browser.current_url.rsplit("=", 1)[1]
    status, _, text = client.request("POST", "/updates/step", {"id": rollout_id, "csrf": client.csrf("/updates")})
    assert status == 200 and json.loads(text)["stepped"] is False and stack.commands("upd-c", "update.apply") == []


def test_leaving_out_failed_checks_and_a_step_that_finds_the_lease_taken(stack):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    token = operator.csrf("/updates")
    picks = [f"srv-a/{c}" for c in AGENTS]
    status, headers, _ = operator.request("POST", "/updates/check", {"csrf": token, "reason": "second look", "pick[]": picks[0]})
    assert status == 303
    check_id = headers["Location"].rsplit("=", 1)[1]
    # another step holds the lease: this one changes nothing and sends nothing
    stack.site.admin_sql("UPDATE web_update_batches SET lease_until = UNIX_TIMESTAMP() + 60 WHERE id = %s", (check_id,))
    status, _, text = operator.request("POST", "/updates/step", {"csrf": token, "id": check_id})
    assert status == 200 and json.loads(text)["stepped"] is False and json.loads(text)["counts"] == {"waiting": 1}
    assert len(stack.commands("upd-a", "update.check")) == 1  # only the first test's
    stack.site.admin_sql("UPDATE web_update_batches SET lease_until = 0 WHERE id = %s", (check_id,))

    def step() -> dict:
        return json.loads(operator.request("POST", "/updates/step", {"csrf": token, "id": check_id})[2])
    wait_for(lambda: step()["state"] == "done", 60, interval_s=0.3, what="the one-client check")
    assert len(stack.commands("upd-a", "update.check")) == 2


def test_four_pages_stepping_at_once_send_each_command_once(stack):
    pages = [WebClient(stack.site.base) for _ in range(4)]
    for page, name in zip(pages, ["otto", "otto", "ada", "ada"]):
        assert page.login(name) == 303
    tokens = [page.csrf("/updates") for page in pages]
    targets = ("upd-a", "upd-c")
    before = {c: len(stack.commands(c, "update.check")) for c in targets}
    status, headers, _ = pages[0].request("POST", "/updates/check", flat({"csrf": tokens[0], "reason": "all at once",
                                                                          "pick[]": [f"srv-a/{c}" for c in targets]}))
    assert status == 303
    check_id = headers["Location"].rsplit("=", 1)[1]
    answers: list[dict] = []

    def hammer(page: WebClient, token: str) -> None:
        for _ in range(400):
            status, _, text = page.request("POST", "/updates/step", {"csrf": token, "id": check_id})
            answers.append(json.loads(text) if status == 200 else {"status": status})
            if answers[-1].get("state") != "running":
                return
    threads = [threading.Thread(target=hammer, args=pair) for pair in zip(pages, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert {a.get("state") for a in answers} <= {"running", "done"} and answers[-1]["state"] == "done", answers[-3:]
    assert {c: len(stack.commands(c, "update.check")) - before[c] for c in targets} == {"upd-a": 1, "upd-c": 1}


def test_another_operators_page_goes_on_in_the_starters_name(stack):
    otto, ada = WebClient(stack.site.base), WebClient(stack.site.base)
    assert otto.login("otto") == 303 and ada.login("ada") == 303
    status, headers, _ = otto.request("POST", "/updates/check", {"csrf": otto.csrf("/updates"), "reason": "otto's check",
                                                                 "pick[]": "srv-a/upd-c"})
    assert status == 303
    check_id = headers["Location"].rsplit("=", 1)[1]
    token = ada.csrf("/updates")

    def step() -> dict:
        return json.loads(ada.request("POST", "/updates/step", {"csrf": token, "id": check_id})[2])
    wait_for(lambda: step()["state"] == "done", 60, interval_s=0.3, what="the check stepped by Ada")
    latest = max(stack.commands("upd-c", "update.check"), key=lambda c: c["created"])
    assert latest["args"]["operator"]["name"] == "Otto Operator" and latest["args"]["reason"] == "otto's check"


def test_a_client_the_broker_does_not_know_comes_back_refused_and_its_name_stays_text(stack, browser):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    status, headers, _ = operator.request("POST", "/updates/check", {"csrf": operator.csrf("/updates"), "reason": "r",
                                                                     "pick[]": "srv-a/ghost-x"})
    assert status == 303
    log_in(browser, stack.site.base, "otto")
    browser.get(stack.site.base + headers["Location"])
    wait_for(lambda: finished(browser), 60, interval_s=0.2, what="the refusal")
    assert statuses(browser) == {"ghost-x": "error"}
    assert HOSTILE in row_text(browser, "ghost-x") and "The admin API refused" in row_text(browser, "ghost-x")
    browser.get(stack.site.base + "/updates?q=onerror")
    assert HOSTILE in text_of(browser, "updates-clients")
    assert browser.execute_script("return window.__xss === undefined")


def test_a_viewer_may_look_but_not_start_or_step(stack):
    viewer = WebClient(stack.site.base)
    assert viewer.login("vera") == 303
    status, _, page = viewer.request("GET", "/updates")
    assert status == 200 and "a-desk" in page and "check-start" not in page and "ems-pick" not in page
    (first_id, _, _) = stack.batches()[0]
    status, _, page = viewer.request("GET", f"/updates/run?id={first_id}")
    assert status == 200 and "You may watch but not act" in page and "apply-form" not in page
    assert viewer.request("GET", f"/updates/state?id={first_id}")[0] == 200
    token = viewer.csrf("/updates")
    before, commands = stack.batches(), stack.all_commands()
    for path, form in {"/updates/check": {"all": "1", "q": "desk", "reason": "r"},
                       "/updates/apply": {"batch": str(first_id), "first": "1", "size": "1", "stop": "1", "reason": "r"},
                       "/updates/step": {"id": str(first_id)}}.items():
        status, _, text = viewer.request("POST", path, {**form, "csrf": token})
        assert status == 403 and "may not do this" in text, path
    assert stack.batches() == before and stack.all_commands() == commands


@pytest.mark.parametrize("field", ["first", "size", "stop"])
def test_bad_wave_numbers_are_refused_and_change_nothing(stack, field):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    token = operator.csrf("/updates")
    (check_id, _, _) = stack.batches()[0]
    before, commands = stack.batches(), stack.all_commands()
    for bad in ["-1", "0", str(2 ** 63), "abc", "1.5", "", "10001"]:
        form = {"csrf": token, "batch": str(check_id), "first": "1", "size": "1", "stop": "1", "reason": "r", field: bad}
        status, _, text = operator.request("POST", "/updates/apply", form)
        assert status == 422 and "must be a whole number from 1 to 10000" in text and "Nothing was started" in text, (bad, status)
    assert stack.batches() == before and stack.all_commands() == commands


def test_unknown_clients_and_batches_are_refused_and_change_nothing(stack):
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    token = operator.csrf("/updates")
    before, commands = stack.batches(), stack.all_commands()
    cases = [({"pick[]": ["srv-a/upd-a", "srv-a/ghost-9"], "reason": "r"}, 400, "Unknown client: ghost-9"),
             ({"pick[]": "srv-x/upd-a", "reason": "r"}, 400, "Unknown client: upd-a"),
             ({"pick[]": "no-slash", "reason": "r"}, 400, "server/client"),
             ({"reason": "r"}, 400, "Select at least one client"),
             ({"pick[]": "srv-a/upd-a", "reason": "  "}, 422, "A reason"),
             ({"all": "1", "q": "nothing-matches-this", "reason": "r"}, 422, "No client to act on")]
    for form, expected, words in cases:
        status, _, text = operator.request("POST", "/updates/check", flat({**form, "csrf": token}))
        assert status == expected and words in text, (form, status, text[-300:])
    for bad in ["abc", "-1", "0", str(2 ** 63)]:
        assert operator.request("POST", "/updates/step", {"csrf": token, "id": bad})[0] == 400, bad
        assert operator.request("POST", "/updates/apply", {"csrf": token, "batch": bad, "first": "1", "size": "1",
                                                           "stop": "1", "reason": "r"})[0] == 400, bad
    assert operator.request("POST", "/updates/step", {"csrf": token, "id": "999999"})[0] == 404
    assert operator.request("GET", "/updates/run?id=999999")[0] == 404
    assert stack.batches() == before and stack.all_commands() == commands


def test_auto_sync_set_by_an_admin_reaches_the_worker_and_is_read_back(stack, browser):
    worker = stack.sync.worker
    log_in(browser, stack.site.base, "ada")
    browser.get(stack.site.base + "/servers")
    wait_for(lambda: text_of(browser, "auto-state").startswith("on, every 5 min"), 20, what="auto-sync read from the worker")
    browser.find_element(By.ID, "auto-every").clear()
    browser.find_element(By.ID, "auto-every").send_keys("17")
    browser.find_element(By.ID, "auto-reason").send_keys("fewer snapshots at night")
    click(browser, browser.find_element(By.ID, "auto-save"))
    wait_for(lambda: text_of(browser, "auto-state").startswith("on, every 17 min"), 20, what="the new period read back")
    assert worker.config.full_every_s == 17 * 60 and worker.config.auto is True
    click(browser, browser.find_element(By.ID, "auto-enabled"))
    browser.find_element(By.ID, "auto-reason").send_keys("maintenance window")
    click(browser, browser.find_element(By.ID, "auto-save"))
    wait_for(lambda: text_of(browser, "auto-state").startswith("off"), 20, what="auto-sync off, read back")
    assert worker.config.auto is False
    browser.get(stack.site.base + "/servers")  # a new page reads it from the worker again
    wait_for(lambda: text_of(browser, "auto-state").startswith("off"), 20, what="auto-sync off after a reload")
    shot(browser, "web-servers-auto-sync-dark.png")
    audited = [(r["caller"], r["reason"], r["setting"]) for r in stack.admin_api.audit() if r.get("action") == "sync.auto"]
    assert audited == [("Ada Admin", "fewer snapshots at night", {"enabled": True, "every_s": 1020}),
                       ("Ada Admin", "maintenance window", {"enabled": False, "every_s": 1020})]


def test_auto_sync_is_refused_for_an_operator_and_for_bad_input(stack):
    worker = stack.sync.worker
    before = (worker.config.auto, worker.config.full_every_s)
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    status, _, text = operator.request("POST", "/servers/auto", {"csrf": operator.csrf("/servers"), "enabled": "1",
                                                                 "every_min": "2", "reason": "r"})
    assert status == 403 and "may not do this" in text
    assert operator.request("GET", "/servers/auto")[0] == 200  # reading it is for everyone
    admin = WebClient(stack.site.base)
    assert admin.login("ada") == 303
    token = admin.csrf("/servers")
    audited = len(stack.admin_api.audit())
    for enabled, minutes in [("1", "0"), ("1", "-1"), ("1", str(2 ** 63)), ("1", "abc"), ("1", "1.5"), ("1", "10081"),
                             ("2", "5"), ("yes", "5"), ("", "5")]:
        status, _, text = admin.request("POST", "/servers/auto", {"csrf": token, "enabled": enabled, "every_min": minutes, "reason": "r"})
        assert status == 422 and "nothing was changed" in text, (enabled, minutes, status, text)
    status, _, _ = admin.request("POST", "/servers/auto", {"csrf": token, "enabled": "1", "every_min": "5", "reason": " "})
    assert status == 422
    assert (worker.config.auto, worker.config.full_every_s) == before and len(stack.admin_api.audit()) == audited


def test_paging_all_matching_across_servers_and_the_waves_a_rollout_is_cut_into(stack):
    stack.site.add_server("srv-b", "Branch")
    for n in range(120):
        stack.site.add_client("srv-b", f"bulk-b{n:03}", f"bulk-b{n:03}")
    for n in range(5):
        stack.site.add_client("srv-a", f"bulk-a{n}", f"bulk-a{n}")
    operator = WebClient(stack.site.base)
    assert operator.login("otto") == 303
    status, _, page = operator.request("GET", "/updates?q=bulk&page=3")
    assert status == 200 and "125 clients match · page 3 of 3" in page and page.count('name="pick[]"') == 25
    assert "120 clients match" in operator.request("GET", "/updates?q=bulk&server=srv-b")[2]
    token = operator.csrf("/updates")
    status, headers, _ = operator.request("POST", "/updates/check", {"csrf": token, "all": "1", "q": "bulk", "server": "srv-b",
                                                                     "reason": "branch patch review"})
    assert status == 303
    check_id = int(headers["Location"].rsplit("=", 1)[1])
    rows = stack.site.admin_sql("SELECT server_id, COUNT(*), MIN(wave), MAX(wave) FROM web_update_targets WHERE batch_id = %s "
                                "GROUP BY server_id", (check_id,))
    assert rows == (("srv-b", 120, 1, 1),)

    def step() -> dict:  # none of these clients is on this bus: each comes back refused, quickly
        return json.loads(operator.request("POST", "/updates/step", {"csrf": token, "id": str(check_id)})[2])
    wait_for(lambda: step()["state"] == "done", 120, interval_s=0.1, what="120 refusals")
    assert stack.site.admin_sql("SELECT status, COUNT(*) FROM web_update_targets WHERE batch_id = %s GROUP BY status",
                                (check_id,)) == (("error", 120),)
    form = {"csrf": token, "batch": str(check_id), "first": "1", "size": "50", "stop": "3", "reason": "r"}
    status, _, text = operator.request("POST", "/updates/apply", {**form, "skip_failed": "1"})
    assert status == 422 and "No client to act on" in text  # every check failed: nothing is left to update
    status, headers, _ = operator.request("POST", "/updates/apply", form)
    assert status == 303
    rollout_id = int(headers["Location"].rsplit("=", 1)[1])
    waves = stack.site.admin_sql("SELECT wave, COUNT(*) FROM web_update_targets WHERE batch_id = %s GROUP BY wave ORDER BY wave",
                                 (rollout_id,))
    assert waves == ((1, 1), (2, 50), (3, 50), (4, 19))
    assert stack.site.admin_sql("SELECT waves, current_wave, state, stop_failures FROM web_update_batches WHERE id = %s",
                                (rollout_id,)) == ((4, 1, "running", 3),)


def test_a_real_check_result_reads_as_a_count_and_names():
    """What an agent that really ran its package manager returns (not a dry run): the count and the names."""
    root = Path(__file__).resolve().parents[1] / "web" / "src"
    record = {"id": "c1", "name": "update.check", "status": "done",
              "result": {"ok": True, "output": {"update_count": 2, "updates": ["openssl", "tzdata"], "dry_run": False}}}
    code = f"require '{root}/bootstrap.php'; echo json_encode(Ems\\Web\\CommandView::of(json_decode(stream_get_contents(STDIN), true)));"
    view = json.loads(subprocess.run(["php", "-r", code], input=json.dumps(record), capture_output=True, text=True, check=True).stdout)
    assert (view["update_count"], view["updates"], view["dry_run"]) == (2, ["openssl", "tzdata"], False)
    assert view["summary"] == "Done: 2 updates pending; openssl, tzdata"
