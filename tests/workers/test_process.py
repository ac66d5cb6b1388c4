"""``run_until_stopped`` (workers/process.py): a split worker stops on SIGTERM whatever it is
doing when the signal lands. Each case runs in a process of its own (signal handlers belong to
a process's main thread), with a timeout: the failure this guards against is a hang."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The loop holds the stop event's own lock (as stop.wait() does on its way in and out) when
# SIGTERM lands: a handler that called stop.set() there waited for that lock forever.
INSIDE_THE_EVENTS_LOCK = """
    def run(stop):
        with stop._cond:
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, on this thread
        print("stopped" if stop.wait(5) else "not stopped", flush=True)
"""

# The usual case: SIGTERM while the loop waits between passes.
BETWEEN_PASSES = """
    def run(stop):
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        passes = 0
        while not stop.wait(0.01):
            passes += 1
        print("stopped" if passes else "never ran", flush=True)
"""


@pytest.mark.parametrize("body", [INSIDE_THE_EVENTS_LOCK, BETWEEN_PASSES], ids=["lock", "wait"])
def test_sigterm_stops_the_worker_wherever_it_lands(body):
    code = (
        "import os, signal, threading\n"
        "from workers.process import run_until_stopped\n"
        + textwrap.dedent(body)
        + "run_until_stopped(run, 'test worker')\n"
        + "print('returned', flush=True)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the worker did not stop on SIGTERM within 30 s: {exc.stdout!r}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["stopped", "returned"], done.stdout + done.stderr
