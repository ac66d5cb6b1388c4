"""A configuration error stops every entry point with one clear line and a non-zero exit code:
``manage.py`` (any command) exits 1, gunicorn stops instead of respawning its workers; never a
traceback. Each test runs the real entry point in a subprocess with a controlled environment."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from algo_scalper.dotenv import parse_dotenv
from tests.algo_scalper.conftest import clean_environ

ROOT = Path(__file__).resolve().parents[2]
LONG_KEY = "test-only-startup-key-" + "abcdefghijklmnopqrstuvwxyz0123456789"


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean_environ(), "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize("command", [["check_config"], ["migrate"], ["check"], ["run_trader"]])
def test_a_missing_secret_key_is_one_line_and_exit_code_1_for_every_command(command):
    proc = manage({}, *command)
    assert_one_line_error(proc, "configuration error", "DJANGO_SECRET_KEY is required")


def test_the_env_example_copied_as_is_gives_the_same_one_line():
    # `cp .env.example .env`: its values reach the settings as environment variables.
    values = parse_dotenv((ROOT / ".env.example").read_text(encoding="utf-8"))
    proc = manage(values, "check_config")
    assert_one_line_error(proc, "DJANGO_SECRET_KEY is required")


def test_a_malformed_variable_is_one_line_naming_it():
    proc = manage({"DJANGO_SECRET_KEY": LONG_KEY, "PAPER_MODE": "maybe"}, "migrate")
    assert_one_line_error(proc, "PAPER_MODE", "'maybe'")


def test_a_good_configuration_still_runs_the_command():
    proc = manage({"DJANGO_SECRET_KEY": LONG_KEY, "DJANGO_HTTPS": "false"}, "check")
    assert proc.returncode == 0, proc.stderr
    assert "no issues" in proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_stops_with_one_line_on_a_configuration_error():
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.run(
        [str(gunicorn), "algo_scalper.wsgi", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env={**clean_environ(), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,  # a crash loop (workers respawned forever) would run into this
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "configuration error" in line]
    assert len(errors) == 1, output
    assert "DJANGO_SECRET_KEY is required" in errors[0]


def test_the_readmes_path_for_running_commands_by_hand_works(tmp_path):
    # README "Running commands by hand": the project's Python and DJANGO_DEBUG=true, nothing else
    # (a database URL here only so the test does not write the project's db.sqlite3).
    env = {"DJANGO_DEBUG": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'hand.sqlite3'}"}
    for command in (["migrate", "--noinput"], ["check_config"]):
        proc = manage(env, *command)
        assert proc.returncode == 0, proc.stderr
    assert "version" in proc.stdout
