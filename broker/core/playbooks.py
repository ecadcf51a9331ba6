"""Playbooks: ordered template steps, each run on a target only if its condition on the step before holds.

A playbook (``ems playbook add``) is::

    name         letters, digits, '.', '_', '-' (at most 64)
    description  what it is for
    steps        1-20 steps, each {template, params, when}: a template
                 (:mod:`broker.core.templates`), the values it gives that
                 template's parameters, and when it runs

``when`` looks at the last step that *ran* on the same target (skipped
steps are passed over), in a small closed language, never evaluated as code:

* ``ok`` (the default): that step is done;
* ``failed``: that step failed (or expired unrun);
* ``always``: whatever happened;
* ``result.FIELD OP VALUE``: a field of that step's result (``result.exit_code
  == 0``, ``result.output.version < "2.3"``), OP one of ``== != < <= > >=``,
  VALUE a number, a "double-quoted string" or true/false. Dotted numbers
  such as ``"2.10"`` compare as versions; a missing field or values of
  different kinds make the condition false.

The first step looks at nothing: its ``when`` is ``ok`` or ``always``. A step
whose condition is false is skipped and the target goes on; after a failed
step, a next step that does not run ends the target (``stopped at step N``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from broker.core.templates import NAME, TemplateError

OK, FAILED_STEP, ALWAYS = "ok", "failed", "always"
MAX_STEPS = 20
MAX_WHEN_CHARS = 200
_OPS = ("==", "!=", "<=", ">=", "<", ">")
_FIELD = r"(?!__)[A-Za-z_][A-Za-z0-9_]{0,63}"
_COMPARISON = re.compile(r"result((?:\." + _FIELD + r"){1,8})\s*(==|!=|<=|>=|<|>)\s*"
                         r"(-?[0-9]{1,19}(?:\.[0-9]{1,19})?|\"[^\"\\\x00-\x1f]{0,100}\"|true|false)")
_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){1,5}$")
_STEP_KEYS = {"template", "params", "when"}


class PlaybookError(TemplateError):
    """A playbook definition or condition that does not fit; the message says which part and why."""


@dataclass(frozen=True)
class Condition:
    """A parsed ``when``: a keyword (ok, failed, always) or a comparison on ``result.<path>``."""

    text: str
    keyword: str = ""
    path: tuple[str, ...] = ()
    op: str = ""
    value: Any = None

    def holds(self, done: bool, result: Any) -> bool:
        """Whether the step runs after one that ended ``done`` (True) or not, with ``result``."""
        if self.keyword:
            return self.keyword == ALWAYS or done == (self.keyword == OK)
        found = field_of(result, self.path)
        return found is not _MISSING and compare(found, self.op, self.value)


_MISSING = object()


def parse_when(text: Any) -> Condition:
    """``text`` as a :class:`Condition`, else PlaybookError saying what the language takes."""
    if text is None:
        return Condition(OK, OK)
    if not isinstance(text, str) or len(text) > MAX_WHEN_CHARS:
        raise PlaybookError(f"when: a condition of at most {MAX_WHEN_CHARS} characters")
    stripped = text.strip()
    if stripped in (OK, FAILED_STEP, ALWAYS):
        return Condition(stripped, stripped)
    match = _COMPARISON.fullmatch(stripped)
    if match is None:
        raise PlaybookError(f"when {text[:60]!r}: ok, failed, always, or result.FIELD OP VALUE with OP one of "
                            f"{' '.join(_OPS)} and VALUE a number, a \"string\" or true/false")
    path, op, literal = match.groups()
    return Condition(stripped, "", tuple(path[1:].split(".")), op, _literal(literal))


def _literal(text: str) -> Any:
    if text.startswith('"'):
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    number = float(text) if "." in text else int(text)
    if not math.isfinite(number) or abs(number) >= 2**63:
        raise PlaybookError(f"when: {text} is out of range (64-bit numbers)")
    return number


def field_of(result: Any, path: tuple[str, ...]) -> Any:
    """``result[path[0]][path[1]]...``, or a marker when any part is missing."""
    for part in path:
        if not isinstance(result, dict) or part not in result:
            return _MISSING
        result = result[part]
    return result


def compare(left: Any, op: str, right: Any) -> bool:
    """``left OP right`` for two values of one kind (numbers, text, versions, booleans); False otherwise."""
    if isinstance(left, bool) or isinstance(right, bool):
        if type(left) is not type(right) or op not in ("==", "!="):
            return False
    elif isinstance(left, (int, float)) and isinstance(right, (int, float)):
        pass
    elif isinstance(left, str) and isinstance(right, str):
        if _VERSION.match(left) and _VERSION.match(right):
            left, right = tuple(map(int, left.split("."))), tuple(map(int, right.split(".")))
    else:
        return False
    return {"==": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right}[op]


def check_playbook(name: Any, steps: Any) -> list[dict]:
    """The steps of a valid definition (each {template, params, when} with ``when`` as written, ok by default)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise PlaybookError(f"playbook name: 1-64 letters, digits, '.', '_' or '-', not {str(name)[:70]!r}")
    if not isinstance(steps, list) or not 0 < len(steps) <= MAX_STEPS:
        raise PlaybookError(f"steps: a list of 1 to {MAX_STEPS} steps, each {{template, params, when}}")
    checked = []
    for number, step in enumerate(steps, 1):
        if not isinstance(step, dict) or not set(step) <= _STEP_KEYS:
            raise PlaybookError(f"step {number}: a map with template, params and when only")
        template, params = step.get("template"), step.get("params", {})
        if not isinstance(template, str) or not NAME.match(template):
            raise PlaybookError(f"step {number}: template is a template's name (ems template list)")
        if not isinstance(params, dict):
            raise PlaybookError(f"step {number}: params is a map of parameter name -> value")
        try:
            when = parse_when(step.get("when"))
        except PlaybookError as exc:
            raise PlaybookError(f"step {number}: {exc}") from None
        if number == 1 and when.keyword not in (OK, ALWAYS):
            raise PlaybookError("step 1: nothing runs before it, so its when is ok or always")
        checked.append({"template": template, "params": params, "when": when.text})
    return checked


def short_result(result: Any, max_fields: int = 16, max_chars: int = 200) -> dict:
    """A bounded copy of a command's result to keep with a step: scalars two levels down at most, text cut."""
    out = _scalars(result, max_fields, max_chars)
    for key, value in list(result.items())[:max_fields] if isinstance(result, dict) else ():
        if isinstance(key, str) and isinstance(value, dict):
            out[key] = _scalars(value, max_fields, max_chars)
    return out


def _scalars(mapping: Any, max_fields: int, max_chars: int) -> dict:
    out: dict = {}
    for key, value in list(mapping.items())[:max_fields] if isinstance(mapping, dict) else ():
        if isinstance(key, str) and (value is None or isinstance(value, (bool, int, float))):
            out[key] = value
        elif isinstance(key, str) and isinstance(value, str):
            out[key] = value[:max_chars]
    return out
