"""Import progress: a redrawn bar on a terminal, plain periodic lines in logs and CI."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressReporter:
    def __init__(
        self,
        stream: TextIO,
        *,
        interactive: bool | None = None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.every = every
        self.clock = clock
        self._started = clock()
        self._last = self._started - every  # the first report prints

    def __call__(self, done: int, total: int, rows: int) -> None:
        """``rows`` is -1 on the final call."""
        now = self.clock()
        fraction = done / total if total else 1.0
        if self.interactive:
            width = 30
            filled = int(width * fraction)
            label = "done" if rows < 0 else f"{rows:,} rows"
            self.stream.write(
                f"\r  [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} {label}   "
            )
            if rows < 0:
                self.stream.write("\n")
            self.stream.flush()
        elif rows >= 0 and now - self._last >= self.every:
            self._last = now
            elapsed = now - self._started
            self.stream.write(f"  read {fraction:.0%} ({rows:,} rows, {elapsed:.1f} s)\n")
            self.stream.flush()
