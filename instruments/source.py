"""Where a scrip master comes from: a local file, an explicit URL, or Dhan's URL with a disk cache.

A download is streamed to a temporary file and renamed into the cache only when complete, so a
connection cut off mid-way never replaces a good cached copy. When a download fails and a cached
copy exists, that copy is used and the result says so; with no copy the failure is final.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """No usable scrip master could be obtained; the message says what was tried."""


@dataclass
class SourceFile:
    path: Path
    description: str
    from_cache: bool = False
    warnings: list[str] = field(default_factory=list)


def cache_path(cache_dir: Path, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = url.rstrip("/").rsplit("/", 1)[-1] or "scrip-master.csv"
    return cache_dir / f"{digest}-{name}"


def _age_text(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60:.0f} min"


def download(url: str, target: Path, timeout: float) -> int:
    """Stream ``url`` into ``target`` atomically; returns the byte count. Raises SourceError."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with requests.get(url, stream=True, timeout=(min(timeout, 15), timeout)) as resp:
                    if resp.status_code != 200:
                        raise SourceError(f"download of {url} failed: HTTP {resp.status_code}")
                    expected = resp.headers.get("Content-Length")
                    size = 0
                    for chunk in resp.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
                        size += len(chunk)
            except requests.RequestException as exc:
                raise SourceError(
                    f"download of {url} failed: {type(exc).__name__}: {exc}"
                ) from None
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise SourceError(f"download of {url} is incomplete: got {size} of {expected} bytes")
        if size == 0:
            raise SourceError(f"download of {url} returned an empty body")
        os.replace(tmp, target)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def resolve_source(
    *,
    file: str | Path | None = None,
    url: str | None = None,
    default_url: str,
    cache_dir: Path,
    max_age_hours: float,
    timeout: float,
    refresh: bool = False,
) -> SourceFile:
    """Pick the scrip master to import.

    ``file``: that file, as is. ``url``: always downloaded (explicit), cached copy on failure.
    Neither: ``default_url`` through the cache; a copy younger than ``max_age_hours`` is used
    without a download unless ``refresh``.
    """
    if file is not None:
        path = Path(file)
        if not path.is_file():
            if path.is_dir():
                raise SourceError(f"{path}: is a directory, not a scrip master file")
            if path.exists():
                raise SourceError(f"{path}: not a regular file")
            raise SourceError(f"{path}: no such file")
        return SourceFile(path, f"file {path}")

    target_url = url or default_url
    cached = cache_path(cache_dir, target_url)
    age = time.time() - cached.stat().st_mtime if cached.is_file() else None
    if url is None and not refresh and age is not None and age < max_age_hours * 3600:
        return SourceFile(
            cached, f"cached copy of {target_url} ({_age_text(age)} old)", from_cache=True
        )
    try:
        size = download(target_url, cached, timeout)
    except SourceError as exc:
        if age is None:
            raise SourceError(
                f"{exc}; no cached copy to fall back on (import a local copy with --file PATH)"
            ) from None
        warning = f"{exc}; using the cached copy from {_age_text(age)} ago ({cached})"
        log.warning("%s", warning)
        return SourceFile(
            cached, f"cached copy of {target_url} ({_age_text(age)} old)", True, [warning]
        )
    return SourceFile(cached, f"{target_url} ({size:,} bytes downloaded)")
