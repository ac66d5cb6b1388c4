"""A redis-server of the test's own, which the test may stop, freeze and restart.

The suite's Redis (``make test``, scripts/services.py) is shared by every test and must never
be stopped; a test of what happens when Redis goes away takes the ``private_redis`` fixture
instead (registered for the whole suite by tests/conftest.py). Both start the same way
(``services.start_redis_server``): loopback only, no persistence, so a restart comes back empty.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import services


class PrivateRedis:
    """One redis-server on a port of its own that stays the same across restarts, so clients
    built on ``url`` reconnect to the new process."""

    def __init__(self) -> None:
        self.binary = services.ensure_redis_server()
        self.root = Path(tempfile.mkdtemp(prefix="algo-redis-private-"))
        self.port = services.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = services.start_redis_server(self.binary, self.port, self.root)

    def stop(self) -> None:
        """Kill the server (no clean shutdown: the clients see it vanish)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
