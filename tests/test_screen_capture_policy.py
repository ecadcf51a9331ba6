"""Captures under this computer's local rate policy, each one shown to the employee.

On a real X server (Xvfb) with the real notifier (a recording backend in
place of a window) and the real access log and outbox: whatever the
arguments (any size, scale, quality, monitor, no reason, every way to ask
for no notice), a capture spends the local budget (``captures_per_minute``)
and shows a notice naming the operator and the reason; over the budget it
is refused, nothing is grabbed, stored or shown.
"""
from __future__ import annotations

import json

import pytest
from conftest import ManualClock
from test_screen_capture import display, screen  # noqa: F401  (fixtures)

from agent.access_log import AccessLog
from agent.context import MAX_CAPTURES_PER_MINUTE, AgentContext, CommandError, LocalPolicy
from agent.notice import Notifier
from agent.outbox import Outbox
from agent.screen import captures, handlers
from broker.core.envelope import Kind, pack_body, unpack_body
from broker.core.errors import EmsError


class RecordingBackend:
    """A notice backend that keeps what it was asked to show (the test's window)."""

    name = "recording"

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def show(self, title: str, text: str) -> None:
        self.shown.append((title, text))

    def close(self, dismiss: bool = False) -> None:
        pass


class Agent:
    """The agent's real services a capture uses, with a manual clock for its gate."""

    def __init__(self, root, clock, **policy):
        self.outbox = Outbox(root / "outbox.db")
        self.access = AccessLog(root / "access.log")
        self.screen = RecordingBackend()
        notifier = Notifier(self.access.record, self.screen)
        self.ctx = AgentContext(client_id="desk-1", data_dir=root, policy=LocalPolicy(**policy), access_log=self.access.record,
                                notify=notifier.notify, report=lambda kind, name, data: self.outbox.put(kind, name, pack_body(data)),
                                operator="op-kim")
        self.capability = handlers.Screen(self.ctx, clock=clock)  # its gates run on the manual clock

    def stored(self, kind: Kind = Kind.EVENT) -> list[dict]:
        return [unpack_body(r.body) for r in self.outbox.due(1000) if r.kind == kind]

    def capture_notices(self) -> list[str]:
        return [text for title, text in self.screen.shown if title == "Screen captured"]


@pytest.fixture
def clock():
    return ManualClock()


ARGS = {
    "no arguments, no reason": {},
    "a reason": {"reason": "ticket 7"},
    "thumbnail-sized max_width": {"max_width": 240, "reason": "look"},
    "tiny max_width": {"max_width": 32},
    "tiny scale": {"scale": 0.05},
    "scale, max_width and low quality": {"scale": 0.25, "max_width": 100, "quality": 10},
    "quality 1": {"quality": 1},
    "quality 95, empty reason": {"quality": 95, "reason": ""},
    "all monitors": {"monitor": 0, "max_width": 240},
    "monitor 1, full scale": {"monitor": 1, "scale": 1.0},
    "silent": {"silent": True, "max_width": 240},
    "notice false": {"notice": False, "quality": 30},
    "every silencing flag": {"hide_notice": True, "no_notice": True, "quiet": True, "show_notice": False, "notify": False,
                             "max_width": 32},
}
POLICIES = [0, 1, 3]


@pytest.mark.parametrize("per_minute", POLICIES)
@pytest.mark.parametrize("name", sorted(ARGS))
def test_every_capture_is_counted_and_shown_whatever_its_arguments(name, per_minute, display, tmp_path, clock):
    """Tried: captures with each argument shape (thumbnail sizes, tiny scales,
    any quality or monitor, no reason, every silencing flag) under each budget;
    the budget holds, each accepted capture is a notice naming the operator and
    the reason, a refused one is grabbed, stored and shown nowhere."""
    args = ARGS[name]
    agent = Agent(tmp_path, clock, captures_per_minute=per_minute)
    try:
        for i in range(per_minute):
            clock.now += 1
            agent.capability.capture(dict(args), agent.ctx)
            assert len(agent.capture_notices()) == i + 1
        refusal = "captures are turned off on this computer" if per_minute == 0 else \
            f"capture refused: this computer's local policy allows {per_minute} a minute; the next one in {60 - per_minute + 1} s"
        with pytest.raises(CommandError, match=refusal):
            agent.capability.capture(dict(args), agent.ctx)
        notices = agent.capture_notices()
        assert len(notices) == per_minute and len(agent.stored()) == per_minute
        reason = args.get("reason", "")
        for text in notices:
            assert text.startswith("op-kim took a picture of your screen")
            assert (f"Reason given: {reason}." if reason else "No reason was given.") in text
        log = agent.access.read()
        assert log.count("  Screen captured  op-kim took a picture") == per_minute
        assert log.count("  screen captured  by op-kim") == per_minute
        if any(k in args for k in ("silent", "notice", "hide_notice")):
            assert log.count("notice silencing refused") == per_minute
            assert len(agent.stored(Kind.SECURITY)) == per_minute
        if per_minute:
            clock.now += 60  # the window has passed: allowed again, and shown again
            agent.capability.capture(dict(args), agent.ctx)
            assert len(agent.capture_notices()) == per_minute + 1
    finally:
        agent.outbox.close()


