"""trading/text.py: the one-line check of operator-written text (reasons, labels)."""

from __future__ import annotations

import pytest

from trading.text import text_problem


@pytest.mark.parametrize(
    "value", ["", "stop for the RBI policy", "हिंदी कारण", "résumé 🚀", "a" * 500, "₹ 1,000 loss"]
)
def test_one_line_of_printable_text_passes(value):
    assert text_problem(value) is None


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (
            "ok\n2026-12-06 WARNING trading.switches: forged",
            "a control character (U+000A) at position 3",
        ),
        ("a\rb", "U+000D"),
        ("tab\there", "U+0009"),
        ("red \x1b[31m", "a control character (U+001B) at position 5"),
        ("bell\x07", "U+0007"),
        ("nul\x00", "U+0000"),
        ("\x85next line", "U+0085"),
        ("x\u2028y", "a line separator (U+2028)"),
        ("x\u2029y", "a paragraph separator (U+2029)"),
        ("\u202egnp.exe", "an invisible formatting character (U+202E) at position 1"),
        ("isolate\u2066", "U+2066"),
        ("zero\u200bwidth", "U+200B"),
        ("\ufeffbom", "U+FEFF"),
    ],
)
def test_anything_that_breaks_or_disguises_a_log_line_is_named(value, named):
    problem = text_problem(value)
    assert problem is not None and named in problem
