"""Typed readers for environment variables.

Each helper names the variable in its error, so a bad deploy fails at start with a message
that says what to fix (``ImproperlyConfigured: PAPER_MODE must be true or false, got 'yes please'``)
instead of a confusing failure later.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

Environ = Mapping[str, str]

# ASCII digits only: int() and Decimal() also take other scripts' digits (Arabic-Indic, full-width)
# and underscores (1_000), none of which an operator means to type in a deploy's variables.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _raw(name: str, env: Environ | None, fallbacks: Iterable[str] = ()) -> str | None:
    env = os.environ if env is None else env
    for key in (name, *fallbacks):
        value = env.get(key)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def envstr(
    name: str,
    default: str | None = None,
    *,
    fallbacks: Iterable[str] = (),
    env: Environ | None = None,
) -> str | None:
    """The value (stripped), else the first set fallback, else ``default``. Blank is unset."""
    value = _raw(name, env, fallbacks)
    return default if value is None else value


def envbool(name: str, default: bool, *, env: Environ | None = None) -> bool:
    value = _raw(name, env)
    if value is None:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), got {value!r}")


def envint(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Environ | None = None,
) -> int:
    value = _raw(name, env)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value):
        raise ImproperlyConfigured(f"{name} must be a whole number in ASCII digits, got {value!r}")
    number = int(value)
    _check_range(name, number, minimum, maximum)
    return number


def envdecimal(
    name: str,
    default: str,
    *,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    above: Decimal | None = None,
    places: int | None = None,
    env: Environ | None = None,
) -> Decimal:
    """A decimal in ASCII digits (sign and point allowed, no exponent). ``above``: it must be
    greater than that; ``places``: at most that many digits after the point (2 for money: to
    the paisa)."""
    value = _raw(name, env) or default
    if value.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}")
    if not _DECIMAL.fullmatch(value):
        raise ImproperlyConfigured(
            f"{name} must be a decimal number in ASCII digits, got {value!r}"
        )
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {value!r}") from None
    if places is not None and "." in value and len(value.split(".", 1)[1].rstrip("0")) > places:
        unit = " (to the paisa)" if places == 2 else ""
        raise ImproperlyConfigured(
            f"{name} must have at most {places} digits after the point{unit}, got {value!r}"
        )
    if above is not None and number <= above:
        raise ImproperlyConfigured(f"{name} must be above {above}, got {number}")
    _check_range(name, number, minimum, maximum)
    return number


def envchoice(
    name: str, default: str, choices: Iterable[str], *, env: Environ | None = None
) -> str:
    allowed = tuple(choices)
    value = _raw(name, env)
    if value is None:
        return default
    for choice in allowed:
        if value.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def envlist(name: str, default: Iterable[str] = (), *, env: Environ | None = None) -> list[str]:
    """A comma-, semicolon- or newline-separated list; blank items are dropped."""
    value = _raw(name, env)
    if value is None:
        return list(default)
    for sep in (";", "\n"):
        value = value.replace(sep, ",")
    return [item.strip() for item in value.split(",") if item.strip()]


def _check_range(
    name: str, number: int | Decimal, minimum: int | Decimal | None, maximum: int | Decimal | None
) -> None:
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")
