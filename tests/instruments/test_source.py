"""instruments.source: local files, downloads from a loopback server, and the disk cache.

Every URL here is a 127.0.0.1 server (or a closed loopback port); nothing touches the internet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from instruments.source import SourceError, cache_path, resolve_source

pytestmark = [pytest.mark.catalog]

MASTER = b"SEM_EXM_EXCH_ID,SEM_SEGMENT\nNSE,I\n"  # the source layer does not parse content
NEWER = b"SEM_EXM_EXCH_ID,SEM_SEGMENT\nNSE,I\nBSE,I\n"


def resolve(cache_dir: Path, default_url: str, **kwargs: object):
    kwargs.setdefault("max_age_hours", 24)
    kwargs.setdefault("timeout", 5)
    return resolve_source(default_url=default_url, cache_dir=cache_dir, **kwargs)


def seed_cache(cache_dir: Path, url: str, content: bytes, age_hours: float) -> Path:
    """A cached copy of ``url`` as if downloaded ``age_hours`` ago."""
    cached = cache_path(cache_dir, url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(content)
    then = time.time() - age_hours * 3600
    os.utime(cached, (then, then))
    return cached


def leftovers(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.name.startswith(".download-"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def dead_url() -> str:
    """A loopback URL on a port nothing listens on: the connection is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api-scrip-master.csv"


# -- local files --------------------------------------------------------------------------------


def test_a_local_file_is_used_as_is(cache_dir, tmp_path, dead_url):
    path = tmp_path / "master.csv"
    path.write_bytes(MASTER)
    source = resolve(cache_dir, dead_url, file=path)
    assert (source.path, source.from_cache, source.warnings) == (path, False, [])
    assert source.description == f"file {path}"
    assert not cache_dir.exists()  # no download, no cache


def test_a_missing_file_is_a_source_error(cache_dir, tmp_path, dead_url):
    with pytest.raises(SourceError, match=r"nowhere\.csv: no such file"):
        resolve(cache_dir, dead_url, file=tmp_path / "nowhere.csv")


def test_a_directory_is_not_a_file(cache_dir, tmp_path, dead_url):
    # It exists: "no such file" (what this said before) sent the operator looking for a typo.
    with pytest.raises(SourceError, match="is a directory, not a scrip master file"):
        resolve(cache_dir, dead_url, file=tmp_path)


def test_something_that_is_neither_a_file_nor_a_directory_is_named_so(
    cache_dir, tmp_path, dead_url
):
    fifo = tmp_path / "master.csv"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match=r"master\.csv: not a regular file"):
        resolve(cache_dir, dead_url, file=fifo)


# -- downloads and the cache --------------------------------------------------------------------


