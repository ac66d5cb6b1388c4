"""The validation layer of every configuration file: pydantic v2, with the project's messages.

A file's schema is built from :class:`Rule` values, one per key: ``whole(1, 100)``,
``number(0, 1, above=True)``, ``money(high=10_000_000)``, ``clock()``, ``day()``, ``flag()``,
``choice(...)``, ``symbol()``, ``nullable(rule)``, ``items(rule, ...)``, and ``section(cls,
{key: rule}, checks)`` for a mapping that becomes one of the project's plain frozen dataclasses
(the rules receive those, not pydantic objects: attribute access on the hot path is a plain
slot read, and ``trading.config.types`` imports nothing but the standard library).
``TypeAdapter(rule.type)`` validates: strict types (``True`` is not 1, ``"5"`` is not 5, a float
is not a whole number), bounds, unknown and missing keys, every problem of the document
collected in one ValidationError.

Each rule turns its own failures into one problem carrying the project's wording ("a whole
number between 1 and 100"), so pydantic's wording ("Input should be less than or equal to 100")
never reaches an operator; :func:`validate` turns the ValidationError into ConfigError lines,
in this one place:

    {source}: {key.path}: expected {what}, got {value}
    {source}: {key.path}: {note}                        (unknown key, missing key, ...)

Money is a Decimal read from a number or a numeric string of ASCII digits (Python's Decimal and
int also read Arabic-Indic or full-width digits: refused), finite, bounded above (``1e30`` and
``1e999999999`` are refused, not "no limit") and to the paisa.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, NoReturn

from pydantic import ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError, WrapValidator
from pydantic_core import InitErrorDetails, PydanticCustomError
from typing_extensions import TypedDict

from config_schema.errors import ConfigError
from config_schema.text import join, shown

Loc = tuple[str | int, ...]

_TYPE = "config"  # the pydantic error type of every problem a rule reports
# Every problem at once, but not without end: a body of 100,000 unknown keys must not make a
# 10 MB answer. Far more than any real edit gets wrong.
MAX_PROBLEMS = 50
_PAISA = Decimal("0.01")
# A keyed list item's label in a key path (indices[NIFTY]); see items(key=...).
_LABEL = re.compile(r"\[[A-Z][A-Z0-9]*\]")
_SHOWN = "\x1f"  # marks a location element already written as shown (see _key_loc)
_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9]*", re.ASCII)
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)


# -- problems -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One problem below the value being checked: ``path`` relative to it (``("end",)``,
    ``("tiers", 1, "trail_pct")``, ``()`` for the value itself). Either ``expected`` (with the
    ``value`` found) or a free-text ``note``."""

    path: Loc
    expected: str | None = None
    value: Any = None
    note: str | None = None


def found(path: Loc, value: Any, expected: str) -> Problem:
    return Problem(path, expected=expected, value=value)


def note(path: Loc, text: str) -> Problem:
    return Problem(path, note=text)


def _error(problem: Problem) -> PydanticCustomError:
    if problem.note is not None:
        return PydanticCustomError(_TYPE, "{note}", {"note": problem.note})
    return PydanticCustomError(_TYPE, "expected {expected}", {"expected": problem.expected})


def fail(expected: str) -> NoReturn:
    """Inside a validator: the value being validated is not ``expected``."""
    raise _error(Problem((), expected=expected))


def _detail(problem: Problem, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=_error(problem),
        loc=problem.path,
        input=value if problem.note is not None else problem.value,
    )


def report(problems: Sequence[Problem], value: Any) -> NoReturn:
    """Inside a validator: several problems at once, each at its own path below ``value``, the
    value being validated (a note's "got" is never shown; an expectation shows its own)."""
    raise ValidationError.from_exception_data("config", [_detail(p, value) for p in problems])


def _own_expected(exc: ValidationError) -> str | None:
    """The expectation of a rule that failed as a whole (a problem at its own level), if so."""
    for error in exc.errors(include_url=False):
        if not error["loc"]:
            return (error.get("ctx") or {}).get("expected") or ""
    return None


