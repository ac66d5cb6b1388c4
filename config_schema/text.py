"""How a problem line shows a key path and a value: short, printable, never raising.

A value in a message is the operator's own input, which may be anything JSON or YAML can carry:
a 1 MB string, an integer of a million digits (``repr`` refuses those), nesting hundreds of
levels deep (``repr`` recurses), a lone surrogate (not encodable to UTF-8 on stderr). Every
problem line goes through :func:`shown` and :func:`key_text`, so a bad value can only make its
message shorter, never turn it into a traceback.
"""

from __future__ import annotations

import math
import re
import reprlib
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# A key written as it is in a path: a plain identifier of ASCII letters, digits and "_".
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+", re.ASCII)
# Whole numbers wider than this many bits are described, not printed (repr refuses above
# 4300 digits, and a long number in a message helps nobody).
_WIDE_BITS = 256


class _SafeRepr(reprlib.Repr):
    """reprlib with the number and time rules of :func:`shown` applied inside containers."""

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > _WIDE_BITS:
            return _wide(x)
        if isinstance(x, str):
            # Escape first, cut after: an escape is up to ten characters per character, so
            # cutting first let 80 characters of text become 800 of message.
            if len(x) > self.maxstring:  # both ends kept; the cut below marks the gap
                x = x[: self.maxstring // 2] + x[-(self.maxstring // 2) :]
            return _cut(_ascii(repr(x)), self.maxstring)
        return super().repr1(x, level)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        # reprlib sorts the keys; the operator wrote them in an order, keep it.
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}"
            for key, value in list(x.items())[: self.maxdict]
        ]
        more = ", ..." if len(x) > self.maxdict else ""
        return "{" + ", ".join(pieces) + more + "}"


_SAFE = _SafeRepr()
_SAFE.maxlevel = 3  # deeper containers show as "..."
_SAFE.maxstring = _SAFE.maxother = 80
_SAFE.maxdict = 6
_SAFE.maxlist = _SAFE.maxtuple = _SAFE.maxset = 8


# The longest a shown value gets, whatever it is (a problem line stays one readable line).
_MAX_SHOWN = 400


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return text[:keep] + "..." + text[-keep:]


def _wide(number: int) -> str:
    digits = int(number.bit_length() * math.log10(2)) + 1
    return f"a whole number of about {digits} digits"


def _ascii(text: str) -> str:
    """``repr`` already escapes lone surrogates; this also escapes anything else stderr's
    encoding could refuse, so a message always prints."""
    return text.encode("ascii", "backslashreplace").decode("ascii") if not text.isascii() else text


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, for a one-line log or problem (a database
    driver's errors run over several lines); the error's class name when it says nothing."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def masked_url(url: str, unreadable: str = "<not shown>") -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print (``unreadable``
    when it cannot even be split)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return unreadable


def hhmm(moment: time) -> str:
    return moment.strftime("%H:%M")


def money_text(amount: Decimal) -> str:
    """Canonical text of an amount: no exponent, no trailing zeros (``100000``, ``20.5``).
    Only for amounts already validated (bounded, to the paisa): ``format`` writes every digit."""
    return format(amount.normalize(), "f")


def shown(value: Any) -> str:
    """A value as the operator wrote it: times "HH:MM", dates ISO, amounts plain, the rest as
    ``repr`` cut to a readable length."""
    try:
        if isinstance(value, time):
            return repr(hhmm(value))
        if isinstance(value, date) and not isinstance(value, datetime):
            return repr(value.isoformat())
        if isinstance(value, Decimal):
            if value.is_finite() and -30 < value.adjusted() < 30:
                return money_text(value)
            return _ascii(str(value))[:80]
        return _cut(_SAFE.repr(value), _MAX_SHOWN)
    except Exception:  # a message must never fail on the value it shows
        return f"a {type(value).__name__} that cannot be shown"


def key_text(key: Any) -> str:
    """A key as one element of a key path: plain keys as they are, anything else quoted."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) and len(key) <= 80:
        return key
    return shown(key)


def join(path: str, key: Any) -> str:
    """``path.key`` (``key`` alone at the top); an int is a list position, ``path[3]``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    text = key_text(key)
    return f"{path}.{text}" if path else text
