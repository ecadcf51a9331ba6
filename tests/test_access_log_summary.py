"""The access log for humans: JSON entries, older text lines read too, sentences newest
first with previews grouped and nothing said twice; where the log is found."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from agent.access_location import candidates, find_access_log, system_dir, user_dir
from agent.access_log import AccessEntry, AccessLog, parse_line
from agent.access_summary import summarise, summary_text
from agent.notice import Notifier, announce
from agent.notice.backends import LogOnlyBackend
from agent.context import AgentContext, LocalPolicy

T0 = datetime(2026, 12, 4, 10, 2, 0).astimezone()

#: what agents before the JSON format wrote (copied from a real access.log of that version)
OLD_LINES = """\
2026-12-04 09:58:10  EMS agent started  EMS agent 0.1.0 is running; this computer can be monitored by your IT team (what was done: ems agent access-log)
2026-12-04 10:02:00  screen thumbnail  operator=root@vm size=240x135 reason=client tile thumbnail in the operator console
2026-12-04 10:02:10  screen thumbnail  operator=root@vm size=240x135 reason=client tile thumbnail in the operator console
2026-12-04 10:03:00  Live view started  root@vm is viewing your screen (reason: ticket 7)
2026-12-04 10:03:00  live view started  operator=root@vm reason=ticket 7
2026-12-04 10:04:00  file download  by root@vm: /home/kim/report.txt
2026-12-04 10:05:00  live view ended  operator=root@vm reason=lease expired
"""


def entry(minutes: float, kind: str, operator: str = "Jane Doe", reason: str = "ticket 7", **kw) -> AccessEntry:
    return AccessEntry(ts=T0 + timedelta(minutes=minutes), kind=kind, event=kw.pop("event", kind), operator=operator,
                       reason=reason, **kw)


def test_previews_are_grouped_per_operator_and_reason_with_their_span():
    entries = [entry(m, "thumbnail", detail="240x135") for m in range(0, 13)]  # 10:02 .. 10:14
    entries += [entry(5.5, "thumbnail", operator="Bob Lee", reason="inventory")]
    entries += [entry(40, "thumbnail")]  # after a long pause: a new series
    [later, bob, series] = sorted(summarise(entries), key=lambda s: s.start, reverse=True)
    assert series.line() == "2026-12-04 10:02\u201310:14  13 small previews of your screen by Jane Doe, reason: ticket 7."
    assert bob.text == "1 small preview of your screen by Bob Lee, reason: inventory."
    assert later.text.startswith("1 small preview") and later.when() == "2026-12-04 10:42"


def test_sentences_are_newest_first_and_say_nothing_twice():
    capture = entry(1, "capture", event="screen captured", detail="1920x1080")
    notice = entry(1, "notice", operator="", reason="", event="Screen captured",
                   detail="Jane Doe took a picture of your screen (1920x1080); it is stored on the server.")
    unrelated = entry(1, "notice", operator="", reason="", event="Remote control started",
                      detail="Bob Lee is now controlling your screen: printer")
    sentences = summarise([capture, capture, notice, unrelated, entry(3, "live_view.start"), entry(0, "agent.start", "", "")])
    assert [s.text for s in sentences] == [
        "Jane Doe started watching your screen live. Reason: ticket 7.",
        "You were shown: Remote control started \u2014 Bob Lee is now controlling your screen: printer",
        "Jane Doe took a picture of your screen (1920\u00d71080); it is stored on the server. Reason: ticket 7.",
        "The EMS agent started.",
    ]


def test_old_key_value_lines_are_read_and_summarised(tmp_path):
    path = tmp_path / "access.log"
    path.write_text(OLD_LINES)
    log = AccessLog(path)
    log.record("screen thumbnail", "240x135", operator="root@vm", reason="client tile thumbnail in the operator console")
    entries = log.entries()
    assert len(entries) == 8 and entries[1] == AccessEntry(
        datetime(2026, 12, 4, 10, 2, 0).astimezone(), "thumbnail", "screen thumbnail", "root@vm",
        "client tile thumbnail in the operator console", "240x135")
    assert entries[5].kind == "file.download" and entries[5].operator == "root@vm" and entries[5].detail == "/home/kim/report.txt"
    text = summary_text(entries).splitlines()
    assert text[0].endswith("1 small preview of your screen by root@vm, reason: client tile thumbnail in the operator console.")
    assert text[1:] == [
        "2026-12-04 10:05  root@vm stopped watching your screen (lease expired).",
        "2026-12-04 10:04  root@vm copied from this computer the file /home/kim/report.txt.",
        "2026-12-04 10:03  root@vm started watching your screen live. Reason: ticket 7.",
        "2026-12-04 10:02  2 small previews of your screen by root@vm, reason: client tile thumbnail in the operator console.",
        "2026-12-04 09:58  You were shown: EMS agent started \u2014 EMS agent 0.1.0 is running; this computer can be "
        "monitored by your IT team (what was done: ems agent access-log)",
    ]


def test_entries_are_json_lines_and_cannot_be_forged(tmp_path):
    log = AccessLog(tmp_path / "access.log")
    log.record("live view started", operator="Jane\nDoe", reason='ticket 7"}\n2026-01-01 00:00:00  agent stopped')
    [line] = (tmp_path / "access.log").read_text().splitlines()
    raw = json.loads(line)
    assert raw["kind"] == "live_view.start" and raw["operator"] == "Jane Doe" and "\n" not in raw["reason"]
    assert parse_line(line).reason.endswith("agent stopped") and len(log.entries()) == 1
    assert parse_line("not a line") is None and parse_line('{"ts": "yesterday"}') is None


def test_a_notice_and_its_action_are_one_sentence_through_the_real_notifier(tmp_path):
    """The notifier logs the notice, the handler its action: the summary tells it once."""
    log = AccessLog(tmp_path / "access.log")
    notifier = Notifier(log.record, LogOnlyBackend())
    ctx = AgentContext(client_id="desk-1", data_dir=tmp_path, policy=LocalPolicy(), access_log=log.record,
                       notify=notifier.notify, report=lambda *a, **k: "", operator="Jane Doe")
    announce(ctx, "live_view", "Live view started", "Jane Doe is viewing your screen (reason: ticket 7)")
    ctx.access_log("live view started", operator="Jane Doe", reason="ticket 7")
    assert [e.kind for e in log.entries()] == ["notice", "live_view.start"]
    assert [s.text for s in summarise(log.entries())] == ["Jane Doe started watching your screen live. Reason: ticket 7."]


def test_an_older_agents_log_is_taken_over_whole(tmp_path):
    old = tmp_path / "data" / "access.log"
    old.parent.mkdir()
    old.write_text(OLD_LINES)
    log = AccessLog(tmp_path / "access" / "access.log")
    assert log.take_over(old) == 7 and not old.exists()
    log.take_over(old)  # nothing left: nothing twice
    assert len(log.entries()) == 7 and log.raw().startswith("2026-12-04 09:58:10  EMS agent started")


def test_the_cli_finds_the_log_without_flags_from_another_folder(tmp_path, monkeypatch):
    """`ems agent access-log` run from the employee's own folder: sentences, and --raw the entries."""
    access_dir, home = tmp_path / "access", tmp_path / "home" / "kim"
    home.mkdir(parents=True)
    AccessLog(access_dir / "access.log").record("screen captured", "1280x720", operator="Jane Doe", reason="ticket 9")
    env = {**os.environ, "EMS_ACCESS_DIR": str(access_dir), "PYTHONPATH": os.getcwd()}
    env.pop("EMS_HOME", None)
    run = [sys.executable, "-m", "broker.cli.main", "agent", "access-log"]
    out = subprocess.run(run, cwd=home, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Jane Doe took a picture of your screen (1280\u00d7720); it is stored on the server. Reason: ticket 9." in out.stdout
    raw = subprocess.run([*run, "--raw"], cwd=home, env=env, capture_output=True, text=True, timeout=60).stdout
    assert json.loads(raw.splitlines()[0])["operator"] == "Jane Doe"
    monkeypatch.setenv("EMS_ACCESS_DIR", str(access_dir))
    assert find_access_log() == access_dir / "access.log"


def test_remote_control_is_told_once_each_way():
    notice = entry(0, "notice", "", "", event="Remote control started", detail="Jane Doe is now controlling your screen: ticket 7")
    ended = entry(4, "control.end", detail="Jane Doe is no longer controlling your screen: fixed")
    assert [s.text for s in summarise([notice, entry(0, "control.start"), ended])] == [
        "Jane Doe is no longer controlling your screen: fixed.",
        "Jane Doe took control of your screen (mouse and keyboard). Reason: ticket 7.",
    ]


def test_the_places_looked_at_in_order(tmp_path, monkeypatch):
    """$EMS_ACCESS_DIR, the system place, the user-data place, then older agents' data dirs."""
    monkeypatch.setenv("EMS_ACCESS_DIR", str(tmp_path / "installer"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("EMS_HOME", str(tmp_path / "home"))
    assert candidates() == [tmp_path / "installer" / "access.log", Path("/var/lib/ems/access/access.log"),
                            tmp_path / "xdg" / "ems" / "access" / "access.log",
                            tmp_path / "home" / "access.log", tmp_path / "home" / "agent" / "access.log"]
    assert candidates(str(tmp_path / "d")) == [tmp_path / "d" / "access.log", tmp_path / "d" / "agent" / "access.log"]
    (tmp_path / "home" / "agent").mkdir(parents=True)
    (tmp_path / "home" / "agent" / "access.log").write_text(OLD_LINES)  # only an older agent's log exists (here)
    if not Path("/var/lib/ems/access/access.log").exists():  # a system-wide agent on this machine would come first
        assert find_access_log() == tmp_path / "home" / "agent" / "access.log"
    assert system_dir("win32", {"ProgramData": r"C:\ProgramData"}) == Path(r"C:\ProgramData") / "EMS" / "access"
    assert user_dir("linux", {}) == Path.home() / ".local" / "share" / "ems" / "access"
