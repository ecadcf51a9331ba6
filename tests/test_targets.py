"""Target selectors, tags and groups, on a real broker with real agents (Curve, HELLO facts): every selector
form against a known fleet, facts that survive a broker restart (offline agents still selected by os: and
version:), tags and groups set by operators and audited with their name, and bad selectors refused with the
grammar in the message (every kind of malformed text, fuzzed with hypothesis).
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import selectors
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError
from broker.core.selectors import SelectorError, TargetFacts, parse
from conftest import wait_for

#: the fleet: client id -> (hostname, os, version)
FLEET = {
    "desk-1": ("lyon-desk-1", "Linux", "1.4.0"),
    "desk-2": ("lyon-desk-2", "Windows 11", "1.3.9"),
    "desk-3": ("paris-desk-3", "Windows 10", "2.0"),
    "kiosk-1": ("lobby-kiosk-1", "Linux", "1.4.2"),
    "kiosk-2": ("lobby-kiosk-2", "macOS 14", "1.2"),
}


@pytest.fixture
def fleet(bus):
    agents = {}
    for client_id, (host, os_name, version) in FLEET.items():
        pair = bus.enrol(client_id)
        agents[client_id] = bus.client(pair, hello={"client_id": client_id, "hostname": host, "os": os_name, "version": version})
    operator = bus.peer("op-targets", role="operator")
    operator.request("targets.tag", kind="group", name="finance", selector="desk-1,desk-2")
    operator.request("targets.tag", kind="tag", name="kiosk", selector="host:lobby-*")
    return bus, agents, operator


def picked(client, selector: str) -> list[str]:
    return [t["client_id"] for t in client.request("targets.resolve", selector=selector)["targets"]]


CASES = {
    "all": list(FLEET),
    "desk-1,kiosk-2": ["desk-1", "kiosk-2"],
    "id:desk-*": ["desk-1", "desk-2", "desk-3"],
    "host:LOBBY-*": ["kiosk-1", "kiosk-2"],
    "group:finance": ["desk-1", "desk-2"],
    "tag:kiosk": ["kiosk-1", "kiosk-2"],
    "os:windows*": ["desk-2", "desk-3"],
    "group:finance&os:windows*": ["desk-2"],
    "all&!group:finance": ["desk-3", "kiosk-1", "kiosk-2"],
    "tag:kiosk,group:finance": ["desk-1", "desk-2", "kiosk-1", "kiosk-2"],
    "version:<1.4": ["desk-2", "kiosk-2"],
    "version:>=1.4": ["desk-1", "desk-3", "kiosk-1"],
    "version:1.4": ["desk-1"],
    "version:1.4*": ["desk-1", "kiosk-1"],
    "all&!version:>=2": ["desk-1", "desk-2", "kiosk-1", "kiosk-2"],
    "label:nothing-has-this": [],
    "no-such-agent": [],
}


def test_every_selector_form_picks_the_agents_it_names(fleet):
    bus, _, operator = fleet
    viewer = bus.peer("viewer-targets", role="viewer")
    for selector, expected in CASES.items():
        assert picked(viewer, selector) == expected, selector
    for limit, listed in ((2, 2), (0, 0), (-1, 0), (-2**63, 0), (2**63 - 1, 5)):  # clamped into 0..10,000
        answer = viewer.request("targets.resolve", selector="all", limit=limit)
        assert answer["count"] == 5 and len(answer["targets"]) == listed, limit
    row = viewer.request("targets.resolve", selector="desk-2")["targets"][0]
    assert row == {"client_id": "desk-2", "online": True, "label": "", "host": "lyon-desk-2", "os": "Windows 11",
                   "version": "1.3.9", "tags": [], "groups": ["finance"]}


def test_online_and_offline_and_facts_that_outlive_the_connection_and_the_broker(fleet):
    bus, agents, operator = fleet
    agents["desk-3"].close()
    wait_for(lambda: picked(operator, "offline") == ["desk-3"], 10, what="desk-3 offline")
    assert "desk-3" not in picked(operator, "online")
    bus.stop()
    bus.start()
    wait_for(lambda: _answers(operator), 20, what="the operator back on the restarted broker")
    assert picked(operator, "os:windows 10&offline") == ["desk-3"]  # its OS, from a HELLO before the restart
    assert picked(operator, "group:finance") == ["desk-1", "desk-2"]  # groups are in broker.db


def _answers(client) -> bool:
    try:
        client.request("targets.tags", timeout_s=1)
        return True
    except Exception:  # noqa: BLE001 - reconnecting
        return False


def test_tags_and_groups_are_set_by_operators_and_audited_with_their_name(fleet):
    bus, _, operator = fleet
    listener = bus.peer("audit-listener", role="admin")
    listener.subscribe(["audit."])
    answer = operator.request("targets.tag", kind="tag", name="loaner", selector="os:macOS*,desk-3")
    assert answer == {"kind": "tag", "name": "loaner", "matched": 2, "changed": ["desk-3", "kiosk-2"]}
    assert operator.request("targets.tag", kind="tag", name="loaner", selector="desk-3")["changed"] == []  # had it
    removed = operator.request("targets.tag", kind="tag", name="loaner", selector="desk-3", remove=True)
    assert removed["changed"] == ["desk-3"]
    seen = []

    def both_audited() -> bool:
        seen.extend(e.data() for e in listener.drain(100, 0.05))
        return {a["action"] for a in seen if a["operator"] == "op-targets"} >= {"targets.tag", "targets.untag"}
    wait_for(both_audited, 10, interval_s=0, what="the audit records")
    record = next(a for a in seen if a["action"] == "targets.tag" and a["detail"]["name"] == "loaner")
    assert record["detail"]["selector"] == "os:macOS*,desk-3" and record["detail"]["changed"] == ["desk-3", "kiosk-2"]
    summary = {(s["kind"], s["name"]): s["agents"] for s in operator.request("targets.tags")}
    assert summary == {("group", "finance"): 2, ("tag", "kiosk"): 2, ("tag", "loaner"): 1}


BAD_ARGS = [
    {"selector": ""}, {"selector": None}, {"selector": 7}, {"selector": "x" * 1001}, {"selector": "&"},
    {"selector": "desk-1,"}, {"selector": "colour:red"}, {"selector": "host:"}, {"selector": "version:new"},
    {"selector": "two words"}, {"selector": "!"}, {"selector": "a&" * 70 + "a"}, {"selector": "all", "limit": "ten"},
    {"selector": "all", "limit": 2**63}, {"selector": "all", "limit": 1.5},
]
BAD_TAGS = [
    {"kind": "colour", "name": "red", "selector": "all"}, {"kind": "tag", "name": "", "selector": "all"},
    {"kind": "tag", "name": "has space", "selector": "all"}, {"kind": "tag", "name": "x" * 65, "selector": "all"},
    {"kind": "tag", "name": "ok", "selector": "all", "remove": "yes"}, {"kind": "tag", "name": "ok", "selector": ""},
    {"kind": None, "name": "ok", "selector": "all"},
]


@pytest.mark.parametrize("op,args", [("targets.resolve", a) for a in BAD_ARGS] + [("targets.tag", a) for a in BAD_TAGS])
def test_bad_requests_are_refused_with_what_is_wrong_and_change_nothing(fleet, op, args):
    bus, _, operator = fleet
    before = operator.request("targets.tags")
    with pytest.raises(RemoteError) as refused:
        operator.request(op, **args)
    assert refused.value.code == ErrorCode.BAD_REQUEST and str(refused.value)
    assert operator.request("targets.tags") == before


@pytest.mark.parametrize("text,needle", [("", "empty selector"), ("colour:red", "unknown key 'colour'"),
                                          ("version:new", "is not a version test"), ("a b", "is not a client id"),
                                          ("host:", "needs a value")])
def test_a_bad_selector_says_what_a_selector_looks_like(text, needle):
    with pytest.raises(SelectorError) as error:
        parse(text)
    assert needle in str(error.value)


@pytest.mark.parametrize("version,test,expected", [
    (v, t, e) for (v, t), e in {
        ("1.4", "<1.4.1"): True, ("1.4.1", "<=1.4.1"): True, ("2", ">1.9.9"): True, ("1.10", ">1.9"): True,
        ("v1.4", "=1.4"): True, ("1.4rc1", "1.4"): True, ("", "<9"): False, ("banana", ">=0"): False,
        ("1.4", ">1.4"): False, ("2.0.0", "2"): True,
    }.items()])
def test_version_tests_compare_numbers_not_text(version, test, expected):
    assert parse(f"version:{test}").matches(TargetFacts("x", version=version)) is expected


FACTS = st.builds(TargetFacts, client_id=st.text(max_size=10), online=st.booleans(), label=st.text(max_size=10),
                  host=st.text(max_size=10), os=st.text(max_size=10), version=st.text(max_size=10),
                  tags=st.frozensets(st.text(max_size=5), max_size=3), groups=st.frozensets(st.text(max_size=5), max_size=3))
SELECTOR_TEXT = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(
    ["all", "online", "!", "&", ",", ":", "*", "id", "host", "tag", "version", "<", ">=", "1.4", "desk-1", "[", "?", " "]),
    max_size=20).map("".join))


@settings(max_examples=400, deadline=None)
@given(SELECTOR_TEXT, FACTS)
def test_fuzzed_selectors_parse_or_say_why_and_never_crash_matching(text, facts):
    try:
        selector = parse(text)
    except SelectorError as exc:
        assert str(exc)
        return
    assert isinstance(selector.matches(facts), bool)


def test_every_key_and_word_is_in_the_help():
    from broker.cli.targets_cmd import EXAMPLES

    for word in itertools.chain(selectors.KEYS, selectors.WORDS):
        assert word in EXAMPLES


def ems(bus, *argv: str):
    import subprocess
    import sys

    from broker.core.profile import Profile, save

    save(bus.data, Profile(server=bus.endpoint, server_key=bus.server_key, key_name="admin", client_id="admin"))
    return subprocess.run([sys.executable, "-m", "broker.cli.main", "targets", *argv, "--data-dir", str(bus.data.root)],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_previews_tags_and_lists(fleet):
    bus, _, _ = fleet
    shown = ems(bus, "group:finance&os:windows*")
    assert shown.returncode == 0, shown.stderr
    assert "desk-2" in shown.stdout and "desk-1" not in shown.stdout
    assert "1 agent(s) match 'group:finance&os:windows*' (1 online); nothing was sent" in shown.stdout
    tagged = ems(bus, "tag", "vip", "desk-3")
    assert tagged.returncode == 0 and "1 of 1 matching agent(s) now carry tag:vip" in tagged.stdout
    listed = ems(bus, "list", "--json")
    assert {"kind": "tag", "name": "vip", "agents": 1} in __import__("json").loads(listed.stdout)
    bad = ems(bus, "colour:red")
    assert bad.returncode == 2 and "unknown key 'colour'" in bad.stderr and "keys: id, label" in bad.stderr
    short = ems(bus, "tag", "vip")
    assert short.returncode == 2 and "needs a NAME and a SELECTOR" in short.stderr
