"""Every page of the web UI, dark and light, at 1280x800 in a real headless Chromium over a real php -S and
MariaDB, as each role: every GET route in web/src/Router.php answers (a page, JSON, CSV or a clear refusal:
never a 500), every page a role may open renders with its tab marked, shows no PHP warning, raises no
browser console error (a Content-Security-Policy violation is one) and fits the window's width.
The pages go to ``$EMS_SCREENSHOT_DIR`` as ``web-tour-<page>-<theme>.png`` (``make screenshots``) and nowhere else.
"""
from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By

from conftest import wait_for
from test_web_ui import browser, log_in, log_out, shot, switch_theme  # noqa: F401  (browser is a fixture)
from web_support import ACCOUNTS, WebClient, WebSite, php_routes

T0 = 1_780_000_000.0
#: what PHP prints when a page warns: a page that shows one has a bug the person should not see
PHP_NOISE = ("Warning:", "Notice:", "Deprecated:", "Fatal error", "Uncaught", "Stack trace")
ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("tour"))
    site.add_server("srv-a", "Head office")
    site.add_server("srv-b", "Branch Lyon")
    for i in range(30):
        site.add_client("srv-a" if i % 2 else "srv-b", f"c-{i:02d}", f"desk-{i:02d}.example.org", online=i % 4 != 0,
                        cpu=float(i * 3), memory=25.0 + i * 2, disk=15.0 + i * 2.5, user=f"employee{i:02d}",
                        os_name="Windows" if i % 3 == 0 else "Linux")
    for i in range(12):
        client = f"c-{i:02d}"
        site.add_row("snapshot_sessions", "srv-a", {"id": i + 1, "client_id": client, "started": T0 + i * 600,
                                                    "ended": T0 + i * 600 + 300, "logged_in_user": f"employee{i:02d}",
                                                    "end_reason": "logout"})
        site.add_row("snapshot_client_logs", "srv-a", {"id": i + 1, "client_id": client, "ts": T0 + i, "level": "WARNING",
                                                       "logger": "agent.disk"}, {"message": f"disk {80 + i} % full on /home"})
        site.add_row("snapshot_messages", "srv-a", {"id": i + 1, "client_id": client, "ts": T0 + i, "direction": "out",
                                                    "operator": "Otto Operator", "status": "read", "status_ts": T0 + i + 5},
                     {"body": "Your update is ready: please restart at lunch."})
        site.add_row("snapshot_fileops", "srv-a", {"id": i + 1, "client_id": client, "ts": T0 + i, "operator": "Otto Operator",
                                                   "op": "download", "size": 4096 * (i + 1), "ok": 1},
                     {"path": f"/home/employee{i:02d}/report.pdf", "error": ""})
        site.add_row("snapshot_security", "srv-b", {"id": i + 1, "origin": "broker", "subject": client, "ts": T0 + i,
                                                    "event": "auth.refused", "severity": "warning",
                                                    "detail": json.dumps({"peer": "10.0.0.%d" % i})})
        site.add_row("snapshot_captures", "srv-a", {"id": i + 1, "client_id": client, "ts": T0 + i, "width": 1280,
                                                    "height": 800, "format": "jpeg", "quality": 70, "operator": "Otto Operator"})
    yield site
    site.close()


def get_routes() -> dict[str, str]:
    """GET path -> least role (None: anyone) for every GET route."""
    return {key.split(" ", 1)[1]: role for key, (_, _, role) in php_routes().items() if key.startswith("GET ")}


def answers(site, name: str) -> dict[str, tuple[int, str]]:
    """For every GET route: (status, content type) as ``name`` sees it without any query string."""
    client = WebClient(site.base)
    assert client.login(name) == 303
    found = {}
    for path in get_routes():
        status, headers, text = client.request("GET", path)
        found[path] = (status, headers.get("Content-Type", ""))
        unavailable = status == 503 and "admin API is off" in text  # a read of the admin API, which this site has not
        assert status < 500 or unavailable, f"GET {path} as {name}: {status} {text[:300]}"
        if headers.get("Content-Type", "").startswith("text/html"):
            assert not any(noise in text for noise in PHP_NOISE), f"GET {path} as {name} shows PHP noise: {text[:500]}"
    return found