def test_the_default_url_is_downloaded_into_the_cache(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", MASTER)

    source = resolve(cache_dir, url)

    assert source.path == cache_path(cache_dir, url)
    assert source.path.parent == cache_dir
    assert source.path.read_bytes() == MASTER
    assert source.from_cache is False
    assert source.warnings == []
    assert url in source.description
    assert f"{len(MASTER)} bytes downloaded" in source.description
    assert http_server.requests == ["/api-scrip-master.csv"]
    assert leftovers(cache_dir) == []


def test_a_fresh_cached_copy_is_reused_without_a_request(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", MASTER)
    resolve(cache_dir, url)
    http_server.serve("/api-scrip-master.csv", NEWER)

    source = resolve(cache_dir, url)

    assert source.from_cache is True
    assert source.path.read_bytes() == MASTER
    assert "cached copy" in source.description
    assert http_server.requests == ["/api-scrip-master.csv"]  # only the first download


def test_a_stale_cached_copy_is_downloaded_again(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", NEWER)
    seed_cache(cache_dir, url, MASTER, age_hours=25)

    source = resolve(cache_dir, url, max_age_hours=24)

    assert (source.from_cache, source.path.read_bytes()) == (False, NEWER)
    assert http_server.requests == ["/api-scrip-master.csv"]


def test_refresh_downloads_even_when_the_cache_is_fresh(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", NEWER)
    seed_cache(cache_dir, url, MASTER, age_hours=1)

    source = resolve(cache_dir, url, refresh=True)

    assert (source.from_cache, source.path.read_bytes()) == (False, NEWER)
    assert len(http_server.requests) == 1


def test_an_explicit_url_is_always_downloaded(cache_dir, http_server, dead_url):
    url = http_server.serve("/detailed.csv", NEWER)
    seed_cache(cache_dir, url, MASTER, age_hours=1)

    source = resolve(cache_dir, dead_url, url=url)

    assert (source.from_cache, source.path.read_bytes()) == (False, NEWER)
    assert source.path == cache_path(cache_dir, url)
    assert http_server.requests == ["/detailed.csv"]


def test_each_url_has_its_own_cache_file(cache_dir):
    compact = cache_path(cache_dir, "https://images.dhan.co/api-data/api-scrip-master.csv")
    detailed = cache_path(
        cache_dir, "https://images.dhan.co/api-data/api-scrip-master-detailed.csv"
    )
    assert compact != detailed
    assert compact.name.endswith("-api-scrip-master.csv")
    assert detailed.name.endswith("-api-scrip-master-detailed.csv")


# -- failures -----------------------------------------------------------------------------------


def test_a_server_error_with_a_cached_copy_uses_the_cache_and_says_so(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", b"<html>oops</html>", status=500)
    cached = seed_cache(cache_dir, url, MASTER, age_hours=30)

    source = resolve(cache_dir, url)

    assert (source.path, source.from_cache) == (cached, True)
    assert cached.read_bytes() == MASTER  # the error page did not replace it
    assert len(source.warnings) == 1
    warning = source.warnings[0]
    assert "HTTP 500" in warning
    assert "using the cached copy from 30.0 h ago" in warning
    assert http_server.requests == ["/api-scrip-master.csv"]
    assert leftovers(cache_dir) == []


def test_a_closed_port_with_a_cached_copy_uses_the_cache_and_says_so(cache_dir, dead_url):
    cached = seed_cache(cache_dir, dead_url, MASTER, age_hours=30)

    source = resolve(cache_dir, dead_url)

    assert (source.path, source.from_cache) == (cached, True)
    assert "ConnectionError" in source.warnings[0]
    assert "using the cached copy" in source.warnings[0]


def test_an_explicit_url_failing_falls_back_to_its_fresh_cached_copy(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", b"", status=502)
    cached = seed_cache(cache_dir, url, MASTER, age_hours=1)

    source = resolve(cache_dir, "http://127.0.0.1:9/unused.csv", url=url)

    assert (source.path, source.from_cache) == (cached, True)
    assert "HTTP 502" in source.warnings[0]


def test_a_server_error_without_a_cache_fails_clearly(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", b"busy", status=500)
    with pytest.raises(SourceError) as caught:
        resolve(cache_dir, url)
    message = str(caught.value)
    assert f"download of {url} failed: HTTP 500" in message
    assert "no cached copy to fall back on (import a local copy with --file PATH)" in message
    assert not cache_path(cache_dir, url).exists()
    assert leftovers(cache_dir) == []


def test_a_closed_port_without_a_cache_fails_clearly(cache_dir, dead_url):
    with pytest.raises(SourceError, match=r"ConnectionError.*no cached copy to fall back on"):
        resolve(cache_dir, dead_url)


def test_a_missing_page_is_a_failure_not_a_file(cache_dir, http_server):
    with pytest.raises(SourceError, match="HTTP 404"):
        resolve(cache_dir, http_server.url("/moved.csv"))


def test_a_truncated_download_does_not_replace_the_cache(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", NEWER[:20], content_length=len(NEWER) + 1000)
    cached = seed_cache(cache_dir, url, MASTER, age_hours=30)

    source = resolve(cache_dir, url)

    assert (source.path, source.from_cache) == (cached, True)
    assert cached.read_bytes() == MASTER
    assert len(source.warnings) == 1
    assert url in source.warnings[0]
    assert leftovers(cache_dir) == []


def test_a_truncated_download_without_a_cache_fails_and_leaves_nothing(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", NEWER[:20], content_length=len(NEWER))
    with pytest.raises(SourceError, match="no cached copy to fall back on"):
        resolve(cache_dir, url)
    assert not cache_path(cache_dir, url).exists()
    assert leftovers(cache_dir) == []


def test_an_empty_body_is_a_failure(cache_dir, http_server):
    url = http_server.serve("/api-scrip-master.csv", b"")
    cached = seed_cache(cache_dir, url, MASTER, age_hours=30)

    source = resolve(cache_dir, url)

    assert cached.read_bytes() == MASTER
    assert "empty body" in source.warnings[0]
