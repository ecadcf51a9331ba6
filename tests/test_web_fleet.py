"""The web Fleet view: server-drawn SVG charts over a real MariaDB and php -S. Every number a chart shows
equals what plain SQL over the seeded snapshot tables says; hostile server names, OS names and hostnames
reach the SVG only as text; the charts are images with a title and a description, and draw in a real
headless Chromium in both themes.
"""
from __future__ import annotations

import collections
import re
import time
import xml.etree.ElementTree as ET

import pytest
from selenium.webdriver.common.by import By

from test_web_ui import browser, log_in, shot  # noqa: F401  (browser is a fixture)
from web_support import WebClient, WebSite

SVG = "{http://www.w3.org/2000/svg}"
XSS_SERVER = '<script>alert("srv")</script>&\'"'
XSS_OS = '<img src=x onerror=alert("os")>'
XSS_HOST = '"><svg onload=alert("host")>'
DAY = 86400.0
AGE_BUCKETS = ["under 1 day", "1–7 days", "7–30 days", "30 days or more"]


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    site.add_server("srv-b", XSS_SERVER)
    site.add_server("srv-c", "")  # no name: shown by its id; never synced
    oses = ["Linux", "Windows", "Darwin", XSS_OS]
    for i in range(41):
        server = ("srv-a", "srv-b", "srv-c")[i % 3]
        cpu = None if i % 13 == 0 else [0.0, 9.99, 10.0, 55.5, 99.9, 100.0, 37.0][i % 7]
        site.add_client(server, f"c-{i:02d}", XSS_HOST if i == 40 else f"host-{i:02d}", online=i % 4 != 0, cpu=cpu,
                        memory=float((i * 17) % 101), disk=float((i * 29) % 101), os_name=oses[i % 4] if i % 9 else "")
    now = time.time()
    with site.writer() as conn, conn.cursor() as cursor:  # ages: a spread over the buckets, the hostile host the oldest
        for i in range(41):
            cursor.execute("UPDATE snapshot_clients SET last_seen = %s WHERE client_id = %s",
                           (now - (200 * DAY if i == 40 else (i * 1.7) * DAY), f"c-{i:02d}"))
        cursor.execute("UPDATE servers SET last_sync = %s WHERE server_id = 'srv-a'", (now - 42,))
        cursor.execute("UPDATE servers SET last_sync = %s WHERE server_id = 'srv-b'", (now - 5400,))
        cursor.execute("UPDATE servers SET last_sync = NULL WHERE server_id = 'srv-c'")
    yield site
    site.close()


def fleet_page(site, query: str = "") -> str:
    client = WebClient(site.base)
    assert client.login("vera") == 303  # a viewer may see the fleet
    status, _, page = client.request("GET", "/fleet" + query)
    assert status == 200
    return page


def chart(page: str, chart_id: str) -> ET.Element:
    """The chart's SVG, parsed as XML (it must be well formed: an unescaped label would break it or add elements)."""
    match = re.search(r'<svg[^>]*id="' + chart_id + r'".*?</svg>', page, re.S)
    assert match, chart_id
    return ET.fromstring(match.group(0))


def bars(svg: ET.Element) -> dict:
    """label -> {series: value} (one series: the value itself)."""
    out = {}
    for row in svg.iter(SVG + "g"):
        values = {rect.get("data-series", ""): float(rect.get("data-value")) for rect in row.iter(SVG + "rect")}
        out[row.get("data-label")] = next(iter(values.values())) if len(values) == 1 else values
    return out


def clients(site) -> list[dict]:
    """The SQL truth: every client row with its server's shown name and its figures."""
    rows = site.admin_sql(
        "SELECT COALESCE(NULLIF(s.name, ''), c.server_id), c.online, c.os, c.hostname, c.last_seen, "
        "CAST(JSON_VALUE(c.sysinfo, '$.cpu_percent') AS DOUBLE), CAST(JSON_VALUE(c.sysinfo, '$.memory_percent') AS DOUBLE), "
        "CAST(JSON_VALUE(c.sysinfo, '$.disk_percent') AS DOUBLE) FROM snapshot_clients c LEFT JOIN servers s USING (server_id)")
    keys = ("server", "online", "os", "host", "last_seen", "cpu", "memory", "disk")
    return [dict(zip(keys, row)) for row in rows]


