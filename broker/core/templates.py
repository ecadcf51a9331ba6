"""Command templates: a named command with fixed arguments and typed parameters an operator fills in.

A template (``ems template add``) says which command it runs, the arguments
it always passes, and the parameters a run may give, each typed::

    name      a template name: letters, digits, '.', '_', '-' (at most 64)
    command   the command it sends (``os.update.apply``)
    args      fixed arguments (a map; a run cannot change them)
    params    parameter name -> spec: type (text, int, number, bool, choice),
              required, default, min / max (int, number), max_chars (text),
              choices (choice)
    approval  whether every run waits for a second operator (beside the
              broker's per-command rules)

:func:`check_template` checks a definition; :func:`fill` turns a run's
values (typed, or text from the command line) into the command's
arguments, refusing unknown names, missing required values and values out
of their spec with a message naming the parameter and what it takes.
"""
from __future__ import annotations

import math
import re
from typing import Any

TYPES = ("text", "int", "number", "bool", "choice")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
MAX_PARAMS = 32
MAX_TEXT = 4000
_SPEC_KEYS = {"type", "required", "default", "min", "max", "max_chars", "choices", "help"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class TemplateError(ValueError):
    """A template definition or a run's values that do not fit; the message says which part and why."""


def check_template(name: Any, command: Any, args: Any, params: Any) -> dict[str, dict]:
    """The parameter specs of a valid definition (defaults checked against their own spec)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise TemplateError(f"template name: 1-64 letters, digits, '.', '_' or '-', not {name!r}")
    if not isinstance(command, str) or not 0 < len(command) <= 64:
        raise TemplateError("command: the name of the command the template sends (1-64 characters)")
    if not isinstance(args, dict):
        raise TemplateError("args: a map of the arguments every run passes")
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        raise TemplateError(f"params: a map of at most {MAX_PARAMS} parameter specs")
    checked = {}
    for pname, spec in params.items():
        if not isinstance(pname, str) or not PARAM.match(pname):
            raise TemplateError(f"parameter name {pname!r}: a letter or _, then letters, digits or _ (at most 32)")
        if pname in args:
            raise TemplateError(f"parameter {pname!r} is also a fixed argument: it is one or the other")
        checked[pname] = _check_spec(pname, spec)
    return checked


def _check_spec(pname: str, spec: Any) -> dict:
    if not isinstance(spec, dict) or spec.get("type") not in TYPES or not set(spec) <= _SPEC_KEYS:
        raise TemplateError(f"parameter {pname!r}: a spec with type one of {', '.join(TYPES)} "
                            f"and only {', '.join(sorted(_SPEC_KEYS))}")
    if spec["type"] == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise TemplateError(f"parameter {pname!r}: a choice needs choices, a list of strings")
    for bound in ("min", "max"):
        if bound in spec and (spec["type"] not in ("int", "number") or not _is_number(spec[bound])):
            raise TemplateError(f"parameter {pname!r}: {bound} is for int and number parameters, and is a number")
    if "max_chars" in spec and (spec["type"] != "text" or type(spec["max_chars"]) is not int or not 0 < spec["max_chars"] <= MAX_TEXT):
        raise TemplateError(f"parameter {pname!r}: max_chars is for text parameters, 1-{MAX_TEXT}")
    if not isinstance(spec.get("required", False), bool):
        raise TemplateError(f"parameter {pname!r}: required is true or false")
    if "default" in spec:
        spec = {**spec, "default": value_of(pname, spec, spec["default"])}
    return spec


def fill(fixed: dict, specs: dict[str, dict], values: Any) -> dict:
    """The command's arguments for a run: ``fixed`` plus each parameter checked (or its default)."""
    if not isinstance(values, dict):
        raise TemplateError("params: a map of parameter name -> value")
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise TemplateError(f"unknown parameter(s) {', '.join(map(str, unknown))}; this template takes: "
                            + (", ".join(f"{n} ({s['type']})" for n, s in specs.items()) or "none"))
    args = dict(fixed)
    for pname, spec in specs.items():
        if pname in values:
            args[pname] = value_of(pname, spec, values[pname])
        elif "default" in spec:
            args[pname] = spec["default"]
        elif spec.get("required"):
            raise TemplateError(f"parameter {pname!r} ({spec['type']}) is required")
    return args


def value_of(pname: str, spec: dict, value: Any) -> Any:
    """``value`` as parameter ``pname`` takes it (text from a command line is converted), else TemplateError."""
    kind = spec["type"]
    try:
        if kind == "bool":
            return _boolean(value)
        if kind in ("int", "number"):
            number = _number(value, kind)
            if ("min" in spec and number < spec["min"]) or ("max" in spec and number > spec["max"]):
                raise ValueError(f"from {spec.get('min', '-inf')} to {spec.get('max', 'inf')}")
            return number
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError("text")
        if kind == "choice" and value not in spec["choices"]:
            raise ValueError("one of " + ", ".join(spec["choices"]))
        if len(value) > spec.get("max_chars", MAX_TEXT):
            raise ValueError(f"at most {spec.get('max_chars', MAX_TEXT)} characters")
        return value
    except ValueError as exc:
        raise TemplateError(f"parameter {pname!r} ({kind}) must be {exc}, not {str(value)[:40]!r}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ValueError("true or false")


def _number(value: Any, kind: str) -> int | float:
    if isinstance(value, str):
        try:
            value = int(value) if kind == "int" else float(value)
        except ValueError:
            raise ValueError("an integer" if kind == "int" else "a number") from None
    if kind == "int" and (type(value) is not int or not -2**63 <= value < 2**63):
        raise ValueError("an integer (64-bit)")
    if kind == "number" and not _is_number(value):
        raise ValueError("a finite number")
    return value


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and abs(value) < 2**63
