"""The alerts service on a real bus: who may call what (every role x every op), bad input
(clear errors, nothing lost), and end to end with real processes: ``ems broker``,
``ems alerts serve`` and a real ``ems agent`` (power dry run). An offline alert fires when
the agent stops, is suppressed after an ordered reboot, resolves when the agent returns;
an approval request lands in another operator's inbox."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import types

import pytest

from broker.alerts.book import AlertBook
from broker.alerts.ops import Forbidden
from broker.alerts.rules import check
from broker.alerts.service import PROVIDES, AlertService
from broker.cli.local_stack import prepare
from broker.cli.up import _concrete
from broker.core import keys, permissions
from broker.core.client import BusClient
from broker.core.config import ClientConfig, DataDir, Timing
from broker.core.envelope import ErrorCode, Kind
from broker.core.errors import RemoteError

from alert_servers import SmtpServer, WebhookServer
from conftest import next_message, wait_for

ROLES = ("viewer", "operator", "admin", "service", "agent")
OPS = {
    "alerts.list": {}, "alerts.rules": {}, "alerts.ack": {"id": 987654321, "reason": "matrix"},
    "alerts.rule_put": {"rule": {"name": "matrix", "kind": "offline", "threshold": 60}, "reason": "matrix"},
    "alerts.rule_remove": {"name": "no-such-rule", "reason": "matrix"},
    "inbox.list": {}, "inbox.read": {"all": True}, "inbox.count": {},
}
_VIEWER = {"alerts.list", "alerts.rules", "inbox.list", "inbox.read", "inbox.count"}
EXPECTED = {
    "viewer": _VIEWER,
    "operator": _VIEWER | {"alerts.ack"},
    "admin": set(OPS),
    "service": {"alerts.list", "alerts.rules"},  # an inbox is a person's; rules are the admins'
    "agent": set(),
}


class RunningAlerts:
    """An AlertService on its own thread, with its own service key, on ``bus``."""

    def __init__(self, bus, path, sinks=None):
        pair = bus.enrol("alerts", "service")
        client = BusClient(bus.client_config(), pair, hello={"client_id": "alerts", "provides": PROVIDES})
        bus.clients.append(client)
        self.service = AlertService(client, AlertBook(path), sinks=sinks, server_version="1.4.0")
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()
        wait_for(lambda: "alerts" in bus.broker.providers and "inbox" in bus.broker.providers, what="the alerts service")

    def stop(self):
        self.service.stop()
        self.thread.join(10)


@pytest.fixture
def alerts(bus, tmp_path):
    running = RunningAlerts(bus, tmp_path / "alerts.db")
    yield running
    running.stop()


def code_of(call):
    try:
        call()
    except RemoteError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("role,op", list(itertools.product(ROLES, OPS)))
def test_every_role_x_every_op(bus, alerts, role, op):
    """Every role calls every alerts/inbox op with harmless arguments: allowed ones are answered
    (a result, or BAD_REQUEST for the made-up id/name), the rest FORBIDDEN with a security event."""
    peer = bus.peer(f"{role}-{op.replace('.', '-')}", role=role)
    before = bus.broker.counters["security_forbidden"]
    code = code_of(lambda: peer.request(op, **OPS[op]))
    if op in EXPECTED[role]:
        assert code in (None, ErrorCode.BAD_REQUEST), (role, op, code)
    else:
        assert code == ErrorCode.FORBIDDEN, (role, op, code)
        assert bus.broker.counters["security_forbidden"] == before + 1


@pytest.mark.parametrize("role", ["viewer", "operator", "service", "agent", "", None, 7])
def test_the_service_checks_the_stamped_role_itself(alerts, role):
    """Tried: a forwarded rule change stamped with a role below admin (or none, or not text).
    Expected: the service itself refuses it (the second line behind the broker)."""
    with pytest.raises(Forbidden):
        alerts.service.ops.answer("alerts.rule_put", OPS["alerts.rule_put"], {"client_id": "x", "role": role})


def test_a_refusal_behind_the_broker_is_a_security_event(bus, alerts, monkeypatch):
    """Tried: a viewer's rule change let through by a broker whose permission check is broken (patched to
    allow everything). Expected: the service refuses it (FORBIDDEN) and publishes a ``forbidden`` security event."""
    from broker.server import requests as broker_requests

    lenient = types.SimpleNamespace(**{**vars(permissions), "may_request": lambda role, op: True})
    monkeypatch.setattr(broker_requests, "permissions", lenient)
    watcher = bus.peer("watcher", role="admin")
    watcher.subscribe(["security."])
    viewer = bus.peer("vic", role="viewer")
    with pytest.raises(RemoteError) as caught:
        viewer.request("alerts.rule_put", **OPS["alerts.rule_put"])
    assert caught.value.code == ErrorCode.FORBIDDEN
    seen = next_message(watcher, lambda e: e.kind is Kind.SECURITY and e.data().get("event") == "forbidden")
    assert seen.sender == "alerts" and seen.data()["client_id"] == "vic"
    assert "matrix" not in {r["name"] for r in bus.admin.request("alerts.rules")}


@pytest.mark.parametrize("rule, words", [
    ({"name": "c", "kind": "cpu", "threshold": -1}, "threshold"),
    ({"name": "c", "kind": "cpu", "threshold": 0}, "percent above 0"),
    ({"name": "c", "kind": "cpu", "threshold": 2**63}, "threshold"),
    ({"name": "c", "kind": "offline", "threshold": 60, "for_s": 2**63}, "for_s"),
    ({"name": "c", "kind": "offline", "threshold": "60"}, "threshold"),
    ({"name": "c", "kind": "offline", "threshold": {"nested": [1]}}, "threshold"),
    ({"name": "c", "kind": "offline", "clear_s": -1}, "clear_s"),
    ("offline", "a map"),
    ({"kind": "offline"}, "rule name"),
])
def test_bad_rules_over_the_bus_get_a_clear_error_and_change_nothing(bus, alerts, rule, words):
    """Tried: -1, 0, 2^63, text and maps in rule fields, a rule that is not a map, a rule without a name.
    Expected: BAD_REQUEST naming the problem; the rules are unchanged and the service still answers."""
    before = bus.admin.request("alerts.rules")
    with pytest.raises(RemoteError, match=words) as caught:
        bus.admin.request("alerts.rule_put", rule=rule, reason="testing")
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert bus.admin.request("alerts.rules") == before


@pytest.mark.parametrize("op, args, words", [
    ("alerts.rule_put", {"rule": {"name": "x", "kind": "offline"}}, "reason is required"),
    ("alerts.rule_put", {"rule": {"name": "x", "kind": "offline"}, "reason": "  "}, "reason is required"),
    ("alerts.ack", {"id": -1, "reason": "x"}, "id must be an integer"),
    ("alerts.ack", {"id": 0, "reason": "x"}, "id must be an integer"),
    ("alerts.ack", {"id": 2**63, "reason": "x"}, "id must be an integer"),
    ("alerts.ack", {"id": "7", "reason": "x"}, "id must be an integer"),
    ("alerts.list", {"all": "yes"}, "all must be true or false"),
    ("alerts.list", {"limit": "many"}, "limit must be an integer"),
    ("alerts.list", {"colour": 1}, "unknown argument"),
    ("inbox.read", {}, "give ids"),
    ("inbox.read", {"ids": [1], "all": True}, "give ids"),
    ("inbox.read", {"ids": ["1"]}, "must be an integer"),
    ("inbox.read", {"ids": []}, "a list of 1 to"),
])
def test_bad_arguments_get_a_clear_error(bus, alerts, op, args, words):
    """Tried: each op with a missing or blank reason, ids of -1, 0, 2^63 and text, flags of the wrong type,
    unknown arguments. Expected: BAD_REQUEST that says what to send."""
    with pytest.raises(RemoteError, match=words) as caught:
        bus.admin.request(op, **args)
    assert caught.value.code == ErrorCode.BAD_REQUEST


def test_malformed_records_are_ignored_and_the_next_good_one_counts(bus, alerts):
    """Tried: an agent's sysinfo that is a list, one with text, a bool and 2^63 for cpu_percent, security
    records with an event that is a number or a map. Expected: no alert and no error from any of them;
    the valid report after them opens its alert (nothing lost, nothing stuck)."""
    bus.admin.request("alerts.rule_put", rule={"name": "cpu-now", "kind": "cpu", "threshold": 50, "clear_s": 0},
                      reason="test: fire at once")
    agent = bus.peer("desk-1")
    for body in ([1, 2], {"cpu_percent": "high"}, {"cpu_percent": True}, {"cpu_percent": 2**63}, {"cpu_percent": None}):
        agent.publish(Kind.EVENT, "sysinfo", body)
    for body in ({"event": 7}, {"event": {"x": 1}}, "text"):
        agent.publish(Kind.SECURITY, "", body)
    agent.publish(Kind.EVENT, "sysinfo", {"cpu_percent": 99.0})
    opened = wait_for(lambda: [a for a in bus.admin.request("alerts.list") if a["rule"] == "cpu-now"], what="the cpu alert")
    assert opened[0]["target"] == "desk-1" and opened[0]["value"] == 99.0
    assert alerts.service.stats["internal_errors"] == 0


def test_a_rule_change_is_recorded_with_the_person_and_reason(bus, alerts):
    bus.admin.request("alerts.rule_put", rule={"name": "offline", "kind": "offline", "threshold": 120}, reason="laptops")
    [row] = alerts.service.book.audit_rows()
    assert (row["person_id"], row["role"], row["action"]) == ("admin", "admin", "alerts.rule_put")
    assert row["detail"]["reason"] == "laptops"
    rules = {r["name"]: r for r in bus.admin.request("alerts.rules")}
    assert rules["offline"]["threshold"] == 120


class Recorder:
    """A delivery sink that keeps what it is given."""

    def __init__(self):
        self.notices, self.flushes = [], 0

    def notify(self, notice):
        self.notices.append(notice)

    def flush(self, now):
        self.flushes += 1


class Broken:
    """A delivery sink whose every call fails (an SMTP server that is down)."""

    def notify(self, notice):
        raise OSError("connection refused")

    def flush(self, now):
        raise OSError("connection refused")


def test_on_start_it_asks_who_is_online_and_every_sink_gets_each_notice(bus, tmp_path):
    """An agent online and one accepted but never seen; a zero-second offline rule; sinks: a broken one
    first, then a recorder. Expected: only the absent agent's alert, given to the recorder and the inbox
    in spite of the broken sink, which is flushed on every tick and never stops the service."""
    bus.peer("desk-here")
    bus.enrol("desk-gone")
    book = AlertBook(tmp_path / "alerts.db")
    book.put_rule(check({"name": "offline", "kind": "offline", "threshold": 0, "clear_s": 0}), "test", 0.0)
    book.close()
    recorder = Recorder()
    running = RunningAlerts(bus, tmp_path / "alerts.db", sinks=[Broken(), recorder])
    try:
        wait_for(lambda: recorder.notices and recorder.flushes, what="a notice and a flush")
        assert [(n.target, n.state) for n in recorder.notices] == [("desk-gone", "opened")]
        assert [i["target"] for i in bus.admin.request("inbox.list")] == ["desk-gone"]
        assert running.service.stats["internal_errors"] >= 2 and running.thread.is_alive()
    finally:
        running.stop()


# -- end to end, real processes ---------------------------------------------------------------
HEARTBEAT = "0.5"


class Stack:
    """``ems broker``, ``ems alerts serve`` and a real ``ems agent`` (power dry run), as ``ems up`` prepares them."""

    def __init__(self, root, procs, **settings):
        self.root, self.procs = root, procs
        self.data = DataDir(root / "server")
        self.bind = _concrete("tcp://127.0.0.1:0")
        self.local = prepare(self.data, self.bind, with_agent=True, operator_name="Jane Doe")
        (self.data.root / "alerts.json").write_text(json.dumps({"offline_expected_s": 120, "tick_s": 0.2, **settings}))
        procs.ems("broker", "broker", "--data-dir", str(self.data.root), "--bind", self.bind, "--heartbeat-s", HEARTBEAT)
        self.alerts = procs.ems("alerts", "alerts", "serve", "--data-dir", str(self.data.root), "--heartbeat-s", HEARTBEAT)
        self.agent = None

    def start_agent(self):
        self.agent = self.procs.ems("agent", "agent", "--data-dir", str(self.data.root / "agent"), "--server", self.bind,
                                    f"--server-key={self.local.broker_key}", "--id", self.local.agent_id,
                                    "--heartbeat-s", HEARTBEAT, "--power-dry-run")

    def stop_agent(self):
        self.agent.terminate()
        self.agent.wait(15)

    def client(self, pair) -> BusClient:
        c = BusClient(ClientConfig(server=self.bind, server_key=self.local.broker_key, timing=Timing.fast()), pair)
        c.connect()
        c.wait_ready(30)
        return c

    def ems(self, *args):
        return subprocess.run([sys.executable, "-m", "broker.cli.main", *args, "--data-dir", str(self.data.root)],
                              capture_output=True, text=True, timeout=60)


def agent_state(op, agent_id):
    return next((a["state"] for a in op.request("agents") if a["client_id"] == agent_id), None)


def offline_alerts(op, agent_id, everything=False):
    return [a for a in op.request("alerts.list", all=everything) if a["rule"] == "offline" and a["target"] == agent_id]


def test_offline_fires_is_suppressed_after_an_ordered_reboot_and_resolves(tmp_path, procs):
    stack = Stack(tmp_path, procs)
    jane = stack.client(keys.load(stack.data.keys, "operator"))
    agent_id = stack.local.agent_id
    wait_for(lambda: code_of(lambda: jane.request("alerts.rules")) is None, 30, 0.2, "the alerts service")
    changed = stack.ems("alerts", "rule", "set", "offline", "--threshold", "1", "--clear-s", "0", "--reason", "test: 1 s")
    assert changed.returncode == 0 and "offline > 1 s" in changed.stdout, changed.stderr
    stack.start_agent()
    wait_for(lambda: agent_state(jane, agent_id) == "online", 60, 0.2, "the agent online")

    before = {a["id"] for a in offline_alerts(jane, agent_id, everything=True)}  # (one may have opened while it started)
    stack.stop_agent()  # 1. an unexpected offline: it fires, and lands in the inbox
    [fired] = wait_for(lambda: offline_alerts(jane, agent_id), 30, 0.2, "the offline alert")
    assert fired["state"] == "open" and not fired["suppressed"]
    inbox = jane.request("inbox.list", unread=True)
    assert any(i["key"] == f"offline:{agent_id}" and i["state"] == "opened" for i in inbox)
    unreasoned = stack.ems("alerts", "ack", str(fired["id"]))
    assert unreasoned.returncode == 2 and "a reason is required" in unreasoned.stderr
    acked = stack.ems("alerts", "ack", str(fired["id"]), "--reason", "calling the user")
    assert acked.returncode == 0 and "acknowledged by Jane Doe: calling the user" in acked.stdout, acked.stderr

    stack.start_agent()  # 2. it returns: the alert resolves
    wait_for(lambda: not offline_alerts(jane, agent_id), 60, 0.2, "the offline alert to resolve")
    assert [a["state"] for a in offline_alerts(jane, agent_id, everything=True) if a["id"] not in before] == ["resolved"]
    wait_for(lambda: agent_state(jane, agent_id) == "online", 60, 0.2, "the agent online again")

    reboot = jane.send_command(agent_id, "power.reboot", {"reason": "kernel patch"})  # 3. an ordered reboot (dry run)
    assert jane.wait_result(reboot["id"], timeout_s=60)["status"] == "done"
    notices_before = jane.request("inbox.count")["total"]
    stack.stop_agent()
    suppressed = wait_for(lambda: [a for a in offline_alerts(jane, agent_id, everything=True) if a["suppressed"]],
                          30, 0.2, "the suppressed record")
    assert suppressed[0]["suppressed"] == "suppressed: reboot ordered by Jane Doe (kernel patch)"
    assert offline_alerts(jane, agent_id) == []  # nothing open, nobody told
    assert jane.request("inbox.count")["total"] == notices_before
    listing = stack.ems("alerts", "--all")
    assert listing.returncode == 0 and "suppressed: reboot ordered by Jane Doe (kernel patch)" in listing.stdout

    stack.start_agent()  # 4. back after the reboot: the suppressed record ends, still untold
    wait_for(lambda: all(a["state"] == "resolved" for a in offline_alerts(jane, agent_id, everything=True)),
             60, 0.2, "the suppressed record to end")
    assert jane.request("inbox.count")["total"] == notices_before
    jane.close()


def test_an_approval_request_lands_in_another_operators_inbox(tmp_path, procs):
    stack = Stack(tmp_path, procs)
    jane = stack.client(keys.load(stack.data.keys, "operator"))
    bob_keys = keys.generate()
    jane.request("keys.add", public_key=bob_keys.public, client_id="bob@desk", role="operator", name="Bob Roe")
    bob = stack.client(bob_keys)
    wait_for(lambda: code_of(lambda: bob.request("inbox.count")) is None, 30, 0.2, "the alerts service")
    jane.request("approvals.require", names=["power.shutdown"])
    held = jane.send_command(stack.local.agent_id, "power.shutdown", {"reason": "move the rack"})
    items = wait_for(lambda: [i for i in bob.request("inbox.list") if i["kind"] == "approval"], 30, 0.2, "bob's inbox")
    assert items[0]["key"] == f"approval:{held['id']}" and "Jane Doe" in items[0]["text"] and "move the rack" in items[0]["text"]
    assert [i for i in jane.request("inbox.list") if i["kind"] == "approval"] == []  # not asked to approve her own
    out = subprocess.run([sys.executable, "-m", "broker.cli.main", "inbox", "--json", "--data-dir", str(stack.data.root)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and [i for i in json.loads(out.stdout) if i["kind"] == "approval"] == []
    bob.request("approvals.decide", id=held["id"], approve=False, reason="not today")
    ended = wait_for(lambda: [i for i in jane.request("inbox.list") if i["kind"] == "approval"], 30, 0.2, "the end")
    assert ended[0]["state"] == "resolved" and "denied by Bob Roe" in ended[0]["text"]
    assert bob.request("inbox.read", all=True)["unread"] == 0
    jane.close()
    bob.close()


def test_an_offline_alert_goes_out_by_mail_to_the_tests_smtp_server_and_by_webhook(tmp_path, procs):
    """The whole chain in real processes: agent stops -> broker presence -> ems alerts serve -> the delivery
    section of alerts.json -> an e-mail at an SMTP server and a POST at a webhook server this test started."""
    smtp, hook = SmtpServer().start(), WebhookServer().start()
    try:
        delivery = {"channels": {"email": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                           "from": "ems@example.org", "to": ["it-ops@example.org"], "timeout_s": 5},
                                 "webhook": {"url": hook.url, "timeout_s": 5}},
                    "routes": {"*": {"channels": ["email", "webhook"]}}}
        stack = Stack(tmp_path, procs, delivery=delivery)
        jane = stack.client(keys.load(stack.data.keys, "operator"))
        agent_id = stack.local.agent_id
        wait_for(lambda: code_of(lambda: jane.request("alerts.rules")) is None, 30, 0.2, "the alerts service")
        assert stack.ems("alerts", "rule", "set", "offline", "--threshold", "1", "--reason", "test: 1 s").returncode == 0
        stack.start_agent()
        wait_for(lambda: agent_state(jane, agent_id) == "online", 60, 0.2, "the agent online")
        stack.stop_agent()
        [mail] = wait_for(lambda: [m for m in smtp.mails if agent_id in m.message["Subject"]], 30, 0.2, "the e-mail")
        assert mail.message["Subject"].startswith("[EMS] opened:") and mail.recipients == ["it-ops@example.org"]
        assert f"offline:{agent_id}" in mail.message.get_content()
        [post] = wait_for(lambda: [h for h in hook.hooks if any(n["key"] == f"offline:{agent_id}" for n in h.body["notices"])],
                          30, 0.2, "the webhook")
        assert post.body["notices"][0]["state"] == "opened"
        jane.close()
    finally:
        smtp.stop()
        hook.stop()