# -- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What one key accepts: ``expected`` in words (for the messages of enclosing rules) and
    ``type``, the annotated type pydantic validates. A section also keeps its ``model`` and
    ``fields``, a list or mapping its ``item`` rule, so a schema can be walked (tests)."""

    expected: str
    type: Any
    model: type | str | None = None
    fields: Mapping[str, Rule] | None = None
    item: Rule | None = None


def _number_text(number: float | Decimal) -> str:
    if float(number).is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{float(number):g}"


def span(low: float | Decimal, high: float | Decimal, above: bool = False) -> str:
    """Bounds in words: "between 1 and 100", "above 0 and at most 1"."""
    if above:
        return f"above {_number_text(low)} and at most {_number_text(high)}"
    return f"between {_number_text(low)} and {_number_text(high)}"


def expecting(expected: str, inner: Any) -> Rule:
    """``inner`` (a pydantic type with constraints), its failures reported as "expected
    ``expected``" whatever pydantic's own wording."""

    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if _own_expected(exc) is None:
                raise
            fail(expected)

    return Rule(expected, Annotated[inner, WrapValidator(wrap)])


class Expected(ValueError):
    """Raised by a ``plain`` converter: a more precise expectation than the rule's own."""


def plain(expected: str, convert: Callable[[Any], Any]) -> Rule:
    """A value read by ``convert``, which returns it or raises ValueError (Expected to say
    more precisely what it wanted; any other ValueError's text is not the operator's)."""

    def validate(value: Any) -> Any:
        try:
            return convert(value)
        except Expected as exc:
            fail(str(exc))
        except ValueError:
            fail(expected)

    return Rule(expected, Annotated[Any, PlainValidator(validate)])


def whole(low: int, high: int) -> Rule:
    """A whole number ``low <= n <= high`` (not a bool, not a float, not a string)."""
    return expecting(
        f"a whole number {span(low, high)}", Annotated[int, Field(strict=True, ge=low, le=high)]
    )


def number(low: float, high: float, above: bool = False) -> Rule:
    """A finite number (int or float; not a bool, not a string), as a float."""
    bound = {"gt": low} if above else {"ge": low}
    return expecting(
        f"a number {span(low, high, above)}",
        Annotated[float, Field(strict=True, le=high, allow_inf_nan=False, **bound)],
    )


def flag() -> Rule:
    return expecting("true or false", Annotated[bool, Field(strict=True)])


def choice(*options: str) -> Rule:
    return expecting("one of " + ", ".join(repr(option) for option in options), Literal[options])


