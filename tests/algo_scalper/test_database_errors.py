"""A database that cannot be reached, does not exist or is not migrated stops a command with one
line naming DATABASE_URL (password masked) and exit code 1, never a traceback; a DATABASE_URL
that would be an in-memory SQLite database (thrown away at exit) is refused at start.

Found by a probe: migrate, run_trader, the split workers, instruments_status and day_report
each printed an 80-110-line traceback, and ``sqlite:///`` made migrate succeed on a database
that vanished when it exited.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts import services
from tests.algo_scalper.conftest import clean_environ

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-only-database-errors-key-" + "abcdefghijklmnopqrstuvwxyz0123456789"


def manage(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **clean_environ(),
            "PYTHONDONTWRITEBYTECODE": "1",
            "DJANGO_SECRET_KEY": KEY,
            "DJANGO_HTTPS": "false",
            "DATABASE_URL": database_url,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


NOBODY = f"postgres://algo:pw-never-shown@127.0.0.1:{services.free_port()}/algo"


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["instruments_status"], ["day_report"], ["run_trader", "--sim"]],
)
def test_an_unreachable_database_is_one_line_naming_database_url(command):
    line = one_line(manage(NOBODY, *command))
    assert line.startswith("algo-scalper: database error: DATABASE_URL postgres://algo:***@")
    assert "Connection refused" in line or "connection failed" in line
    assert "pw-never-shown" not in line


def test_a_split_worker_on_an_unreachable_database_is_one_line(redis_url):
    line = one_line(manage(NOBODY, "run_exit_engine", REDIS_URL=redis_url))
    assert "DATABASE_URL postgres://algo:***@" in line


def test_a_missing_sqlite_directory_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite3'}"
    line = one_line(manage(url, "migrate"))
    assert line == f"algo-scalper: database error: DATABASE_URL {url}: unable to open database file"


@pytest.mark.parametrize("command", [["run_trader", "--sim"], ["instruments_status"]])
def test_an_unmigrated_database_says_to_run_migrate(tmp_path, command):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    line = one_line(manage(url, *command))
    assert line.startswith(f"algo-scalper: database error: DATABASE_URL {url} is not migrated (")
    assert line.endswith("run `manage.py migrate`")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_refused(url):
    line = one_line(manage(url, "migrate"))
    assert line.startswith("algo-scalper: configuration error: DATABASE_URL names no SQLite file")


def test_masked_database_url():
    from manage import masked_database_url

    assert masked_database_url("postgres://u:pw@h:1/d") == "postgres://u:***@h:1/d"
    assert masked_database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
