"""``python -m bridges.get_latest_frame CLIENT --operator NAME [--operator-id ACCOUNT] --reason TEXT``: the screen now, as a JPEG on stdout.

For the web UI's "look at this screen". It is a screen access like any
other, made for the person the web UI names: the bridge (service key
``DATA/keys/latest-frame.*``, client id ``web-latest-frame``) sends the
agent's ``capture`` command with the reason and ``args.operator = {"name":
NAME, "id": ACCOUNT}``; the broker keeps that person (a service vouches for the person it
acts for: ``broker.server.operators``) with the bridge as ``via``, audits the
command with both and the reason; the agent shows the employee who looks
and why ("Jane Doe via web-latest-frame") and writes it to its access log.

Why a capture and not a short live-view lease: live frames go only to
people's keys (``permissions.LIVE_READERS``: a service never receives a live
screen), while a capture is one picture, counted by the computer's own
limit (``captures_per_minute``), stored encrypted like any capture and read
back here from the store (``store.capture``). Nothing lingers afterwards:
no lease to end, no indicator left up.

Steps, all within ``--timeout-s``: the broker's ``agents`` (unknown or
offline: fail now, no command queued), the command (it expires with the
deadline, so an agent that vanishes meanwhile never runs it late), its
result, then the stored picture by its message id. Exit codes:
:class:`bridges.bridge_call.Exit`.
"""
from __future__ import annotations

import argparse
import sys
import time

from bridges.bridge_call import LATEST_FRAME, BridgeCall, BridgeFailure, Exit, add_common_args, add_person_args, person_of, run
from broker.core.envelope import ErrorCode
from broker.core.errors import RemoteError
from broker.core.errors import TimeoutError as BusTimeout
from broker.core.screen_frames import SCREEN_UNAVAILABLE

COMMAND = "capture"
DEFAULT_QUALITY = 70
#: how often the store is asked whether the picture has arrived
STORE_POLL_S = 0.05
#: captures looked through for ours (the newest of this client)
RECENT_CAPTURES = 20


def fetch_frame(call: BridgeCall, client_id: str, operator: dict, reason: str, quality: int, max_width: int | None) -> bytes:
    """The JPEG of ``client_id``'s screen, taken now for ``operator`` (``{"name", "id"?}``) with ``reason``."""
    _require_online(call, client_id)
    started = time.time()
    args = {"reason": reason, "operator": operator, "quality": quality}
    if max_width:
        args["max_width"] = max_width
    output = _run_capture(call, client_id, args)
    return _stored_picture(call, client_id, output["msg_id"], started, {"operator": args["operator"], "reason": reason})


def _require_online(call: BridgeCall, client_id: str) -> None:
    agents = {a["client_id"]: a for a in call.request("agents")}
    agent = agents.get(client_id)
    if agent is None:
        raise BridgeFailure(Exit.UNKNOWN_AGENT, f"no accepted agent {client_id!r} at this server")
    if agent.get("state") != "online":
        raise BridgeFailure(Exit.AGENT_OFFLINE, f"agent {client_id} is offline (last seen {_ago(agent.get('last_seen'))})")


def _run_capture(call: BridgeCall, client_id: str, args: dict) -> dict:
    """Send ``capture`` and wait for its outcome; the agent's output, or why not."""
    left = call.remaining("the capture to be queued")
    try:
        first = call.client.send_command(client_id, COMMAND, args, ttl_s=left, timeout_s=left)
        outcome = call.client.wait_result(first["id"], call.remaining(f"{client_id} to take the picture"))
    except RemoteError as exc:
        if exc.code == ErrorCode.REASON_REQUIRED:
            raise BridgeFailure(Exit.USAGE, f"the broker refused the reason: {exc.detail or exc.message}") from exc
        raise
    except BusTimeout:
        raise BridgeFailure(Exit.TIMEOUT, f"timed out after {call.timeout_s:g} s waiting for {client_id} to take the picture "
                                          "(the command expires unrun)") from None
    status, result = outcome.get("status"), outcome.get("result") or {}
    if status == "done" and isinstance(result, dict) and result.get("ok"):
        return result["output"]
    if status == "expired":
        raise BridgeFailure(Exit.AGENT_OFFLINE, f"agent {client_id} did not take the picture in time (it went offline?)")
    error = str(result.get("error", "")) if isinstance(result, dict) else ""
    if error.startswith(SCREEN_UNAVAILABLE):
        raise BridgeFailure(Exit.NO_DISPLAY, f"agent {client_id} has no screen to capture: {error}")
    if "refused" in error or "turned off" in error:  # the computer's own policy (a rate limit, captures off)
        raise BridgeFailure(Exit.NOT_ALLOWED, f"agent {client_id}: {error}")
    raise BridgeFailure(Exit.FAILED, f"agent {client_id} could not take the picture ({status}): {error or 'no reason given'}")


def _stored_picture(call: BridgeCall, client_id: str, msg_id: str, since: float, person: dict) -> bytes:
    """The picture the agent stored as ``msg_id``, once the store has it
    (the store audits the read naming ``person``: operator and reason)."""
    while True:
        try:
            rows = call.request("store.query", kind="captures", client_id=client_id, since=since - 60,
                                limit=RECENT_CAPTURES, order="desc")
        except RemoteError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise BridgeFailure(Exit.FAILED, f"the picture was taken but the store cannot be read: {exc.detail}") from exc
            raise
        row = next((r for r in rows if r.get("msg_id") == msg_id), None)
        if row is not None:
            capture = call.request("store.capture", id=row["id"], **person)
            if capture and capture.get("image"):
                return capture["image"]
        call.remaining("the picture to reach the store")
        time.sleep(STORE_POLL_S)


def _ago(ts) -> str:
    if not isinstance(ts, (int, float)) or ts <= 0:
        return "never"
    return f"{max(0.0, time.time() - ts):.0f} s ago"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bridges.get_latest_frame", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("client", help="the agent's client id")
    add_person_args(p)
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, choices=range(1, 96), metavar="1-95",
                   help="JPEG quality (default %(default)s)")
    p.add_argument("--max-width", type=int, default=None, help="shrink to at most this many pixels wide")
    add_common_args(p)
    args = p.parse_args(argv)

    def work(call: BridgeCall) -> None:
        jpeg = fetch_frame(call, args.client, person_of(args), args.reason, args.quality, args.max_width)
        sys.stdout.buffer.write(jpeg)
        sys.stdout.buffer.flush()

    return run(LATEST_FRAME, args, work)


if __name__ == "__main__":
    sys.exit(main())
