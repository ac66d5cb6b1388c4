"""scripts/services.py: the throwaway PostgreSQL and Redis answer inside the context and leave
nothing behind (no listening port, no temp directory) after it, also when the body fails."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scripts import services


def port_is_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_redis_answers_inside_the_context_and_is_gone_after_it():
    import redis

    with services.redis() as url:
        port = urlsplit(url).port
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert client.set("algo:probe", "1") and client.get("algo:probe") == b"1"
        root = Path(client.config_get("dir")["dir"])
        assert root.name.startswith("algo-redis-") and root.is_dir()
        client.close()
    assert not port_is_open(port)
    assert not root.exists()


def test_redis_is_stopped_when_the_body_raises():
    import redis

    with pytest.raises(RuntimeError, match="body failed"), services.redis() as url:
        port = urlsplit(url).port
        client = redis.Redis.from_url(url)
        root = Path(client.config_get("dir")["dir"])
        client.close()
        raise RuntimeError("body failed")
    assert not port_is_open(port)
    assert not root.exists()


def test_postgres_answers_inside_the_context_and_is_gone_after_it():
    import psycopg

    with services.postgres(dbname="algo_probe") as url:
        parts = urlsplit(url)
        assert parts.path == "/algo_probe"
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("algo_probe",)
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        root = data_dir.parent
        assert root.name.startswith("algo-pg-") and root.is_dir()
    assert not port_is_open(parts.port)
    assert not root.exists()
