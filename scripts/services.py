"""Throwaway PostgreSQL and Redis servers for the test suite and the benchmarks.

Each server lives in a fresh temp directory on a free loopback port and is stopped (and the
directory removed) when the context manager exits, also on failure or Ctrl-C. PostgreSQL refuses
to run as root, so as root the cluster is created and run as the ``postgres`` user (or ``nobody``).
Redis is installed with apt-get when ``redis-server`` is missing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PG_BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    raise SystemExit(
        f"{name} not found: install the PostgreSQL server (apt-get install postgresql)"
    )


def _run_as(user: str | None, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise SystemExit("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _wait_for_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:.0f}s")


@contextlib.contextmanager
def postgres(dbname: str = "algo_scalper", settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a throwaway cluster; yields a ``postgres://`` URL for a fresh database.

    ``settings`` adds server settings (``{"shared_buffers": "512MB"}``) to the test defaults.
    """
    user = _unprivileged_user()
    root = Path(tempfile.mkdtemp(prefix="algo-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user:
        pw = pwd.getpwnam(user)
        for path in (root, sock):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    port = free_port()
    pg_ctl = _pg_tool("pg_ctl")
    log(f"starting PostgreSQL on 127.0.0.1:{port} in {root}")
    try:
        _run_as(
            user,
            [
                _pg_tool("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            stdout=subprocess.DEVNULL,
        )
        options = (
            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        for name, value in (settings or {}).items():
            options += f" -c {name}={value}"
        _run_as(
            user,
            [
                pg_ctl,
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "pg.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(port, "PostgreSQL")
        _run_as(
            user,
            [_pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", dbname],
        )
        yield f"postgres://postgres@127.0.0.1:{port}/{dbname}"
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                _run_as(
                    user,
                    [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                    stdout=subprocess.DEVNULL,
                )
        shutil.rmtree(root, ignore_errors=True)
        log("PostgreSQL stopped")


def ensure_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("redis-server is missing; install it: sudo apt-get install redis-server")
    log("redis-server missing: installing it with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    # The package starts a system service on 6379; we never use it, stop it to free the port.
    subprocess.run(
        ["service", "redis-server", "stop"],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise SystemExit("apt-get install redis-server did not provide redis-server")
    return found


def start_redis_server(binary: str, port: int, root: Path) -> subprocess.Popen[bytes]:
    """Start ``binary`` on 127.0.0.1:``port`` without persistence, its files and log in
    ``root``, and return once it accepts connections. The suite's Redis and the tests' private
    ones (tests/support/redis.py, which stop and restart theirs) start the same way."""
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            "--logfile",
            str(root / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, "Redis")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """Start a throwaway Redis without persistence; yields a ``redis://`` URL."""
    binary = ensure_redis_server()
    root = Path(tempfile.mkdtemp(prefix="algo-redis-"))
    port = free_port()
    log(f"starting Redis on 127.0.0.1:{port}")
    proc = None
    try:
        proc = start_redis_server(binary, port, root)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
        log("Redis stopped")
