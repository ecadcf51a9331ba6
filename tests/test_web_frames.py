"""The web UI's pictures against the real thing: ``ems up`` on Xvfb (broker, persister, sync worker, private
MariaDB, the web UI's php -S, a local agent with a real screen) plus a display-less agent. An operator looks at
the real agent's screen from the Clients tab in a headless Chromium (reason in a modal), the employee's access
log and the bus audit name the web user and the reason; the Captures tab shows a real stored capture's preview
and full size through the capture bridge, audited the same way. A viewer sees no action and is refused; an
empty reason never reaches a bridge; each bridge exit code has its message, checked through PHP where a real
failure can be made (offline agent, no display, unknown agent, no bridge keys, broker down).
"""
# ruff: noqa: F811  (pytest fixtures imported from other test modules are test arguments here)
from __future__ import annotations

import http.client
import io
import json
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from bench.harness.xvfb import Xvfb
from bridges.bridge_call import CAPTURE, LATEST_FRAME, Exit
from broker.cli.web_serve import CONFIG_FILE, wait_listening
from broker.core.profile import load
from sync.mariadb import free_port
from sync.mysql_url import connect
from sync.web_db import WEB_FILE, read_credentials
from sync.web_users import add_user

from conftest import wait_for
from test_bridges import H, W, LiveStack
from test_web_ui import browser, click, log_in, shot  # noqa: F401  (browser is a fixture)
from web_support import ACCOUNTS, PASSWORD, WebClient, WebSite

REASON = "the user reported a frozen window, ticket 815"
XSS_HOST = '<img src=x onerror="document.title=\'pwned\'">'
XSS_CLIENT = '"><svg onload=alert(1)>'


