"""instruments.progress: a redrawn bar on a terminal, plain periodic lines otherwise."""

import io

import pytest

from instruments.progress import ProgressReporter

pytestmark = pytest.mark.catalog


def test_on_a_terminal_it_redraws_one_line_and_ends_it_when_done():
    out = io.StringIO()
    report = ProgressReporter(out, interactive=True)
    report(500, 1000, 20000)
    report(1000, 1000, -1)
    text = out.getvalue()
    assert text.startswith("\r  [###############...............]  50.0% 20,000 rows")
    assert text.endswith("100.0% done   \n")
    assert text.count("\n") == 1


def test_without_a_terminal_it_prints_plain_lines_at_most_every_interval():
    now = [100.0]
    out = io.StringIO()
    report = ProgressReporter(out, interactive=False, every=5.0, clock=lambda: now[0])
    report(100, 1000, 20000)
    now[0] += 1
    report(200, 1000, 40000)  # within the interval: suppressed
    now[0] += 5
    report(600, 1000, 60000)
    report(1000, 1000, -1)  # the final call prints nothing extra in plain mode
    lines = out.getvalue().splitlines()
    assert lines == ["  read 10% (20,000 rows, 0.0 s)", "  read 60% (60,000 rows, 6.0 s)"]
    assert "\r" not in out.getvalue()


def test_it_follows_the_stream_when_not_told_whether_it_is_a_terminal():
    assert ProgressReporter(io.StringIO()).interactive is False
