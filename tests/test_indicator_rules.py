"""The rules behind the indicator and consent that need no screen: registry, policy file, consent decisions."""
from __future__ import annotations

import json

import pytest

from agent.accesses import FILE_TRANSFER, LIVE_VIEW, REMOTE_CONTROL, THUMBNAILS, AccessRegistry
from agent.context import CommandError, LocalPolicy
from agent.indicator import DECLINED, NO_ANSWER, Indicator, LogOnlyIndicator, require_consent, select_indicator
from agent.notice.who import access_reason, operator_label
from broker.core.envelope import Kind
from broker.core.errors import EmsError

from conftest import ManualClock
from test_notice_display import make_agent


@pytest.fixture
def headless(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    return make_agent(tmp_path, operator="jane")


def test_sessions_begin_and_end_and_every_change_moves_the_version():
    registry = AccessRegistry()
    first = registry.begin(REMOTE_CONTROL, "jane", "printer", "s1", "Jane Doe")
    assert registry.begin(REMOTE_CONTROL, "jane", "other words", "s1") is first, "a repeated begin keeps the first"
    registry.begin(LIVE_VIEW, "bob", "")
    assert [a.kind for a in registry.snapshot()] == [REMOTE_CONTROL, LIVE_VIEW] and registry.version == 2
    assert first.as_dict()["text"] == "Jane Doe is controlling this computer"
    assert registry.end(REMOTE_CONTROL, "jane", "s1") == first
    assert registry.end(REMOTE_CONTROL, "jane", "s1") is None and registry.version == 3


def test_a_series_lasts_while_it_is_touched_and_ends_after_the_idle_time():
    clock = ManualClock()
    registry = AccessRegistry(series_idle_s=30, clock=clock)
    registry.touch(THUMBNAILS, "jane", "tiles", "Jane Doe")
    registry.touch(FILE_TRANSFER, "jane", "logs for ticket 9")
    clock.now += 25
    registry.touch(THUMBNAILS, "jane")  # no reason: the shown one stays
    clock.now += 10
    [ended] = registry.expire()
    assert ended.kind == FILE_TRANSFER
    [going_on] = registry.snapshot()
    assert (going_on.kind, going_on.reason, going_on.who) == (THUMBNAILS, "tiles", "Jane Doe")
    registry.touch(THUMBNAILS, "jane", "a new reason")
    assert registry.snapshot()[0].reason == "a new reason"
    clock.now += 30
    assert [a.kind for a in registry.expire()] == [THUMBNAILS] and registry.snapshot() == []


def test_policy_file_sets_consent_and_indicator_and_refuses_nonsense(tmp_path):
    path = tmp_path / "policy.json"
    assert LocalPolicy.load(path).ask_before == frozenset() and LocalPolicy().indicator == "auto"
    path.write_text(json.dumps({"ask_before": ["remote_control", "live_view"], "consent_timeout_s": 45,
                                "user_may_end_live_view": True, "indicator": "bar", "series_idle_s": 90}))
    policy = LocalPolicy.load(path)
    assert policy.ask_before == {"remote_control", "live_view"} and policy.consent_timeout_s == 45.0
    assert policy.user_may_end_live_view and policy.indicator == "bar" and policy.series_idle_s == 90.0
    for bad in ({"ask_before": ["capture"]}, {"ask_before": "remote_control"}, {"indicator": "none"},
                {"consent_timeout_s": 601}, {"series_idle_s": -1}, {"user_may_end_live_view": "false"}):
        path.write_text(json.dumps(bad))
        with pytest.raises(EmsError):
            LocalPolicy.load(path)


def test_display_words_come_from_one_place(headless):
    ctx = headless.ctx
    assert operator_label(ctx) == "jane" and access_reason(ctx, {"reason": "line\nbreak"}) == "line break"
    ctx.operator_name, ctx.reason = "Jane Doe", "stamped by the broker"  # what issue #12 adds to the context
    assert operator_label(ctx) == "Jane Doe" and access_reason(ctx, {"reason": "from args"}) == "stamped by the broker"


class Answers:
    """The employee's answers, in order (stands in for the Tk prompt, which test_indicator clicks for real)."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.asked: list[tuple[str, str, float]] = []

    def __call__(self, question: str, reason: str, timeout_s: float) -> str:
        self.asked.append((question, reason, timeout_s))
        return self.answers.pop(0)


def test_consent_is_asked_only_where_policy_or_the_request_wants_it(headless):
    ctx = headless.ctx
    nobody = Answers()
    require_consent(ctx, REMOTE_CONTROL, {"reason": "r"}, nobody)
    assert nobody.asked == []
    tighter = Answers("allow")
    require_consent(ctx, REMOTE_CONTROL, {"reason": "r", "ask_consent": True}, tighter)
    assert tighter.asked == [("jane wants to control this computer", "r", 30.0)], "the server may ask for more"
    ctx.policy = LocalPolicy(ask_before=frozenset({LIVE_VIEW}), consent_timeout_s=12)
    with pytest.raises(CommandError, match=f"^{DECLINED}$"):
        require_consent(ctx, LIVE_VIEW, {"reason": "r"}, Answers("decline"))
    with pytest.raises(CommandError, match=f"^{NO_ANSWER}$"):
        require_consent(ctx, LIVE_VIEW, {}, Answers("timeout"))
    lines = headless.lines()
    assert "Live view declined  You declined: jane cannot view your screen. Reason given: r." in lines[-2]
    assert "there was no answer within 12 s, so the answer is no" in lines[-1]


@pytest.mark.parametrize("skip", [{"skip_consent": True}, {"no_consent": 1}, {"consent": False}, {"without_consent": "yes"}])
def test_a_request_to_skip_consent_is_refused_reported_and_the_user_is_asked_anyway(headless, skip):
    ctx = headless.ctx
    ctx.policy = LocalPolicy(ask_before=frozenset({REMOTE_CONTROL}))
    answers = Answers("decline")
    with pytest.raises(CommandError, match=f"^{DECLINED}$"):
        require_consent(ctx, REMOTE_CONTROL, {"reason": "r", **skip}, answers)
    assert len(answers.asked) == 1
    assert [(kind, name) for kind, name, _ in headless.reports] == [(Kind.SECURITY, "consent_skip_refused")]
    assert any("consent skipping refused  jane asked to skip your consent for remote control" in line for line in headless.lines())


def test_consent_without_a_screen_is_no_answer(headless):
    headless.ctx.policy = LocalPolicy(ask_before=frozenset({REMOTE_CONTROL}))
    with pytest.raises(CommandError, match=f"^{NO_ANSWER}$"):
        require_consent(headless.ctx, REMOTE_CONTROL, {"reason": "r"})


def test_end_is_offered_for_control_always_and_for_live_view_only_by_policy(headless):
    registry = AccessRegistry()
    control = registry.begin(REMOTE_CONTROL, "jane", "r", "s1")
    view = registry.begin(LIVE_VIEW, "jane", "r")
    thumbs, started = registry.touch(THUMBNAILS, "jane")
    assert started and not registry.touch(THUMBNAILS, "jane")[1]
    ended = []
    for policy, live_endable in ((LocalPolicy(), False), (LocalPolicy(user_may_end_live_view=True), True)):
        indicator = Indicator(registry, policy, backend=LogOnlyIndicator())
        indicator.on_end(REMOTE_CONTROL, lambda access, ctx: ended.append(access))
        indicator.on_end(LIVE_VIEW, lambda access, ctx: ended.append(access))
        assert (indicator.endable(control), indicator.endable(view), indicator.endable(thumbs)) == (True, live_endable, False)
    indicator = Indicator(registry, LocalPolicy(), backend=LogOnlyIndicator())
    indicator.on_end(LIVE_VIEW, lambda access, ctx: ended.append(access))
    indicator._handle({"event": "end", "key": view.key}, headless.ctx)
    assert ended == [], "a click the policy does not offer ends nothing"


def test_no_display_no_indicator_window(headless):
    assert select_indicator("auto").name == "log" and select_indicator("bar").name == "log"


def test_file_downloads_and_uploads_show_as_a_transfer_listing_does_not(tmp_path, monkeypatch):
    from agent.files import Files

    handlers = Files().handlers()
    monkeypatch.delenv("DISPLAY", raising=False)
    share = tmp_path / "share"
    share.mkdir()
    (share / "report.txt").write_text("quarterly numbers")
    agent = make_agent(tmp_path / "agent", operator="jane", policy=LocalPolicy(allowed_roots=[share]))
    handlers["files.list"]({"path": str(share)}, agent.ctx)
    assert agent.ctx.accesses.snapshot() == []
    handlers["files.download"]({"path": str(share / "report.txt"), "reason": "ticket 9"}, agent.ctx)
    [access] = agent.ctx.accesses.snapshot()
    assert (access.kind, access.operator, access.reason) == (FILE_TRANSFER, "jane", "ticket 9")
    assert access.sentence() == "jane is transferring files"
    handlers["files.download"]({"path": str(share / "report.txt"), "reason": "ticket 9"}, agent.ctx)
    notices = [entry for entry in agent.access.entries() if entry.event == "Files transferred"]
    assert len(notices) == 1, "one notice when the transfer starts, not one per chunk"
    assert notices[0].detail == f"jane is copying a file from this computer: {share / 'report.txt'}. Reason given: ticket 9."


def test_an_indicator_child_that_keeps_dying_is_started_again_a_few_times_then_left():
    from agent.indicator.backends import MAX_RESTARTS, ChildIndicator

    from conftest import wait_for

    broken = ChildIndicator("broken", "agent.indicator.no_such_module")
    broken.show([{"key": "k", "text": "jane is viewing your screen"}])
    pids = set()

    def settled():
        broken.events()
        if broken.child is not None:
            pids.add(broken.child.pid)
        return broken.child is None and broken.restarts > MAX_RESTARTS

    wait_for(settled, timeout_s=30, what="the broken child to be given up")
    assert len(pids) == MAX_RESTARTS + 1
    broken.show([{"key": "k2", "text": "a new access"}])
    assert broken.child is not None, "a new access tries again"
    broken.close()