class WebLive(LiveStack):
    """``ems up`` with its web UI on a random port, web accounts in its database, and a third agent to stop."""

    def __init__(self, root: Path):
        self.web_port = free_port()
        super().__init__(root, "--web-listen", f"127.0.0.1:{self.web_port}")
        try:
            self._start_web()
        except BaseException:
            self.close()  # a failed start leaves nothing running
            raise

    def _start_web(self) -> None:
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.server_id = load(self.data).server_key
        wait_for(lambda: (self.data.root / CONFIG_FILE).exists(), 60, what="the web UI's configuration")
        wait_listening("127.0.0.1", self.web_port, timeout_s=60)
        for name, (role, display) in ACCOUNTS.items():
            add_user(self.data.root, name, role, PASSWORD, display)
        self.leaving = self.start_headless_agent("leaving-1")
        wait_for(lambda: {self.local_agent, "headless-1", "leaving-1"} <= set(self.mysql_clients()), 60, interval_s=0.2,
                 what="the agents synced into MySQL")
        self.leaving.terminate()  # by its pid: its row stays in MySQL, the broker sees it go
        self.leaving.wait(10)
        wait_for(lambda: "leaving-1" not in self.online(), 30, interval_s=0.2, what="leaving-1 offline")

    def mysql(self, sql: str, params: tuple = ()) -> list[tuple]:
        with connect(read_credentials(self.data.root / WEB_FILE), autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def mysql_clients(self) -> list[str]:
        return [r[0] for r in self.mysql("SELECT client_id FROM snapshot_clients WHERE server_id = %s", (self.server_id,))]

    def access_log(self) -> list[dict]:
        path = self.access_dir / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def audit(self, via: str) -> list[dict]:
        return [r for r in self.admin.request("store.query", kind="audit", limit=500) if r["operator"] == via]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    if not Xvfb.installed():
        pytest.fail("Xvfb is not installed: run installer/install.sh --dev")
    stack = WebLive(tmp_path_factory.mktemp("frames"))
    yield stack
    stack.close()


def operator(live) -> WebClient:
    client = WebClient(live.base)
    assert client.login("otto") == 303
    return client


def post(client: WebClient, path: str, form: dict) -> tuple[int, object, str]:
    return client.request("POST", path, {**form, "csrf": client.csrf("/clients")})


def jpeg_post(client: WebClient, path: str, form: dict) -> tuple[int, dict, bytes]:
    """A POST whose answer may be a JPEG: (status, headers in lower case, body bytes)."""
    conn = http.client.HTTPConnection(client.address, timeout=60)
    try:
        conn.request("POST", path, body=urllib.parse.urlencode({**form, "csrf": client.csrf("/clients")}),
                     headers={"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
                              "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    finally:
        conn.close()


def screen_of(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (W, H)
    red = image.convert("RGB").getpixel((200, 175))  # LiveStack's red box
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red
    return image


def test_an_operator_looks_at_a_real_screen_and_the_employee_and_the_audit_see_who_and_why(live, browser):
    log_in(browser, live.base, "otto")
    browser.get(live.base + "/clients")
    row = f'#clients-table tr[data-client="{live.local_agent}"]'
    click(browser, browser.find_element(By.CSS_SELECTOR, row + " button.ems-look"))
    wait_for(lambda: browser.find_element(By.ID, "look-reason").is_displayed(), 10, what="the reason dialog")
    assert int(browser.find_element(By.ID, "look-reason").get_attribute("maxlength")) == 500  # the bus's limit
    seen = len(live.access_log())
    reason = browser.find_element(By.ID, "look-reason")
    browser.find_element(By.ID, "look-confirm").click()  # no reason: the form does not submit
    assert browser.execute_script("return arguments[0].validity.valueMissing", reason)
    reason.send_keys("   ")
    browser.find_element(By.ID, "look-confirm").click()  # blanks only: refused in the page, nothing sent
    assert browser.find_element(By.ID, "look-error").text == "A reason is required."
    assert len(live.access_log()) == seen
    reason.clear()
    reason.send_keys(REASON)
    browser.find_element(By.ID, "look-confirm").click()
    status = lambda: browser.find_element(By.ID, "look-status").get_attribute("data-state")  # noqa: E731
    wait_for(lambda: status() in ("shown", "refused"), 60, what="the screen or a refusal")
    assert status() == "shown", browser.find_element(By.ID, "look-error").text
    image = browser.find_element(By.ID, "look-image")
    wait_for(lambda: image.get_attribute("data-width"), 10, what="the picture decoded")
    assert (int(image.get_attribute("data-width")), int(image.get_attribute("data-height"))) == (W, H)
    assert image.get_attribute("src").startswith("blob:")
    red = browser.execute_script(  # the picture the page shows is the agent's screen: LiveStack's red box
        "var c = document.createElement('canvas'); c.width = arguments[0].naturalWidth; c.height = arguments[0].naturalHeight;"
        "var g = c.getContext('2d'); g.drawImage(arguments[0], 0, 0); return Array.from(g.getImageData(200, 175, 1, 1).data);", image)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red
    shot(browser, "web-look-at-screen-dark.png")

    seen_by = f"Otto Operator via {LATEST_FRAME.client_id}"
    entries = [{k: e.get(k) for k in ("kind", "operator", "reason")} for e in live.access_log()]
    assert {"kind": "capture", "operator": seen_by, "reason": REASON} in entries
    commands = wait_for(lambda: [r for r in live.audit(LATEST_FRAME.client_id) if r["action"] == "command"
                                 and r["reason"] == REASON], 20, interval_s=0.2, what="the command in the bus audit")
    detail = commands[0]["detail"]
    assert (detail["operator_name"], detail["operator_id"], detail["via"]) == ("Otto Operator", "web:otto", LATEST_FRAME.client_id)


def test_the_frame_answer_is_a_fresh_uncached_jpeg_of_the_screen(live):
    status, headers, jpeg = jpeg_post(operator(live), "/clients/frame",
                                      {"server": live.server_id, "client": live.local_agent, "reason": REASON})
    assert status == 200 and headers["content-type"] == "image/jpeg", jpeg[:300]
    assert "no-store" in headers["cache-control"]
    screen_of(jpeg)


def test_a_viewer_sees_no_action_and_is_refused(live):
    viewer = WebClient(live.base)
    assert viewer.login("vera") == 303
    status, _, page = viewer.request("GET", "/clients")
    assert status == 200 and live.local_agent in page and "ems-look" not in page and "look-dialog" not in page
    seen = len(live.access_log())
    for path in ("/clients/frame", "/captures/previews", "/captures/image"):
        status, _, text = post(viewer, path, {"server": live.server_id, "client": live.local_agent, "ids": "1", "id": "1",
                                              "reason": REASON})
        assert status == 403 and "may not do this" in text, path
    assert len(live.access_log()) == seen


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_a_missing_or_too_long_reason_is_refused_without_calling_a_bridge(live, reason):
    client = operator(live)
    seen, audited = len(live.access_log()), len(live.audit(CAPTURE.client_id))
    for path, form in {"/clients/frame": {"client": live.local_agent}, "/captures/image": {"id": "1"},
                       "/captures/previews": {"ids": "1"}}.items():
        status, _, text = post(client, path, {**form, "server": live.server_id, "reason": reason})
        assert status == 422 and "Say why you look" in json.loads(text)["error"], (path, status, text)
    assert len(live.access_log()) == seen and len(live.audit(CAPTURE.client_id)) == audited


def message(code: Exit) -> str:
    return php_messages()[str(int(code))][1]


def php_messages() -> dict:
    root = Path(__file__).resolve().parents[1] / "web" / "src"
    code = f"require '{root}/bootstrap.php'; echo json_encode(Ems\\Web\\Bridge::MESSAGES);"
    return json.loads(subprocess.run(["php", "-r", code], capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize("client, code, status", [("leaving-1", Exit.AGENT_OFFLINE, 409), ("headless-1", Exit.NO_DISPLAY, 409)])
def test_a_real_failure_reads_as_its_message(live, client, code, status):
    answer = post(operator(live), "/clients/frame", {"server": live.server_id, "client": client, "reason": REASON})
    assert answer[0] == status, answer
    body = json.loads(answer[2])
    assert body["error"] == message(code) and body["code"] == code and client in body["detail"]


def test_every_bridge_exit_code_has_its_own_clear_message():
    """The table: every failure code of bridges.bridge_call.Exit has an HTTP status and a message, none shared."""
    table = php_messages()
    failures = {str(int(code)) for code in Exit if code != Exit.OK}
    assert set(table) == failures
    assert len({text for _, text in table.values()}) == len(table)
    for code, (status, text) in table.items():
        assert 400 <= status < 600 and text.endswith(".") and len(text) > 30, (code, status, text)
    for code, words in {Exit.AGENT_OFFLINE: "offline", Exit.NO_DISPLAY: "no screen", Exit.NOT_ALLOWED: "Not allowed",
                        Exit.UNREACHABLE: "not running", Exit.TIMEOUT: "in time", Exit.UNKNOWN_AGENT: "does not know",
                        Exit.SETUP: "ems up", Exit.UNKNOWN_CAPTURE: "no longer"}.items():
        assert words in message(code), code


def test_the_captures_tab_shows_a_real_captures_preview_and_full_size(live, browser):
    wait_for(lambda: live.mysql("SELECT id FROM snapshot_captures WHERE server_id = %s AND client_id = %s",
                                (live.server_id, live.local_agent)), 30, interval_s=0.2, what="a capture synced into MySQL")
    log_in(browser, live.base, "otto")
    browser.get(live.base + "/captures?client=" + live.local_agent)
    browser.find_element(By.ID, "history-reason").send_keys(REASON)  # the tab itself asks why first (audited history)
    browser.find_element(By.ID, "history-reason-submit").click()
    wait_for(lambda: browser.find_elements(By.ID, "history-grant"), 10, what="the Captures tab opened with the reason")
    assert browser.find_element(By.ID, "pictures-reason").get_attribute("value") == REASON  # offered again for the pictures
    cells = browser.find_elements(By.CSS_SELECTOR, "td.ems-picture[data-capture]")
    assert cells and not browser.find_elements(By.CSS_SELECTOR, "img.ems-thumb")  # nothing read before a reason
    browser.find_element(By.ID, "pictures-show").click()
    wait_for(lambda: browser.find_element(By.ID, "pictures-reason").is_displayed(), 10, what="the reason dialog")
    browser.find_element(By.ID, "pictures-reason").clear()
    browser.find_element(By.ID, "pictures-reason").send_keys("  ")
    browser.find_element(By.ID, "pictures-confirm").click()
    assert browser.find_element(By.ID, "pictures-error").text == "A reason is required."
    assert not browser.find_elements(By.CSS_SELECTOR, "img.ems-thumb")
    browser.find_element(By.ID, "pictures-reason").clear()
    browser.find_element(By.ID, "pictures-reason").send_keys("checking what support saw, ticket 815")
    browser.find_element(By.ID, "pictures-confirm").click()
    wait_for(lambda: browser.find_element(By.ID, "pictures-status").get_attribute("data-state"), 60, what="the previews")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "img.ems-thumb")
    assert len(thumbs) == len(cells), browser.find_element(By.ID, "pictures-status").text
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", thumbs[0]) > 0, 10, what="a preview decoded")
    assert browser.execute_script("return arguments[0].naturalWidth", thumbs[0]) < W
    click(browser, thumbs[0])
    full = browser.find_element(By.ID, "picture-full")
    wait_for(lambda: full.get_attribute("data-width") or browser.find_element(By.ID, "picture-error").text, 60, what="the full size")
    assert (full.get_attribute("data-width"), full.get_attribute("data-height")) == (str(W), str(H)), \
        browser.find_element(By.ID, "picture-error").text
    shot(browser, "web-captures-dark.png")

    def audited() -> dict | None:
        rows = {r["action"]: r for r in live.audit(CAPTURE.client_id)}
        return rows if {"capture.thumbnails", "capture.view"} <= set(rows) else None

    rows = wait_for(audited, 20, interval_s=0.2, what="the previews and the full size in the audit trail")
    for row in rows.values():  # the audit row itself names the person, with the bridge as via
        assert (row["reason"], row["operator_name"], row["via"]) == ("checking what support saw, ticket 815", "Otto Operator",
                                                                     CAPTURE.client_id)
        assert (row["detail"]["operator_name"], row["detail"]["operator_id"], row["detail"]["via"]) == \
            ("Otto Operator", "web:otto", CAPTURE.client_id)


def test_a_stored_capture_at_full_size_through_php(live):
    (capture_id,) = live.mysql("SELECT MAX(id) FROM snapshot_captures WHERE server_id = %s AND client_id = %s",
                               (live.server_id, live.local_agent))[0]
    client = operator(live)
    status, headers, jpeg = jpeg_post(client, "/captures/image", {"server": live.server_id, "id": str(capture_id), "reason": REASON})
    assert status == 200 and headers["content-type"] == "image/jpeg" and "no-store" in headers["cache-control"]
    screen_of(jpeg)
    status, _, text = post(client, "/captures/image", {"server": "another-server", "id": str(capture_id), "reason": REASON})
    assert status == 409 and "another EMS server" in json.loads(text)["error"]
    status, _, text = post(client, "/captures/image", {"server": live.server_id, "id": "99999999", "reason": REASON})
    assert status == 404


@pytest.fixture(scope="module")
def other_site(live, mysql_admin_url, tmp_path_factory):
    """A web site on the test MariaDB whose live side is ``live``'s server, run with broken bridge setups and
    hostile names: the same PHP, its own config."""
    root = tmp_path_factory.mktemp("other-web")
    config = json.loads((live.data.root / CONFIG_FILE).read_text())["live"]
    site = WebSite(mysql_admin_url, root, live=config)
    site.add_server(live.server_id, "Head office")
    site.add_server("srv-far", "Far away")
    site.add_client(live.server_id, live.local_agent, XSS_HOST)
    site.add_client(live.server_id, "nobody-9", "never-enrolled")
    site.add_client(live.server_id, XSS_CLIENT, "odd-id")
    site.add_client("srv-far", "far-1", "far-pc")
    yield site
    site.close()


def rewrite_live(site: WebSite, **changes) -> None:
    values = json.loads(site.config.read_text())
    values["live"].update(changes)
    site.config.write_text(json.dumps(values))


def test_setup_failures_unknown_agents_and_other_servers_read_as_their_messages(live, other_site, tmp_path):
    client = WebClient(other_site.base)
    assert client.login("otto") == 303
    form = {"server": live.server_id, "client": live.local_agent, "reason": REASON}
    status, _, text = post(client, "/clients/frame", {**form, "client": "nobody-9"})
    assert status == 404 and json.loads(text)["error"] == message(Exit.UNKNOWN_AGENT)
    status, _, text = post(client, "/clients/frame", {**form, "server": "srv-far", "client": "far-1"})
    assert status == 409 and "another EMS server" in json.loads(text)["error"]
    original = json.loads(other_site.config.read_text())["live"]
    try:
        rewrite_live(other_site, data_dir=str(tmp_path))  # no profile, no bridge keys
        status, _, text = post(client, "/clients/frame", form)
        assert status == 503 and json.loads(text)["error"] == message(Exit.SETUP)
    finally:
        rewrite_live(other_site, **original)
    status, headers, jpeg = jpeg_post(client, "/clients/frame", form)  # the real config again: it works
    assert status == 200 and headers["content-type"] == "image/jpeg", jpeg[:300]
    screen_of(jpeg)


def test_names_in_the_dialog_and_the_disabled_title_are_text(other_site, browser):
    log_in(browser, other_site.base, "otto")
    browser.get(other_site.base + "/clients?per=100")
    title = browser.title
    far = browser.find_element(By.CSS_SELECTOR, 'tr[data-client="far-1"] span[title]')
    assert "another EMS server" in far.get_attribute("title")
    assert far.find_element(By.TAG_NAME, "button").get_attribute("disabled") == "true"
    for host, client_id in ((XSS_HOST, None), ("odd-id", XSS_CLIENT)):
        rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#clients-table tbody tr")
                if r.find_element(By.CSS_SELECTOR, ".ems-host").text == host]
        click(browser, rows[0].find_element(By.CSS_SELECTOR, "button.ems-look"))
        wait_for(lambda: browser.find_element(By.ID, "look-reason").is_displayed(), 10, what="the reason dialog")
        question = browser.find_element(By.ID, "look-question").text
        assert host in question and (client_id is None or client_id in question), question
        assert not browser.find_elements(By.CSS_SELECTOR, "#look-dialog svg, #look-question img")
        browser.find_element(By.ID, "look-cancel").click()
        wait_for(lambda: not browser.find_element(By.ID, "look-dialog").is_displayed(), 10, what="the dialog closed")
    assert browser.title == title and "pwned" not in browser.title


def test_the_computers_own_capture_limit_reads_as_not_allowed(live):
    """Last in this module: it spends the local agent's captures for this minute (captures_per_minute, 4 by default)."""
    client = operator(live)
    form = {"server": live.server_id, "client": live.local_agent, "reason": REASON}
    answers = [jpeg_post(client, "/clients/frame", form) for _ in range(5)]
    status, _, body = answers[-1]
    assert status == 403, [a[0] for a in answers]
    answer = json.loads(body)
    assert answer["error"] == message(Exit.NOT_ALLOWED) and "refused" in answer["detail"], answer
