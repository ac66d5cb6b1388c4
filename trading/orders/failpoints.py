"""Named crash points for the crash-safety tests: ``ALGO_FAILPOINT=<name>`` makes the process
kill itself (SIGKILL: no cleanup, no flush, as a power cut or an OOM kill) the first time it
reaches that point. Unset (always, outside those tests) a point costs one dictionary lookup.

The points, in the order an order lives (tests/e2e/test_crash_safety.py):

* ``entry:journaled``: the entry's position and orders are in the journal, nothing sent;
* ``send:answered``: the broker answered a placement, the answer not yet recorded;
* ``event:received``: a broker event with a fill received, not yet applied to the journal
  (``journal.apply_event``, which every path that books a fill goes through);
* ``chase:modified``: a re-price went to the broker, the journal not yet told;
* ``exit:claimed``: a position claimed for exit, nothing of its exit sent (the router's
  ``exit_position``: its first exit orders journaled with the claim when the caller handed
  over the position's facts, as the exit engine does, else about to be journaled).
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "failpoint"]

POINTS = frozenset(
    {"entry:journaled", "send:answered", "event:received", "chase:modified", "exit:claimed"}
)


def failpoint(name: str) -> None:
    """SIGKILL this process when ``ALGO_FAILPOINT`` names this point (see the module doc)."""
    if os.environ.get("ALGO_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
