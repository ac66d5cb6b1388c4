"""``make demo``'s script as a new user runs it: a real process, the simulator, its own SQLite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_end_to_end_and_says_how_to_look_at_its_database(tmp_path):
    db = tmp_path / "demo.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(ALGO_DEMO_DB=str(db), DJANGO_DEBUG="true")
    done = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "== signal engine" in out and "decisions" in out
    assert "routed to the paper broker" in out
    assert "matches the fills" in out  # the ledger recomputed from the fills agrees
    env_line = f"DATABASE_URL=sqlite:///{db} DJANGO_DEBUG=true"
    assert f"{env_line} .venv/bin/python manage.py runserver" in out
    with sqlite3.connect(db) as conn:
        (signals,) = conn.execute("SELECT count(*) FROM trading_tradingsignal").fetchone()
        exited = conn.execute(
            "SELECT count(*) FROM trading_positiontracker WHERE status = 'exited'"
        ).fetchone()[0]
    assert signals > 0 and exited > 0  # what the output points at is there