@pytest.mark.parametrize("name", sorted(ACCOUNTS))
def test_every_get_route_answers_each_role_without_a_server_error(site, name):
    rank = ROLE_RANK[ACCOUNTS[name][0]]
    for path, (status, kind) in answers(site, name).items():
        role = get_routes()[path]
        if role is not None and ROLE_RANK[role] > rank:
            assert status == 403, f"GET {path} as {name} ({ACCOUNTS[name][0]}) needs {role}: got {status}"
        else:
            # 4xx: no id given, or (403) an audited history export before a reason was given
            assert status in (200, 303, 400, 403, 404, 422, 503), f"GET {path} as {name}: {status}"
            assert kind.split(";")[0] in ("text/html", "application/json", "text/csv"), f"GET {path}: {kind}"


def html_pages(site) -> list[str]:
    """The GET routes that answer an admin with a whole HTML page (the tabs a person opens)."""
    client = WebClient(site.base)
    assert client.login("ada") == 303
    pages = []
    for path in get_routes():
        status, headers, text = client.request("GET", path)
        if status == 200 and headers.get("Content-Type", "").startswith("text/html") and "<nav" in text:
            pages.append(path)
    return pages


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
            and "favicon.ico" not in entry["message"]]


def test_every_page_renders_in_both_themes_at_1280x800_without_console_errors(site, browser):
    pages = html_pages(site)
    assert {"/clients", "/servers", "/sessions", "/logs", "/security", "/users", "/operations"} <= set(pages), pages
    log_in(browser, site.base, "ada")
    for tab in ("fileops", "messages", "captures"):  # the audited tabs open with a reason (the form is a page too)
        browser.get(site.base + "/" + tab)
        browser.find_element(By.ID, "history-reason").send_keys("the tour of every page")
        browser.find_element(By.ID, "history-reason-submit").click()
        wait_for(lambda: browser.find_elements(By.ID, "history-grant"), 10, what=f"{tab} opened with a reason")
    browser.get(site.base + "/logs?q=disk")
    browser.find_element(By.ID, "report-name").send_keys("Disk warnings")
    browser.find_element(By.ID, "report-save-button").click()
    wait_for(lambda: "Disk warnings" in browser.page_source, 10, what="the saved report")
    browser.get_log("browser")  # start from an empty console
    for theme in ("dark", "light"):
        if theme == "light":
            switch_theme(browser, "light")
        for path in pages:
            browser.get(site.base + path)
            wait_for(lambda: browser.execute_script("return document.readyState") == "complete", 10, what=path)
            assert browser.execute_script("return document.documentElement.dataset.bsTheme") == theme, path
            active = browser.find_elements(By.CSS_SELECTOR, "nav .nav-link.active")
            tab = "/" + path.strip("/").split("/")[0]
            assert [a.get_attribute("href").removeprefix(site.base) for a in active] == [tab], f"{path}: its tab is not marked"
            body = browser.find_element(By.TAG_NAME, "body").text
            assert not any(noise in body for noise in PHP_NOISE), f"{path}: {body[:300]}"
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            widest = browser.execute_script(  # what sticks out, to say where to look
                "var w = document.documentElement.clientWidth, out = [];"
                "document.querySelectorAll('body *').forEach(function (e) { var r = e.getBoundingClientRect();"
                " if (r.right > w + 1) { out.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right)); } });"
                "return out.slice(0, 5);")
            assert overflow <= 0, f"{path} ({theme}) is {overflow}px wider than a 1280px window: {widest}"
            assert console_errors(browser) == [], f"{path} ({theme})"
            name = path.strip("/").replace("/", "-") or "home"
            shot(browser, f"web-tour-{name}-{theme}.png")
    log_out(browser, site.base)


@pytest.mark.parametrize("name", sorted(ACCOUNTS))
def test_every_operations_view_answers_each_role_without_the_admin_api(site, name):
    """Tried: each role opening every Operations view (inbox, alerts, approvals, bulk runs, templates, schedules,
    broadcasts, one broadcast) on a site with no admin API. Expected: 200, the view's tab marked, the sentence that
    the admin API is not configured, no PHP noise; the nav bar's Inbox link without a count."""
    client = WebClient(site.base)
    assert client.login(name) == 303
    for query in ("inbox", "alerts", "approvals", "bulk", "templates", "schedules", "broadcasts", "broadcasts&broadcast=b-1"):
        status, _, text = client.request("GET", f"/operations?view={query}")
        view = query.split("&")[0]
        assert status == 200 and f'id="ops-tab-{view}"' in text and "admin API is not configured" in text, (query, status)
        assert f'class="nav-link active" id="ops-tab-{view}"' in text, query
        assert 'id="nav-inbox"' in text and 'id="inbox-badge"' not in text
        assert not any(noise in text for noise in PHP_NOISE), f"{query}: {text[:500]}"