def test_every_chart_number_equals_the_sql_truth(site):
    page = fleet_page(site)
    truth = clients(site)
    online = collections.defaultdict(lambda: {"online": 0.0, "offline": 0.0})
    for c in truth:
        online[c["server"]]["online" if c["online"] else "offline"] += 1
    assert bars(chart(page, "chart-online")) == dict(online)
    assert f"{len(truth)} clients, {sum(1 for c in truth if c['online'])} online" in page
    for metric in ("cpu", "memory", "disk"):
        counts = collections.Counter(min(9, int(c[metric] // 10)) for c in truth if c[metric] is not None)
        shown = bars(chart(page, f"chart-{metric}"))
        assert shown == {f"{i * 10}–{i * 10 + 10}": float(counts[i]) for i in range(10)}, metric
    assert sum(bars(chart(page, "chart-cpu")).values()) == len([c for c in truth if c["cpu"] is not None])
    assert f"{sum(1 for c in truth if c['cpu'] is None)} clients without a figure" in page
    assert bars(chart(page, "chart-os")) == {k: float(v) for k, v in collections.Counter(c["os"] or "unknown" for c in truth).items()}
    assert sum(bars(chart(page, "chart-ages")).values()) == len(truth)


def test_last_seen_stale_clients_and_sync_lag(site):
    now = time.time()
    truth = clients(site)
    page = fleet_page(site, "?days=30")
    ages = bars(chart(page, "chart-ages"))
    edges = [0, 1, 7, 30, float("inf")]
    for label, lo, hi in zip(AGE_BUCKETS, edges, edges[1:]):
        assert ages[label] == sum(1 for c in truth if lo <= (now - c["last_seen"]) / DAY < hi), label
    stale = sorted((c for c in truth if now - c["last_seen"] > 30 * DAY), key=lambda c: c["last_seen"])
    assert f"{len(stale)} not seen for more than" in page and '<option value="30" selected>' in page
    shown = bars(chart(page, "chart-stale"))
    assert list(shown) == [f"{c['host']} ({c['server']})" for c in stale[:10]]
    for c in stale[:10]:
        assert shown[f"{c['host']} ({c['server']})"] == pytest.approx((now - c["last_seen"]) / DAY, abs=0.01)
    lag = bars(chart(page, "chart-lag"))
    assert set(lag) == {"Head office", XSS_SERVER}
    assert lag["Head office"] == pytest.approx(42, abs=30) and lag[XSS_SERVER] == pytest.approx(5400, abs=30)
    assert "srv-c: never synced" in page
    assert fleet_page(site, "?days=1;DROP%20TABLE%20servers").count('<option value="7" selected>') == 1  # allowlisted


def test_hostile_names_reach_the_svg_only_as_text(site):
    page = fleet_page(site, "?days=90")
    for chart_id in ("chart-online", "chart-lag", "chart-os", "chart-stale"):
        svg = chart(page, chart_id)
        assert not [el for el in svg.iter() if el.tag.split("}")[-1] in ("script", "img", "foreignObject")
                    or (el.tag == SVG + "svg" and el is not svg)], chart_id
        assert not [name for el in svg.iter() for name in el.attrib if name.lower().startswith("on")], chart_id
    texts = lambda chart_id: [t.text for t in chart(page, chart_id).iter(SVG + "title")]  # noqa: E731
    assert any(XSS_SERVER in (t or "") for t in texts("chart-online"))
    assert any(XSS_OS in (t or "") for t in texts("chart-os"))
    assert any(XSS_HOST in (t or "") for t in texts("chart-stale"))
    for raw in (XSS_SERVER, XSS_OS, XSS_HOST, "<script>", "<img src=x", "<svg onload"):
        assert raw not in page  # as text only: escaped


def test_each_chart_is_an_image_with_a_title_and_a_description(site):
    page = fleet_page(site)
    for chart_id in ("chart-online", "chart-lag", "chart-cpu", "chart-memory", "chart-disk", "chart-os", "chart-ages", "chart-stale"):
        svg = chart(page, chart_id)
        assert svg.get("role") == "img" and svg.get("aria-labelledby") == f"{chart_id}-title {chart_id}-desc"
        assert svg.find(SVG + "title").text and svg.find(SVG + "desc").text
        assert "style" not in {name for el in svg.iter() for name in el.attrib}  # the CSP allows no style attribute


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_charts_draw_in_a_browser_in_both_themes(site, browser, theme):  # noqa: F811
    log_in(browser, site.base, "vera")
    browser.add_cookie({"name": "ems_theme", "value": theme})
    browser.get(site.base + "/fleet")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("data-bs-theme") == theme
    for svg in browser.find_elements(By.CSS_SELECTOR, "svg.ems-chart"):
        assert svg.size["width"] > 200 and svg.size["height"] > 20
    bar = browser.find_element(By.CSS_SELECTOR, "#chart-online rect.ems-ok")
    fill = browser.execute_script("return getComputedStyle(arguments[0]).fill", bar)
    assert fill not in ("", "none", "rgb(0, 0, 0)"), fill  # coloured by app.css, which the CSP lets load
    shot(browser, f"web-fleet-{theme}.png")
