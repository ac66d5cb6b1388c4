"""Operator-written text that ends up in the logs and the journal (an exit's reason, the kill
switch's reason, a watchlist label): one line of printable characters.

Why: those texts are written into WARNING lines that are the audit trail (who exited what, who
changed the switches). A newline in a reason lets anyone with a change permission append a line
that looks exactly like a real one ("Switches changed by admin ... -> off"); an ANSI escape or a
bidirectional override makes a line read differently on a terminal than it is stored. So every
write path (the API, the admin) refuses them, named, before anything is stored: control
characters (Unicode category Cc: newline, carriage return, tab, ESC, BEL, NUL ...), line and
paragraph separators (Zl, Zp), and the invisible format characters that reorder or hide text
(Cf: bidirectional overrides and isolates, zero-width characters, the BOM).
"""

from __future__ import annotations

import unicodedata

__all__ = ["clip", "text_problem"]

_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cf": "an invisible formatting character",
    "Cs": "a lone surrogate",
}


def text_problem(value: str) -> str | None:
    """What makes ``value`` unfit for a one-line operator text, in words (the first offending
    character, by its code point and position); None when it is fine."""
    for index, char in enumerate(value):
        category = unicodedata.category(char)
        what = _REFUSED_CATEGORIES.get(category)
        if what is not None:
            return f"{what} (U+{ord(char):04X}) at position {index + 1}: one line of printable text"
    return None


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (the last three ``...``) when longer: a client's
    input quoted back in an answer, never whole."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
