"""``ems status``: agents and broker counters."""
from __future__ import annotations

from broker.core.cli_common import add_operator_options, ago, print_json, table
from broker.core.profile import operator_client


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Show every accepted agent with its state and the messages the broker dropped over its rate limit, "
        "and the broker's counters: routed messages, drops (per reason), refused messages, handshake failures and the "
        "command queue."
    )
    add_operator_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    with operator_client(args.data_dir, args.server) as client:
        status = client.request("status")
    if args.json:
        print_json(status)
        return 0
    b = status["broker"]
    print(f"broker {b['endpoint']}  up {int(b['uptime_s'])} s  peers {b['peers']}  online agents {b['online_agents']}  pending keys {b['pending_keys']}")
    rows = [[a["client_id"], a["label"] or a["hostname"], a["state"], ago(a["last_seen"]) if a["state"] == "offline" else "now", a["version"],
             f"{a.get('dropped_rate_limited', 0):,}"] for a in status["agents"]]
    print()
    print(table(rows, ["AGENT", "LABEL", "STATE", "LAST SEEN", "VERSION", "RATE-LIMITED"]) if rows else "no agents enrolled yet (see `ems keys list`)")
    print(f"rate limit per agent: {(b.get('rate_limit') or {}).get('summary', 'unknown')} (RATE-LIMITED: messages dropped over it since the broker started)")
    _print_flow(b.get("flow"))
    print()
    counters = status["counters"]
    print("counters: " + (", ".join(f"{k}={v}" for k, v in counters.items()) or "none yet"))
    if status["commands"]:
        print("commands: " + ", ".join(f"{k}={v}" for k, v in sorted(status["commands"].items())))
    if b["pending_keys"]:
        print(f"\n{b['pending_keys']} key(s) waiting: `ems keys list`, then `ems keys accept ID`")
    return 0


def _print_flow(flow: dict | None) -> None:
    """The per-connection byte budget and who had live messages dropped over it."""
    if not flow:
        return
    print(f"byte budget per connection: {flow['budget_bytes'] / 2**20:,.1f} MiB; live messages dropped over it: "
          f"{flow['dropped']:,} ({flow['dropped_bytes'] / 2**20:,.1f} MiB)")
    rows = [[p["client_id"], f"{p['in_flight_bytes']:,}", f"{p['dropped']:,}", f"{p['dropped_bytes']:,}", "yes" if p["reports_credit"] else "no (old client)"]
            for p in flow["peers"]]
    if rows:
        print(table(rows, ["CONNECTION", "BYTES NOT TAKEN", "DROPPED", "DROPPED BYTES", "REPORTS CREDIT"]))
