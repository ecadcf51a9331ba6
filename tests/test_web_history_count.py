"""A history list counts matching rows up to HistoryQuery::COUNT_CAP (10,000) and says "more than" past it:
an exact count of a text filter over a million log rows reads every row (bench/web.py). Real MariaDB, php -S.
"""
from __future__ import annotations

import re

import pytest

from web_support import WebClient, WebSite

CAP = 10_000
T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def site(mysql_admin_url, tmp_path_factory):
    site = WebSite(mysql_admin_url, tmp_path_factory.mktemp("web"))
    site.add_server("srv-a", "Head office")
    rows = [("srv-a", i + 1, f"pc-{i % 7}", T0 + i, "kim" if i < 3 else f"user{i}") for i in range(CAP + 5)]
    with site.writer() as conn, conn.cursor() as cursor:
        cursor.executemany("INSERT INTO snapshot_sessions (server_id, id, client_id, started, logged_in_user) "
                           "VALUES (%s, %s, %s, %s, %s)", rows)
    yield site
    site.close()


def count_line(page: str) -> str:
    return re.search(r'id="history-count">([^<]*)<', page).group(1)


def test_past_the_cap_the_count_says_more_than_and_the_pages_stop_there(site):
    vera = WebClient(site.base)
    assert vera.login("vera") == 303
    _, _, page = vera.request("GET", "/sessions")
    assert count_line(page) == "more than 10,000 rows · page 1 of 201"
    _, _, page = vera.request("GET", "/sessions?page=999")  # clamped to the last page the count reaches
    assert count_line(page) == "more than 10,000 rows · page 201 of 201"
    assert page.count("<tr>") == 1 + 5  # the header and rows 10,001-10,005: the last page shows what is there
    _, _, page = vera.request("GET", "/sessions?q=kim")  # a filter narrows it to an exact count again
    assert count_line(page) == "3 rows · page 1 of 1"
    _, _, page = vera.request("GET", "/sessions?client=pc-3")
    assert count_line(page) == f"{len([i for i in range(CAP + 5) if i % 7 == 3]):,} rows · page 1 of 29"
