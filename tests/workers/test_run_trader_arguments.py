"""Bad ``run_trader`` arguments are refused in one line with exit code 1, never a traceback;
``--sim-speed`` is bounded (above 0, at most 1000).

Found by a probe: ``--sim-date 2026-02-30``, ``--sim-start 25:00`` and ``--sim-ticks 0`` each
gave a 38-line traceback (the type= checks raise CommandError, which argparse passes through);
``--sim-speed`` 0, -1, nan and inf crashed, and 1e9 ran a session that was over at once.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.algo_scalper.test_database_errors import manage, one_line

SPEED = (
    "--sim-speed must be market seconds per real second above 0 and at most 1000 (at 1000x a "
    "session passes in 23 s), got {!r}"
)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9", "1000.5", "fast"])
def test_a_bad_sim_speed_is_refused_in_one_line(value):
    with pytest.raises(CommandError) as caught:  # refused while parsing: nothing started
        call_command("run_trader", "--sim", "--sim-speed", value)
    assert str(caught.value) == SPEED.format(value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sim-date", "2026-02-30"], "--sim-date must be YYYY-MM-DD, got '2026-02-30'"),
        (["--sim-start", "25:00"], "--sim-start must be HH:MM, got '25:00'"),
        (["--sim-ticks", "nan"], "--sim-ticks must be packets per second above 0 and at most"),
        (["--sim-speed", "1e9"], SPEED.format("1e9")),
    ],
)
def test_a_bad_argument_on_the_command_line_is_one_line_and_exit_1(tmp_path, args, message):
    proc = manage(f"sqlite:///{tmp_path / 'db.sqlite3'}", "run_trader", "--sim", *args)
    assert one_line(proc).startswith(f"CommandError: {message}")
