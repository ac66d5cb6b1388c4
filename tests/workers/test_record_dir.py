"""``--record DIR`` that cannot be written is refused at start in one line, exit code 1
(run_trader and run_feed_hub), instead of a run that records nothing and exits 0.

Found by a probe: ``run_trader --sim --record /proc/nope`` logged "cannot write" at the first
frame and went on recording nothing.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.algo_scalper.test_database_errors import manage, one_line
from workers.process import check_record_dir


def test_a_writable_directory_is_created_and_left_empty(tmp_path):
    where = tmp_path / "a" / "b"
    check_record_dir(str(where))
    assert where.is_dir()
    assert list(where.iterdir()) == []


@pytest.mark.parametrize("command", [("run_trader", "--sim"), ("run_feed_hub",)])
def test_an_unwritable_record_directory_stops_the_command_in_one_line(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(CommandError) as caught:  # refused before anything starts
        call_command(*command, "--record", str(blocker / "sub"))
    assert str(caught.value).startswith(f"--record {blocker / 'sub'}: cannot write there (")


def test_run_trader_as_a_process_exits_1(tmp_path):
    proc = manage(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", "run_trader", "--sim", "--record", "/proc/nope"
    )
    assert one_line(proc).startswith("CommandError: --record /proc/nope: cannot write there (")
