"""Notice backends and the mandatory-notice rule, without a display.

The Windows and macOS backends are argv builders: they are not run here,
but their argv must carry the operator's words as plain data, never as
shell or script text.
"""
from __future__ import annotations

import base64
import logging

import pytest

from agent.context import LocalPolicy
from agent.notice import (
    CommandBackend,
    LogOnlyBackend,
    Notifier,
    TkWindowBackend,
    announce,
    macos_notification_command,
    select_backend,
    silence_requested,
    windows_msg_command,
    windows_toast_command,
)
from agent.notice.display import tk_installed
from broker.core.envelope import Kind

from test_notice_display import make_agent

HOSTILE = 'ticket "7" \'$(rm -rf ~)\' `whoami` & del C:\\ ; end tell'


def test_windows_msg_argv():
    spec = windows_msg_command("Remote control started", "alice is now controlling your screen: printer", seconds=20)
    assert spec.argv == ["msg", "*", "/TIME:20", "Remote control started: alice is now controlling your screen: printer"]
    assert spec.env == {}


def test_windows_msg_cannot_be_turned_into_a_switch_and_stays_short():
    spec = windows_msg_command("/server:evil", "x" * 1000)
    assert spec.argv[3].startswith("server:evil: ") and len(spec.argv[3]) <= 255
    assert len(spec.argv) == 4


def test_windows_toast_keeps_the_words_out_of_the_script():
    spec = windows_toast_command("Remote control started", HOSTILE)
    assert spec.argv[:8] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-WindowStyle", "Hidden", "-EncodedCommand"]
    script = base64.b64decode(spec.argv[8]).decode("utf-16-le")
    assert "$env:EMS_NOTICE_TEXT" in script and "$env:EMS_NOTICE_TITLE" in script and "whoami" not in script
    assert spec.env == {"EMS_NOTICE_TITLE": "Remote control started", "EMS_NOTICE_TEXT": HOSTILE}
    assert windows_toast_command("a", "b").argv == windows_toast_command("c", "d").argv, "the script is a constant"


def test_macos_osascript_passes_title_and_text_as_arguments():
    spec = macos_notification_command("Remote control started", HOSTILE)
    assert spec.argv == [
        "osascript",
        "-e", "on run argv",
        "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
        "-e", "end run",
        "Remote control started", HOSTILE,
    ]
    assert macos_notification_command("--evil", "t").argv[-2] == "evil", "a title is never an option"


def test_long_text_is_clipped_for_the_screen():
    spec = macos_notification_command("t", "y" * 2000)
    assert len(spec.argv[-1]) == 500 and spec.argv[-1].endswith("\u2026")


@pytest.mark.parametrize("platform, env, expected", [
    ("win32", {}, "windows-msg"),
    ("darwin", {}, "macos-notification"),
    ("linux", {"DISPLAY": ":3"}, "tk-window"),
    ("linux", {}, "log"),
    ("linux", {"DISPLAY": ""}, "log"),
    ("freebsd13", {"DISPLAY": ":0"}, "tk-window"),
])
def test_select_backend(platform, env, expected):
    if expected == "tk-window" and not tk_installed():
        expected = "log"  # no python3-tk: nothing to draw a window with
    backend = select_backend(platform, env)
    assert backend.name == expected
    assert isinstance(backend, {"windows-msg": CommandBackend, "macos-notification": CommandBackend, "tk-window": TkWindowBackend, "log": LogOnlyBackend}[expected])


def test_the_windows_backend_runs_what_the_builder_built():
    backend = select_backend("win32", {}, seconds=7)
    assert backend.builder("T", "x").argv == ["msg", "*", "/TIME:7", "T: x"]


def test_no_display_notice_goes_to_the_access_log_and_the_agent_log(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path)
    assert isinstance(agent.notifier.backend, LogOnlyBackend)
    agent.notifier.notify("EMS agent started", "this computer can be monitored by your IT team")
    assert agent.lines()[-1].endswith("EMS agent started  this computer can be monitored by your IT team")
    assert "NOTICE: EMS agent started: this computer can be monitored" in caplog.text


def test_a_notice_is_one_access_log_line_whatever_its_text(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path)
    agent.notifier.notify("Title\nwith break", "text\n2026-01-01 00:00:00  agent stopped\r\x1b[2J")
    assert agent.lines() == [agent.lines()[0]] and agent.lines()[0].endswith("Title with break  text 2026-01-01 00:00:00  agent stopped [2J")


def test_a_broken_backend_never_breaks_the_caller(tmp_path, caplog):
    class Broken:
        name = "broken"

        def show(self, title, text):
            raise RuntimeError("no toolkit")

        def close(self, dismiss=False):
            pass

    lines = []
    Notifier(lambda title, text, kind: lines.append((title, text, kind)), Broken()).notify("T", "x")
    assert lines == [("T", "x", "notice")] and "broken notice backend failed" in caplog.text


@pytest.mark.parametrize("args, silenced", [
    ({}, False),
    ({"silent": False}, False),
    ({"silent": True}, True),
    ({"quiet": 1}, True),
    ({"no_notice": True}, True),
    ({"notice": False}, True),
    ({"notify": False}, True),
    ({"notify": True}, False),
])
def test_silence_requested(args, silenced):
    assert silence_requested(args) is silenced


def test_a_mandatory_notice_is_shown_whatever_the_arguments_say(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path)
    shown = announce(agent.as_operator("mallory"), "live_view", "Screen viewed", "mallory is viewing your screen", {"silent": True, "notice": False})
    assert shown is True
    assert agent.lines()[0].endswith("notice silencing refused  by mallory  the 'live_view' notice is mandatory on this computer")
    assert agent.lines()[1].endswith("Screen viewed  mallory is viewing your screen")
    [(kind, name, data)] = agent.reports
    assert (kind, name, data["notice"]) == (Kind.SECURITY, "notice_silence_refused", "live_view")


def test_an_optional_notice_may_be_silenced_and_is_logged_anyway(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path, policy=LocalPolicy(mandatory_notices=frozenset({"start"})))
    assert announce(agent.as_operator("alice"), "live_view", "Screen viewed", "alice is viewing", {"silent": True}) is False
    assert agent.lines() and agent.lines()[-1].endswith("Screen viewed  alice is viewing (not shown on screen: the operator asked for no notice)")
    assert "NOTICE:" not in caplog.text and agent.reports == []
    assert announce(agent.as_operator("alice"), "live_view", "Screen viewed", "again", {}) is True


def test_a_refusal_that_cannot_be_reported_still_shows_the_notice(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    agent = make_agent(tmp_path)

    def full_outbox(*args, **kw):
        raise OSError("disk full")

    ctx = agent.as_operator("alice")
    ctx.report = full_outbox
    caplog.set_level(logging.WARNING)
    assert announce(ctx, "remote_control", "Remote control started", "alice ...", {"silent": True}) is True
    assert "could not report a refused notice silencing" in caplog.text
    assert agent.lines()[-1].endswith("Remote control started  alice ...")
