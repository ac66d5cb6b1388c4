"""``manage.py run_trader`` refuses a broken config/algo.yml at start: one line, exit code 1.

Before issue 11 an unquoted impossible holiday, a file that is not UTF-8 and ``seed_cash:
1e999999999`` each gave a traceback. The file is validated before the database is read, so
the message is the same on a machine whose database is not migrated yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"

SPOILS = {
    "impossible holiday": (
        lambda text: text.replace("- 2026-03-03", "- 2026-02-30").encode(),
        "algo.yml: market.holidays[1]: expected an ISO date YYYY-MM-DD from 2000-01-01 to "
        "2099-12-31, got '2026-02-30'",
    ),
    "not utf-8": (
        lambda text: text.encode().replace(b"Republic Day", b"R\xe9public Day"),
        "algo.yml: line ",
    ),
    "huge seed cash": (
        lambda text: text.replace("seed_cash: 100000 ", "seed_cash: 1e999999999 ").encode(),
        "algo.yml: paper.seed_cash: expected an amount in rupees, to the paisa, above 0 and at "
        "most 100000000, got '1e999999999'",
    ),
}


@pytest.fixture(params=list(SPOILS))
def broken_dir(request, tmp_path) -> tuple[Path, str]:
    spoil, message = SPOILS[request.param]
    for name in ("charges.yml", "instruments.yml", "ratelimits.yml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    (tmp_path / "algo.yml").write_bytes(spoil((CONFIG / "algo.yml").read_text(encoding="utf-8")))
    return tmp_path, message


def test_run_trader_stops_at_start_naming_the_problem(settings, broken_dir):
    directory, message = broken_dir
    settings.ALGO_CONFIG_FILE = directory / "algo.yml"
    with pytest.raises(CommandError) as caught:  # no django_db mark: the database is not read
        call_command("run_trader")
    assert str(caught.value).startswith(message)
    assert len(str(caught.value).splitlines()) == 1
    assert caught.value.returncode == 1


def run_trader_process(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py run_trader`` with the config of ``directory``, no database or Redis URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_DEBUG="true", ALGO_CONFIG_DIR=str(directory))
    return subprocess.run(
        [sys.executable, "manage.py", "run_trader", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_trader_as_a_process_prints_one_line_and_exits_1(broken_dir):
    directory, message = broken_dir
    done = run_trader_process(directory)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"CommandError: {message}")
    assert "Traceback" not in done.stdout


@pytest.mark.parametrize("value", ["0", "-4", "101", "nan", "inf", "fast"])
def test_a_bad_sim_tick_rate_is_refused_in_one_line(value):
    with pytest.raises(CommandError) as caught:  # refused while parsing: nothing started
        call_command("run_trader", "--sim", "--sim-ticks", value)
    assert str(caught.value) == (
        f"--sim-ticks must be packets per second above 0 and at most 100, got {value!r}"
    )


# -- config/charges.yml: checked at start too -----------------------------------------------------

BAD_CHARGES = (
    "charges.yml: rates[0].brokerage_per_order: expected rupees between 0 and 1000, got -20"
)


@pytest.fixture
def broken_charges(settings, tmp_path) -> Path:
    """A config directory whose charges.yml has a negative brokerage (found by a probe: the
    trader started, sent entries, and failed at the first fill's booking)."""
    for name in ("algo.yml", "instruments.yml", "ratelimits.yml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    text = (CONFIG / "charges.yml").read_text(encoding="utf-8")
    spoilt = text.replace("brokerage_per_order: 20 ", "brokerage_per_order: -20 ", 1)
    assert spoilt != text
    (tmp_path / "charges.yml").write_text(spoilt, encoding="utf-8")
    settings.ALGO_CONFIG_FILE = tmp_path / "algo.yml"
    settings.CHARGES_CONFIG_FILE = tmp_path / "charges.yml"
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ("run_trader", "--sim"),
        ("run_exit_engine",),
        ("run_order_updates",),
        ("run_signal_engine",),
    ],
)
def test_every_trading_worker_refuses_a_broken_charges_file_before_it_starts(
    broken_charges, command, settings, redis_url
):
    settings.REDIS_URL = redis_url  # the split workers say a missing REDIS_URL first
    with pytest.raises(CommandError) as caught:  # no django_db mark: nothing reads the database
        call_command(*command)
    assert str(caught.value).startswith(BAD_CHARGES), str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


def test_the_trader_as_a_process_says_the_broken_charges_file_in_one_line(broken_charges):
    done = run_trader_process(broken_charges, "--sim")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"CommandError: {BAD_CHARGES}")
