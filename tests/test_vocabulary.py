"""One place for each word: the kind -> topic-root map, the command statuses and every message text.

The map lives in ``broker/core/envelope.py`` (``AGENT_TOPIC_ROOTS``), the statuses
in ``broker/core/vocabulary.py``. On real sockets, every kind an agent publishes
travels under the root the map gives it and reaches an operator; a source
scan proves no product module spells either word list again.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from broker.core import permissions, vocabulary
from broker.server.command_queue import FINAL as QUEUE_FINAL
from broker.core.envelope import AGENT_TOPIC_ROOTS, Kind, agent_topic
from broker.core.batches import BATCH_TOPIC_ROOTS

from conftest import next_message

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("broker", "agent", "gui", "bridges", "sync")
STATUS_WORDS = {vocabulary.QUEUED, vocabulary.SENT, vocabulary.DELIVERED, vocabulary.DONE, vocabulary.FAILED, vocabulary.EXPIRED}


@pytest.mark.parametrize("kind", list(AGENT_TOPIC_ROOTS), ids=lambda k: k.name)
@pytest.mark.parametrize("name", ["", "probe"], ids=["no-name", "named"])
def test_each_agent_kind_travels_under_its_one_root(bus, kind, name):
    """An agent publishes each of EVENT, LOG, SECURITY and FRAME, with and
    without a name: an operator subscribed to the root the map names receives
    it under ``<root>.<agent>[.<name>]``, stamped with the agent as sender."""
    root = AGENT_TOPIC_ROOTS[kind]
    operator = bus.peer("op-1", "operator")
    operator.subscribe([f"{root}.desk-1"])
    agent = bus.peer("desk-1")
    agent.publish(kind, name, {"probe": True})
    env = next_message(operator, lambda e: e.kind is kind)
    assert (env.topic, env.sender) == (agent_topic(kind, "desk-1", name), "desk-1")
    assert env.topic == (f"{root}.desk-1.{name}" if name else f"{root}.desk-1")


def test_the_tables_are_the_same_objects():
    """The permission table and the batch roots are the envelope's map (not copies that could drift),
    and the command queue's FINAL is the vocabulary's."""
    assert permissions.AGENT_TOPIC_PREFIX is AGENT_TOPIC_ROOTS
    assert BATCH_TOPIC_ROOTS == {k: v for k, v in AGENT_TOPIC_ROOTS.items() if k is not Kind.FRAME}
    assert QUEUE_FINAL is vocabulary.FINAL
    assert vocabulary.FINAL | set(vocabulary.OPEN) == set(vocabulary.STATUS_RANK) == STATUS_WORDS


def _product_modules():
    for top in PRODUCT:
        for path in sorted((REPO / top).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(), str(path))


def _strings(node) -> set:
    return {e.value for e in getattr(node, "elts", ()) if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def _spells_topic_map(node) -> bool:
    """A dict literal mapping ``Kind.X`` to that kind's topic root."""
    if not isinstance(node, ast.Dict):
        return False
    pairs = [(k.attr, v.value) for k, v in zip(node.keys, node.values)
             if isinstance(k, ast.Attribute) and isinstance(v, ast.Constant) and k.attr in Kind.__members__]
    return any(AGENT_TOPIC_ROOTS.get(Kind[attr]) == value for attr, value in pairs)


def _spells_final(node) -> bool:
    """A tuple, list or set literal holding the final statuses (or the open ones) as strings."""
    if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return False
    words = _strings(node)
    return vocabulary.FINAL <= words or set(vocabulary.OPEN) <= words


def test_no_product_module_spells_the_words_again():
    """Every product module (broker, agent, gui, bridges, sync) is parsed: no
    dict literal maps a Kind to its topic root outside broker/core/envelope.py, and
    no literal lists the final or open statuses outside broker/core/vocabulary.py."""
    found = []
    for name, tree in _product_modules():
        for node in ast.walk(tree):
            if _spells_topic_map(node) and name != "broker/core/envelope.py":
                found.append(f"{name}:{node.lineno}: kind -> topic root map")
            if _spells_final(node) and name != "broker/core/vocabulary.py":
                found.append(f"{name}:{node.lineno}: command statuses")
    assert not found, "spelled again (import them from broker.core.envelope / broker.core.vocabulary):\n" + "\n".join(found)


SQL_WORDS = ("SELECT ", "UPDATE ", "INSERT ", "DELETE ", "CREATE ", "UNIQUE ", "PRAGMA ")


def _message_texts(tree) -> list[tuple[str, int]]:
    """(text, line) of each string literal that reads like a message: 24+
    characters with a space, f-strings with ``{}`` for their fields; not
    docstrings, SQL, or argparse ``help=`` (the CLI's own words)."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            skip.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    texts = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        text = text.strip()
        if len(text) >= 24 and " " in text and not text.upper().startswith(SQL_WORDS):
            texts.append((text, node.lineno))
    return texts


def test_no_message_text_is_written_twice():
    """Every error, log and notice text of the product modules stands in one
    place (a constant or a function that words it), so that the broker, the
    persister, the agent, the GUI and the admin bridge cannot drift apart."""
    places: dict[str, list[str]] = {}
    for name, tree in _product_modules():
        for text, line in _message_texts(tree):
            places.setdefault(text, []).append(f"{name}:{line}")
    twice = {text: where for text, where in places.items() if len(where) > 1}
    assert not twice, "written more than once (give each one place):\n" + "\n".join(
        f"{text!r}: {', '.join(where)}" for text, where in twice.items())


@pytest.mark.parametrize("value, final", [("done", True), ("failed", True), ("expired", True), ("queued", False),
                                          ("delivered", False), (None, False), (3, False), (["done"], False), ("DONE", False)])
def test_is_final_takes_anything_a_body_holds(value, final):
    """``is_final`` answers for any value read off the wire (None, numbers, lists, other case) without raising."""
    assert vocabulary.is_final(value) is final


def test_shared_refusals_are_worded_by_the_vocabulary():
    """The texts several components give for one refusal come from one function:
    a reason over the limit (agent and admin bridge, one limit), a pending key
    (the wire's error table and the client library), a history read (broker and persister)."""
    from agent.context import CommandError
    from agent.control.service import _reason
    from bridges.admin_http.config import AdminHttpConfig
    from broker.core.envelope import ERROR_TEXT, ErrorCode

    with pytest.raises(CommandError) as too_long:
        _reason({"reason": "x" * (vocabulary.MAX_REASON_CHARS + 1)})
    assert str(too_long.value) == vocabulary.reason_too_long()
    assert AdminHttpConfig.max_reason_chars == vocabulary.MAX_REASON_CHARS
    assert ERROR_TEXT[ErrorCode.NOT_ENROLLED].endswith(vocabulary.pending_key_advice())
    assert permissions.history_refusal("viewer", "audit") == "role viewer may not read audit history"


def test_the_pending_key_advice_is_a_command_that_runs_for_a_key_starting_with_a_dash():
    """Tried: the advice for a Z85 key prefix that starts with '-' (argparse would read it as an option)."""
    from broker.cli.main import build_parser

    for prefix in ("Ab3dEf9h", "-b3dEf9h"):
        advice = vocabulary.pending_key_advice(prefix)
        argv = advice.split("`")[1].split()[1:]
        args = build_parser("keys").parse_args(argv)
        assert args.id == prefix, advice
