"""``manage.py replay_feed PATH``: push recorded feed frames through the hub's pipeline.

PATH is a file or directory written by ``run_feed_hub --record``. Every frame is decoded and
merged exactly as live (tick store, bus, index candles), into the configured store (Redis when
``REDIS_URL`` is set, else memory: then it prints what it saw). ``--speed`` replays at that
multiple of the recorded pace (0, the default: as fast as possible).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.feed_hub import FeedHub, HubConfig
from workers.realtime.services import realtime_from_settings
from workers.recorder import iter_frames


class Command(BaseCommand):
    help = "Replay recorded raw feed frames into the tick store (see run_feed_hub --record)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="a recorded .bin.gz file or a directory of them")
        parser.add_argument("--speed", type=float, default=0.0, help="x recorded pace; 0 = max")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"{path}: no such file or directory")
        speed = options["speed"]
        if speed < 0:
            raise CommandError(f"--speed must be >= 0, got {speed}")
        realtime = realtime_from_settings()
        # No live feed and no start(): the pipeline is driven by ingest_frame and flush.
        hub = FeedHub(realtime, feed_factory=lambda *a, **k: None, config=HubConfig())
        frames = 0
        first: float | None = None
        started = time.monotonic()
        try:
            for received, data in iter_frames(path):
                if speed and first is not None:
                    due = started + (received - first) / speed
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                first = received if first is None else first
                hub.ingest_frame(data, received)
                frames += 1
                if frames % 5000 == 0:
                    hub.flush()
            hub.flush()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        finally:
            realtime.close()
        snapshot = hub.merger.snapshot()
        self.stdout.write(
            f"replayed {frames} frames: {hub.counters.ticks} ticks for {len(snapshot)} "
            f"instruments, {hub.counters.candles} candles closed"
        )
        for key in sorted(snapshot)[:20]:
            record = snapshot[key]
            self.stdout.write(f"  {key}: ltp {record.ltp} seq {record.seq}")