def decimal_of(value: Any) -> Decimal:
    """A YAML/JSON number or numeric string as an exact, finite Decimal; ValueError otherwise.

    Floats go through their shortest repr (``0.1`` is exactly 0.1). A string (blanks around
    it ignored) must be plain ASCII digits with an optional minus sign and decimal point:
    ``Decimal("١٢٣")`` is 123 to Python and ``Decimal("1e3")`` is 1000, but an amount the
    operator cannot read as written is refused. Long strings are refused before parsing
    (``"1" * 10**6`` is no amount)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError
    if isinstance(value, int):
        # An int of another type is YAML's base-60 reading of 1:40:00 (6000): no amount.
        if type(value) is not int or value.bit_length() > 200:  # str() refuses 4300 digits
            raise ValueError
        return Decimal(value)
    if isinstance(value, float):
        text = repr(value)  # a number, typed as one (YAML 0.000005 is 5e-06 here)
    else:
        # Plain ASCII digits with an optional minus and point: Decimal() also reads "1e3",
        # "1_000" and "+100", and a mistyped "1e5" must not become a lakh.
        text = value.strip()
        if len(text) > 40 or not _PLAIN_NUMBER.fullmatch(text):
            raise ValueError
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError from None
    if not amount.is_finite():
        raise ValueError
    return amount


def money(high: int, low: int = 0, above: bool = True) -> Rule:
    """Rupees, exact (Decimal), ``low < amount <= high`` (``low <=`` when not ``above``), to
    the paisa. ``high`` is a sanity bound: far above what a retail or small-prop account could
    mean, low enough that a typo (an exponent, extra zeros) cannot switch a limit off."""
    expected = f"an amount in rupees, to the paisa, {span(low, high, above)}"

    def convert(value: Any) -> Decimal:
        amount = decimal_of(value)
        too_low = amount < low or (above and amount == low)
        if too_low or amount > high or amount != amount.quantize(_PAISA):
            raise ValueError
        return amount

    return plain(expected, convert)


def fraction_decimal(expected: str, high: Decimal) -> Rule:
    """A decimal fraction ``0 <= x <= high`` kept exact (Decimal), e.g. a tax rate."""

    def convert(value: Any) -> Decimal:
        rate = decimal_of(value)
        if rate < 0 or rate > high:
            raise ValueError
        return rate

    return plain(expected, convert)


def clock() -> Rule:
    """A time of day "HH:MM" (IST), written in quotes."""
    expected = 'a time of day "HH:MM" (IST)'

    def convert(value: Any) -> time:
        if isinstance(value, time):
            return value.replace(second=0, microsecond=0, tzinfo=None)
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 15:00 as the base-60 number 900.
            raise Expected(f"{expected} in quotes (YAML reads unquoted 15:00 as 900)")
        match = _HHMM.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError
        return time(int(match[1]), int(match[2]))

    return plain(expected, convert)


def day(
    expected: str = "an ISO date YYYY-MM-DD",
    low: date | None = None,
    high: date | None = None,
) -> Rule:
    """A calendar date, written YYYY-MM-DD (the YAML reader leaves dates as strings, so an
    impossible one like 2026-02-30 is named here with its key path), from ``low`` to ``high``
    when given (said in ``expected``)."""

    def convert(value: Any) -> date:
        if isinstance(value, date) and not hasattr(value, "hour"):
            result = value
        elif isinstance(value, str) and _ISO_DAY.fullmatch(value.strip()):
            result = date.fromisoformat(value.strip())  # ValueError for 2026-02-30
        else:
            raise ValueError
        if (low is not None and result < low) or (high is not None and result > high):
            raise ValueError
        return result

    return plain(expected, convert)


def symbol() -> Rule:
    """An index symbol, upper-cased: NIFTY."""

    def convert(value: Any) -> str:
        if not (isinstance(value, str) and _SYMBOL.fullmatch(value)):
            raise ValueError
        return value.upper()

    return plain("an index symbol of letters and digits (NIFTY)", convert)


def nullable(rule: Rule, expected: str | None = None) -> Rule:
    """``rule``'s value or null (None); the expectation says "... or null"."""
    said = expected

    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            inner = _own_expected(exc)
            if inner is None:
                raise
            fail(said or f"{inner or rule.expected} or null")

    return Rule(
        expected or f"{rule.expected} or null",
        Annotated[rule.type | None, WrapValidator(wrap)],
    )


def _relabel(errors: Iterable[Any], raw: Sequence[Any], key: str) -> list[InitErrorDetails]:
    """The errors of list items, each item named by its ``key`` (``[NIFTY]``) where it has a
    plain one, else by its position."""
    details = []
    for error in errors:
        loc = list(error["loc"])
        if loc and isinstance(loc[0], int):
            item = raw[loc[0]]
            name = item.get(key) if isinstance(item, Mapping) else None
            if isinstance(name, str) and _SYMBOL.fullmatch(name):
                loc[0] = f"[{name.upper()}]"
        details.append(_reraised(error, tuple(loc)))
    return details


def _reraised(error: Any, loc: Loc) -> InitErrorDetails:
    """An error caught from an inner rule, raised again at ``loc`` (errors of pydantic's own
    types keep their type and context)."""
    ctx = error.get("ctx") or {}
    if error["type"] == _TYPE:
        template = "{note}" if "note" in ctx else "expected {expected}"
        return InitErrorDetails(
            type=PydanticCustomError(_TYPE, template, ctx), loc=loc, input=error["input"]
        )
    detail = InitErrorDetails(type=error["type"], loc=loc, input=error["input"])
    if ctx:
        detail["ctx"] = ctx
    return detail