def test_the_budget_is_shared_by_every_shape_and_operator(display, tmp_path, clock):
    """Tried: changing the arguments and the operator between captures to get a
    fresh budget; the fourth capture in a minute is refused whatever it asks."""
    agent = Agent(tmp_path, clock, captures_per_minute=3)
    try:
        shapes = [ARGS["thumbnail-sized max_width"], ARGS["tiny scale"], ARGS["all monitors"], ARGS["quality 1"]]
        for operator, args in zip(("op-a", "op-b", "op-c"), shapes):
            agent.ctx.operator = operator
            agent.capability.capture(dict(args), agent.ctx)
        agent.ctx.operator = "op-d"
        with pytest.raises(CommandError, match="capture refused"):
            agent.capability.capture(dict(shapes[3]), agent.ctx)
        assert [t.split(" took")[0] for t in agent.capture_notices()] == ["op-a", "op-b", "op-c"]
        agent.capability.thumbnail({}, agent.ctx)  # thumbnails have their own budget (and notice)
    finally:
        agent.outbox.close()


def test_bad_arguments_cost_nothing(display, tmp_path, clock):
    """Tried: bad quality, scale, width and monitor under a budget of one: each
    is refused before anything is grabbed, and the one capture is still there."""
    agent = Agent(tmp_path, clock, captures_per_minute=1)
    try:
        for bad in ({"quality": 0}, {"scale": 2}, {"max_width": -5}, {"monitor": 3}, {"reason": 5}, {"qualty": 50}):
            with pytest.raises(CommandError):
                agent.capability.capture(bad, agent.ctx)
        assert agent.capture_notices() == [] and agent.stored() == []
        agent.capability.capture({"reason": "after the typos"}, agent.ctx)
        assert len(agent.capture_notices()) == 1
    finally:
        agent.outbox.close()


def test_a_policy_file_cannot_raise_the_ceiling_or_drop_the_notice(tmp_path):
    """Tried: more than the ceiling, negative, a string, a float, and a policy
    whose mandatory list leaves out the capture notice."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"captures_per_minute": 2, "mandatory_notices": []}))
    policy = LocalPolicy.load(path)
    assert policy.captures_per_minute == 2 and "capture" in policy.mandatory_notices
    assert LocalPolicy().captures_per_minute == 4
    for bad in (MAX_CAPTURES_PER_MINUTE + 1, 1000, -1, "6", 2.5, None):
        path.write_text(json.dumps({"captures_per_minute": bad}))
        with pytest.raises(EmsError, match="captures_per_minute must be an integer from 0 to 12"):
            LocalPolicy.load(path)
    path.write_text(json.dumps({"captures_per_minute": MAX_CAPTURES_PER_MINUTE}))
    assert LocalPolicy.load(path).captures_per_minute == 12


def test_a_gate_built_in_code_is_clamped_too(tmp_path, clock):
    """Tried: a LocalPolicy made in code with 100 a minute (past the file check)."""
    ctx = AgentContext(client_id="d", data_dir=tmp_path, policy=LocalPolicy(captures_per_minute=100), access_log=lambda *a: None,
                       notify=lambda *a: None, report=lambda *a: "")
    assert captures.make_gate(ctx.policy, clock).per_minute == MAX_CAPTURES_PER_MINUTE
