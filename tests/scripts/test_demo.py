"""``make demo``'s script as a new user runs it: a real process, the simulator, its own SQLite.

The demo plays its day in about three wall minutes, mostly waiting on the market's clock (a
third of one core). So it starts in the background as soon as the suite's collection selects
this test (``tests/conftest.py``), and the test, run last, waits for it and reads what it printed:
the suite does not wait three minutes doing nothing. Run alone, the test starts it itself.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600.0  # the session plays in about three minutes
DEMO_RUN = pytest.StashKey["DemoRun"]()


@dataclass
class DemoRun:
    """``scripts/demo.py`` on a database of its own, its output going to a file."""

    process: subprocess.Popen[bytes]
    db: Path
    output: Path
    started: float

    @classmethod
    def start(cls) -> DemoRun:
        folder = Path(tempfile.mkdtemp(prefix="algo-demo-test-"))
        db = folder / "demo.sqlite3"
        db.write_text("not a database: each run starts from a fresh file")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(ALGO_DEMO_DB=str(db), DJANGO_DEBUG="true", SEED="3")
        output = folder / "output.txt"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "scripts/demo.py"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return cls(process, db, output, time.monotonic())

    def wait(self) -> tuple[int, str]:
        left = max(1.0, TIMEOUT - (time.monotonic() - self.started))
        try:
            code = self.process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the demo did not end within {TIMEOUT:.0f} s:\n{self.text()[-3000:]}")
        return code, self.text()

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_in_background(config: pytest.Config) -> None:
    """Called by the collection hook when this test is selected: the demo starts now."""
    import shutil

    run = DemoRun.start()
    config.stash[DEMO_RUN] = run

    def cleanup() -> None:
        run.stop()
        shutil.rmtree(run.db.parent, ignore_errors=True)

    config.add_cleanup(cleanup)


@pytest.mark.background
def test_the_demo_plays_a_whole_day_prints_its_report_and_says_how_to_look_at_it(request):
    if DEMO_RUN not in request.config.stash:
        start_in_background(request.config)
    run = request.config.stash[DEMO_RUN]
    code, out = run.wait()
    assert code == 0, out[-6000:]
    db = run.db
    assert "SEED=3" in out
    # A progress line every 10 market minutes from the open, and one at the close.
    times = re.findall(
        r"^  (\d\d:\d\d)  open \d+  closed \d+  net PnL Rs [-+][\d,]+\.\d\d", out, re.M
    )
    assert times[0] == "09:15" and times[-1] == "15:30" and len(times) == 39
    assert "run_trader stopped; market time 15:3" in out
    assert "== the signal engine's decisions" in out and "routed to the paper broker" in out
    assert "matches the fills" in out  # the ledger recomputed from the fills agrees
    # The day report, after everything else the day printed.
    report = out[out.index("day report: ") :]
    assert re.match(r"day report: \d{4}-\d\d-\d\d \(paper\)", report)
    assert re.search(r"^trades (\d+): \d+ won, \d+ lost.*; win rate [\d.]+%$", report, re.M)
    assert "net PnL Rs " in report and "max drawdown Rs " in report
    assert "PnL by exit type:" in report
    # The exit engine closed trades by its rules, by more than one of them (SEED=3 makes eight
    # trades a day, closed by stops, trailing stops and a premium stall).
    by_type = report[report.index("PnL by exit type:") :]
    types = set(re.findall(r"^  ([A-Z_]+) +\d+ trades? ", by_type, re.M))
    assert len(types - {"MANUAL"}) >= 2, report
    assert "positions not closed: 0 open" in report  # the day ends flat
    env_line = f"DATABASE_URL=sqlite:///{db} DJANGO_DEBUG=true"
    assert f"{env_line} .venv/bin/python manage.py runserver" in out
    with sqlite3.connect(db) as conn:
        (signals,) = conn.execute("SELECT count(*) FROM trading_tradingsignal").fetchone()
        exited = conn.execute(
            "SELECT count(*) FROM trading_positiontracker WHERE status = 'exited'"
        ).fetchone()[0]
    assert signals > 0 and exited > 0  # what the output points at is there