def items(
    rule: Rule,
    expected: str,
    *,
    key: str | None = None,
    min_items: int = 0,
    max_items: int = 1000,
    build: Callable[[list[Any]], Any] = tuple,
    checks: Sequence[Callable[[Any], Iterable[Problem]]] = (),
) -> Rule:
    """A list of ``rule`` values, built by ``build`` (a tuple by default). With ``key``, items
    are named by it in key paths (``indices[NIFTY].enabled``) and must not repeat it.
    ``checks`` run on the built value when every item is valid."""

    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        if not isinstance(value, list | tuple) or not min_items <= len(value) <= max_items:
            fail(expected)
        raw = list(value)
        try:
            parsed = handler(raw)
        except ValidationError as exc:
            if key is None:
                raise
            raise ValidationError.from_exception_data(
                "config", _relabel(exc.errors(include_url=False), raw, key)
            ) from None
        if key is not None:
            seen: set[Any] = set()
            for i, item in enumerate(parsed):
                name = getattr(item, key)
                if name in seen:
                    report([found((i, key), name, "a key no earlier item uses")], value)
                seen.add(name)
        built = build(parsed)
        problems = [problem for check in checks for problem in check(built)]
        if problems:
            report(problems, value)
        return built

    return Rule(expected, Annotated[list[rule.type], WrapValidator(wrap)], item=rule)


def mapping(
    rule: Rule,
    expected: str,
    *,
    key_note: Callable[[str], str | None] | None = None,
    min_items: int = 0,
    build: Callable[[dict[str, Any]], Any] = dict,
) -> Rule:
    """A mapping of free text keys (``freeze_quantity: {NIFTY: 1800}``) to ``rule`` values.
    ``key_note`` says what is wrong with a key (reported as a note at this level), or None."""

    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        if not isinstance(value, Mapping) or len(value) < min_items:
            fail(expected)
        bad = [
            note((), f"expected keys of plain text, got the key {shown(key)}")
            for key in value
            if not isinstance(key, str) or not key.isprintable() or not _encodable(key)
        ]
        if key_note is not None:
            said = (key_note(key) for key in value if isinstance(key, str))
            bad += [note((), text) for text in said if text is not None]
        if bad:
            report(bad, value)
        return build(handler(dict(value)))

    return Rule(expected, Annotated[dict[str, rule.type], WrapValidator(wrap)], item=rule)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


Check = Callable[[Any], Iterable[Problem]]


def section(
    model: type | str,
    fields: Mapping[str, Rule],
    checks: Sequence[Check] = (),
    *,
    build: Callable[..., Any] | None = None,
    expected: str | None = None,
    exclude: Iterable[str] = (),
) -> Rule:
    """A mapping with exactly the keys ``fields`` (unknown and missing keys are problems),
    built into ``build(**values)`` (default: the dataclass ``model``), then checked by each
    of ``checks`` (cross-field problems) when every key was valid.

    ``model`` is a dataclass, or a name when ``build`` makes something else (a dict). A
    dataclass's fields, less ``exclude``, must be the keys: checked here, when the schema is
    built, so a field added to a dataclass without its rule fails at import."""
    if isinstance(model, str):
        if build is None:
            raise TypeError(f"section {model!r}: a name needs a build function")
    elif dataclasses.is_dataclass(model):
        wanted = {f.name for f in dataclasses.fields(model)} - set(exclude)
        if set(fields) != wanted:
            raise TypeError(
                f"the schema of {model.__name__} has keys {sorted(fields)}, "
                f"its fields are {sorted(wanted)}"
            )
    make: Any = build if build is not None else model
    keys = ", ".join(fields)
    shape = expected or f"a mapping with keys {keys}"
    name = model if isinstance(model, str) else model.__name__
    typed = TypedDict(name, {key: rule.type for key, rule in fields.items()})
    typed.__pydantic_config__ = ConfigDict(extra="forbid", strict=True)

    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        if not isinstance(value, Mapping):
            fail(shape)
        # Unknown keys are found here rather than by pydantic's extra="forbid": a key may be
        # anything YAML or JSON allows (a number, a date, a lone surrogate pydantic cannot read
        # as text), and each is named as written. They come first: a misspelt key usually
        # explains the missing one after it.
        unknown = [
            _detail(note((_key_loc(key),), f"unknown key (expected one of {keys})"), value[key])
            for key in value
            if not (isinstance(key, str) and key in fields)
        ]
        try:
            values = handler({key: item for key, item in value.items() if key in fields})
        except ValidationError as exc:
            rest = [
                _reraised(_as_note(error, "missing required key"), error["loc"])
                if error["type"] == "missing"
                else _reraised(error, error["loc"])
                for error in exc.errors(include_url=False)
            ]
            raise ValidationError.from_exception_data("config", unknown + rest) from None
        if unknown:
            raise ValidationError.from_exception_data("config", unknown)
        built = make(**values)
        problems = [problem for check in checks for problem in check(built)]
        if problems:
            report(problems, value)
        return built

    return Rule(shape, Annotated[typed, WrapValidator(wrap)], model=model, fields=dict(fields))


