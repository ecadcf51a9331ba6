"""``ems broker``: run the message broker (normally started by ``ems up``)."""
from __future__ import annotations

import os
import signal

from broker.core.cli_common import add_data_dir
from broker.core.config import DEFAULT_BIND, ENROL_TOKEN_ENV, BrokerConfig, DataDir, RateLimit, Timing, resolve_data_dir, timing_for
from broker.server.loop import Broker


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Run the EMS broker: one CurveZMQ ROUTER that authenticates every peer against the key "
        "registry in the data dir and routes events, commands and results. Its key pair is created on first "
        "start in DATA/keys/broker.{public,secret}; agents need the public key."
    )
    add_data_dir(p)
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"endpoint to listen on (default {DEFAULT_BIND}; tcp://0.0.0.0:PORT for remote agents; port 0 picks a free one)")
    p.add_argument("--heartbeat-s", type=float, default=Timing.heartbeat_s, help="heartbeat interval; a peer silent for 3 intervals is offline (default %(default)s)")
    p.add_argument("--max-message-bytes", type=int, default=BrokerConfig.max_message_bytes, help="frames larger than this drop the connection (default %(default)s)")
    p.add_argument("--command-ttl-s", type=float, default=BrokerConfig.command_ttl_s, help="default time to live of queued commands (default %(default)s)")
    limits = p.add_argument_group(
        "per-agent rate limit",
        "What each agent publishes (events, logs, security events, screen frames, batches of records: a batch counts "
        "as one message) passes two token buckets; a message "
        "over either is dropped, counted (ems status) and the agent told to wait. Commands, results, heartbeats and "
        "acks are never limited. --no-agent-rate-limit turns both off; 0 turns one off.",
    )
    limits.add_argument("--no-agent-rate-limit", action="store_true",
                        help="no per-agent limit at all (the four settings below are ignored): for a trusted fleet or a benchmark "
                        "of raw routing; a runaway agent can then take the broker's whole capacity")
    limits.add_argument("--agent-msgs-per-s", type=float, default=RateLimit.msgs_per_s, metavar="N", help="messages per second per agent (default %(default).0f)")
    limits.add_argument("--agent-burst-msgs", type=float, default=RateLimit.burst_msgs, metavar="N", help="bucket size: messages an agent may send in one burst (default %(default).0f)")
    limits.add_argument("--agent-bytes-per-s", type=float, default=RateLimit.bytes_per_s, metavar="N", help="bytes per second per agent (default %(default).0f)")
    limits.add_argument("--agent-burst-bytes", type=float, default=RateLimit.burst_bytes, metavar="N", help="bucket size: bytes an agent may send in one burst (default %(default).0f)")
    queues = p.add_argument_group(
        "per-connection queues",
        "What the broker has sent one connection and that connection has not taken yet is bounded twice: in "
        "messages (--send-hwm, every kind) and in bytes (--peer-budget-bytes, live events and screen frames). Larger "
        "bounds let a slow peer catch up without losing anything, at the price of broker memory (up to the bound, per "
        "slow peer); smaller ones keep memory low, and a slow peer loses more. Every drop is counted (ems status).",
    )
    queues.add_argument("--send-hwm", type=int, default=BrokerConfig.send_hwm, metavar="N",
                        help="messages queued to one connection (ZMQ_SNDHWM) before more to it are dropped and counted "
                        "(dropped_hwm); a command that could not be sent stays queued and goes again when its agent reconnects "
                        "(default %(default)s)")
    queues.add_argument("--peer-budget-bytes", type=int, default=BrokerConfig.peer_budget_bytes, metavar="N",
                        help="bytes sent to one connection and not yet taken by it before live events and screen frames to it are "
                        "dropped (counted in ems status); commands, results and replies are never dropped for it (default %(default)s)")
    p.set_defaults(run=run, owns_data_dir=True, default_log_level="INFO")




def rate_limit_of(args) -> RateLimit:
    """The per-agent limit the flags ask for (``--no-agent-rate-limit`` wins over the rates)."""
    if args.no_agent_rate_limit:
        return RateLimit.off()
    return RateLimit(msgs_per_s=args.agent_msgs_per_s, burst_msgs=args.agent_burst_msgs,
                     bytes_per_s=args.agent_bytes_per_s, burst_bytes=args.agent_burst_bytes)


def config_of(args) -> BrokerConfig:
    """The broker configuration ``ems broker ARGS`` asks for."""
    return BrokerConfig(
        DataDir(resolve_data_dir(args.data_dir)),
        bind=args.bind,
        timing=timing_for(args.heartbeat_s),
        max_message_bytes=args.max_message_bytes,
        command_ttl_s=args.command_ttl_s,
        send_hwm=args.send_hwm,
        peer_budget_bytes=args.peer_budget_bytes,
        enrol_token=os.environ.get(ENROL_TOKEN_ENV) or None,
        rate_limit=rate_limit_of(args),
    )


def run(args) -> int:
    broker = Broker(config_of(args))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: broker.stop())
    broker.run()
    return 0
