"""The kill -9 loop at test size: 50 agents, 10,000 events, broker and persister
each SIGKILLed 3 times and the agents' process twice, at random moments.
`python -m bench.chaos_store` runs the full size (100,000 events, 10 + 10 kills)."""
from __future__ import annotations

from bench.chaos_store import run_chaos


def test_kill_loop_loses_nothing_and_stores_nothing_twice(tmp_path):
    report = run_chaos(tmp_path, agents=50, events=200, broker_kills=3, persister_kills=3, agent_kills=2,
                       rate=2000.0, timeout_s=110.0, seed=7, progress=print)
    print(report)
    assert report.finished, f"agents did not get every event acknowledged: {report.notes}"
    assert report.broker_kills + report.persister_kills + report.agent_kills >= 6, report.notes
    assert report.missing == 0
    assert report.duplicated == 0
    assert report.stored == report.expected == 10_000