def _key_loc(key: Any) -> str:
    """A mapping key as one element of a location: text as it is; anything else (a number, a
    lone surrogate pydantic would garble into U+FFFD) shown as written, marked as such so it
    is never taken for a list position nor quoted twice."""
    if isinstance(key, str) and _encodable(key):
        return key
    return _SHOWN + shown(key)


def _as_note(error: Any, text: str) -> dict[str, Any]:
    return {"type": _TYPE, "loc": error["loc"], "input": error["input"], "ctx": {"note": text}}


# -- validating -----------------------------------------------------------------------------------


def path_text(loc: Loc) -> str:
    """A pydantic location as the project writes key paths: ``indices[NIFTY].premium_band.max``,
    ``rates[1].stt_sell``."""
    path = ""
    for part in loc:
        if isinstance(part, str) and _LABEL.fullmatch(part):
            path += part
        elif isinstance(part, str) and part.startswith(_SHOWN):
            path = f"{path}.{part[1:]}" if path else part[1:]
        else:
            path = join(path, part)
    return path


def problem_lines(exc: ValidationError, source: str) -> list[str]:
    """The one translation of pydantic's errors into the project's problem lines."""
    lines = []
    for error in exc.errors(include_url=False):
        path = path_text(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == _TYPE and "note" in ctx:
            # A note at the top level speaks for itself ("category names are ...").
            lines.append(f"{source}: {path}: {ctx['note']}" if path else f"{source}: {ctx['note']}")
            continue
        if error["type"] == _TYPE:
            expected = ctx["expected"]
        elif error["type"] == "missing":
            lines.append(f"{source}: {path}: missing required key")
            continue
        else:  # every rule reports in its own words; this is pydantic's, lower-cased
            expected = f"a valid value ({error['msg'][0].lower()}{error['msg'][1:]})"
        where = path or "(top level)"
        lines.append(f"{source}: {where}: expected {expected}, got {shown(error['input'])}")
    if len(lines) > MAX_PROBLEMS:
        more = len(lines) - MAX_PROBLEMS
        lines = [*lines[:MAX_PROBLEMS], f"{source}: and {more} more problem(s) not shown"]
    return lines


def adapter(rule: Rule) -> TypeAdapter[Any]:
    """The compiled validator of a schema (build it once, at import)."""
    return TypeAdapter(rule.type)


def validate(schema: TypeAdapter[Any], data: Any, source: str) -> Any:
    """``data`` validated by ``schema``, or ConfigError listing EVERY problem, one a line,
    each naming ``source``."""
    try:
        return schema.validate_python(data)
    except ValidationError as exc:
        raise ConfigError.of(problem_lines(exc, source)) from None
    except RecursionError:
        raise ConfigError(f"{source}: (top level): nested too deeply") from None
