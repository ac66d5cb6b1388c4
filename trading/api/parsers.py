"""The API's JSON parser: a body the database or the config code could choke on is a 400
naming the problem here, at the HTTP layer, before any view sees it.

Refused: a body over MAX_BODY_BYTES or not UTF-8; invalid JSON; NaN/Infinity and numbers that
overflow to infinity (1e999); integers of more than MAX_INT_DIGITS digits; duplicate keys in an
object (the last one would silently win); nesting deeper than MAX_DEPTH (deep structures
overflow the recursion of whatever walks them later); strings or keys holding a lone surrogate
(no UTF-8 encoding exists: the database and the JSON renderer fail on them) or a NUL character
(PostgreSQL cannot store it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# The whole of config/algo.yml is under 10 KB as JSON and 5 levels deep: room to spare.
MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32


class _Refused(ValueError):
    """A problem found while decoding, with the message for the client."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number JSON can carry; send a finite number")


# No value in the config or the API needs more digits than this (money is at most 10^12 with
# paise); a longer integer is a mistake, said as one (Python itself refuses 4,300 digits and up
# with advice about sys.set_int_max_str_digits that is no use to a client).
MAX_INT_DIGITS = 30


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(
            f"an integer of {digits:,} digits; numbers here have at most {MAX_INT_DIGITS}"
        )
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"duplicate key {key!a} in an object")
        result[key] = value
    return result


def _at(path: str, key: object) -> str:
    return f"{path}[{key!a}]" if isinstance(key, str) else f"{path}[{key}]"


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate ({text[exc.start]!a}), which is not text"
    return None


class JSONRefused(ValueError):
    """A JSON text refused by :func:`decode_json`, the problem in words; ``syntax``: it is not
    JSON at all (as opposed to JSON this project will not take)."""

    def __init__(self, problem: str, *, syntax: bool = False) -> None:
        super().__init__(problem)
        self.syntax = syntax


def json_value_problem(value: Any) -> str | None:
    """The first unsafe part of a decoded JSON value, in words; None when there is none
    (iteratively: the depth check must not itself recurse)."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels at {path}"
            pairs = item.items() if isinstance(item, Mapping) else enumerate(item)
            for key, child in pairs:
                where = _at(path, key)
                if isinstance(key, str) and (problem := _text_problem(key)):
                    return f"the key {where} {problem}"
                stack.append((child, where, depth + 1))
        elif isinstance(item, str):
            if problem := _text_problem(item):
                return f"the string at {path} {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"the number at {path} is out of range"
    return None


def check_json_value(value: Any) -> None:
    """Raise ParseError naming the first unsafe part of a decoded JSON value."""
    problem = json_value_problem(value)
    if problem is not None:
        raise ParseError(f"JSON body: {problem}")


def decode_json(text: str) -> Any:
    """``text`` decoded by this module's rules (its docstring), the one decoder of the API's
    bodies and the admin's JSON values; JSONRefused naming the problem."""
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_int, object_pairs_hook=_object
        )
    except _Refused as exc:
        raise JSONRefused(str(exc)) from None
    except RecursionError:
        raise JSONRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError
        raise JSONRefused(str(exc), syntax=True) from None
    problem = json_value_problem(value)
    if problem is not None:
        raise JSONRefused(problem)
    return value


class StrictJSONParser(JSONParser):
    """application/json, decoded strictly (see the module docstring)."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ParseError(f"JSON body: larger than {MAX_BODY_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON body: not valid UTF-8 (byte {exc.start})") from None
        try:
            return decode_json(text)
        except JSONRefused as exc:
            said = f"JSON parse error - {exc}" if exc.syntax else f"JSON body: {exc}"
            raise ParseError(said) from None
