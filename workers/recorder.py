"""Raw feed recorder: every binary frame the feed receives, appended to hourly gzip files.

The record files are the ground truth for replaying a session ("the record file replays into
the same ticks"): the frames are stored exactly as read from the socket, with the time they were
read, and decode with ``feed_codec.decode_frame`` into the same packets.

File layout
    ``directory / f"feed-{YYYYmmdd-HH}.bin.gz"``, named by the IST hour of each record's
    *receive* time (not the time of the flush, so a flush that spans an hour boundary is split
    between the two files). A file is a concatenation of gzip members, one per flush; a restart
    within the hour opens the file in append mode and adds members after the old ones.
Record
    ``<d f64 received epoch s><I u32 payload length><payload>`` (little endian). A record never
    spans two members.

Crash safety: each flush is its own gzip member written with a single ``write``, so a crash
loses at most the last ``flush_interval`` of frames. A crash mid-write leaves a truncated last
member, which ``iter_frames`` detects (warning, not an error), and which the next recorder to
append to the file cuts off first, so the file never has a broken member in its middle.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

from trading.dhan.feed_codec import IST_OFFSET_SECONDS
from trading.rules.market import IST

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_PENDING_BYTES",
    "FRAME_OVERHEAD",
    "FrameRecorder",
    "iter_frames",
    "record_path",
]

_RECORD = struct.Struct("<dI")  # received (epoch s), payload length
_RECORD_SIZE = _RECORD.size  # 12
_pack_record = _RECORD.pack
_unpack_record = _RECORD.unpack_from

# zlib level 1: on recorded feed data it compresses ~3x faster than the default level 6
# (93 vs 31 MB/s measured on a mixed ticker/quote/full stream) for files only ~6% bigger
# (ratio 0.249 vs 0.235). The writer thread shares the process with the socket threads, and
# the benchmark feed is ~8 MB/s of frames; level 6 would take a quarter of a core for nothing.
COMPRESS_LEVEL = 1
_GZIP_WBITS = 31  # zlib's gzip wrapper: a header, raw deflate, CRC32 + length trailer

# Every member this module writes starts with these exact 10 bytes (zlib's gzip header: no
# name, mtime 0, "fastest" flag, OS unix). Used to find the start of the last member when a
# file is reopened after a crash; a chance match inside compressed data is ~2**-80 likely.
_MEMBER_HEADER = zlib.compress(b"", COMPRESS_LEVEL, _GZIP_WBITS)[:10]

DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024
# Python's cost of holding one frame besides its payload: the bytes object's header (33),
# the (received, data) tuple (56), the float (24) and the list slot (8). Counted against
# max_pending_bytes so that a flood of 16-byte ticker frames is bounded too.
FRAME_OVERHEAD = 121
_READ_CHUNK = 1 << 20
_ERROR_LOG_EVERY = 60.0  # seconds between repeated disk-error log lines in one episode


def record_path(directory: Path, received: float) -> Path:
    """The file that holds a record received at ``received`` (epoch s): by its IST hour."""
    # Hours are counted in IST-shifted epoch seconds: an IST hour starts at UTC hh:30.
    hour = (received + IST_OFFSET_SECONDS) // 3600.0
    return directory / _file_name(hour * 3600.0 - IST_OFFSET_SECONDS)


def _file_name(hour_start: float) -> str:
    return f"feed-{datetime.fromtimestamp(hour_start, IST):%Y%m%d-%H}.bin.gz"


class FrameRecorder:
    """Buffers raw feed frames in memory; a writer thread appends them to hourly gzip files.

    ``write`` is called on the feed's socket threads for every frame, so it only appends to an
    in-memory buffer under a lock: no disk, no logging except one warning when it starts
    dropping. The writer thread swaps the buffer out every ``flush_interval`` seconds and
    writes one gzip member per file touched.

    Memory is bounded: frames buffered or being written never exceed ``max_pending_bytes``
    (payloads plus ``FRAME_OVERHEAD`` each). Beyond it, frames are dropped and counted
    (``dropped_frames``) rather than blocking the socket thread while the disk is slow.
    Disk errors (full disk, permissions) are logged and counted (``write_errors``,
    ``lost_frames``) and never raised.

    ``clock`` (epoch s) stamps the stats and names the file of a record whose own receive time
    is not a finite number; it is injectable for tests.
    """

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval: float = 1.0,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval}")
        self.directory = Path(directory)
        self.flush_interval = flush_interval
        self.max_pending_bytes = max_pending_bytes
        self._clock = clock

        # Guarded by _lock (taken by write() on socket threads; held only for a few appends).
        self._lock = threading.Lock()
        # The frames themselves, not copies: packing records is the writer thread's job.
        self._pending: list[tuple[float, bytes]] = []
        # Accounted size of the frames buffered AND being written (a swapped-out batch still
        # holds memory until its write ends), so a slow disk cannot double the bound.
        self._pending_bytes = 0
        self._dropped_frames = 0
        self._dropping = False  # in a drop episode: warned already
        self._episode_dropped_at_start = 0
        self._closed = False

        # Writer-side state, guarded by _flush_lock (one flush at a time).
        self._flush_lock = threading.Lock()
        self._frames = 0
        self._bytes = 0
        self._file_bytes = 0
        self._files: set[Path] = set()
        self._checked: set[Path] = set()
        self._write_errors = 0
        self._lost_frames = 0
        self._last_flush_at: float | None = None
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._last_error_log = -math.inf

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- socket threads -------------------------------------------------------------------

    def write(self, data: bytes, received: float) -> None:
        """Buffer one raw frame read at ``received`` (epoch s). Never blocks on disk, never
        raises on disk trouble; thread-safe. ``data`` is kept, not copied: it must not be
        changed afterwards (bytes from the socket are immutable)."""
        size = len(data) + FRAME_OVERHEAD
        with self._lock:
            if self._pending_bytes + size <= self.max_pending_bytes:
                self._pending.append((received, data))
                self._pending_bytes += size
                return
            self._dropped_frames += 1
            if self._dropping:
                return
            self._dropping = True
            self._episode_dropped_at_start = self._dropped_frames - 1
            closed = self._closed
        # Once per episode, outside the lock; the episode ends when the writer frees space.
        if closed:
            logger.warning("Feed recorder is closed: dropping frames written after close()")
        else:
            logger.warning(
                "Feed recorder buffer full (%d bytes pending, cap %d; disk too slow?): "
                "DROPPING frames until the writer catches up",
                self._pending_bytes,
                self.max_pending_bytes,
            )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="feed-recorder", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting frames, write everything buffered, join the writer thread."""
        with self._lock:
            self._closed = True
            # Later writes are dropped (and counted) instead of buffered forever.
            self.max_pending_bytes = -1
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        # The thread's last pass flushed; this catches a recorder that was never started (or
        # a join that timed out: the flush lock then waits for the thread's write to finish).
        self.flush()

    def __enter__(self) -> FrameRecorder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._flush_guarded()
        self._flush_guarded()

    def _flush_guarded(self) -> None:
        # A bug in a flush must not kill the thread: frames would then pile up to the cap and
        # be dropped for the rest of the session with nothing but one warning.
        try:
            self.flush()
        except Exception:
            logger.exception("Feed recorder flush failed unexpectedly")

    # -- writer ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything buffered now (the writer thread calls this every interval)."""
        with self._flush_lock:
            with self._lock:
                batch = self._pending
                self._pending = []
                # Everything accounted so far belongs to this batch.
                taken = self._pending_bytes
            try:
                if batch:
                    self._write_batch(batch)
            finally:
                with self._lock:
                    # Space is free again only now (the batch counted against the cap until
                    # written), so this is where a drop episode ends.
                    self._pending_bytes -= taken
                    ended_episode = self._dropping and not self._closed
                    if ended_episode:
                        self._dropping = False
                    episode_dropped = self._dropped_frames - self._episode_dropped_at_start
            if ended_episode:
                logger.warning(
                    "Feed recorder accepting frames again: %d were dropped while the buffer "
                    "was full",
                    episode_dropped,
                )

    def _write_batch(self, batch: list[tuple[float, bytes]]) -> None:
        now = self._clock()
        for hour, group in _split_by_hour(batch, now):
            received = list(map(itemgetter(0), group))
            payloads = list(map(itemgetter(1), group))
            # All C-level loops: a header per record, then header, payload, header, ...
            headers = map(_pack_record, received, map(len, payloads))
            blob = b"".join(chain.from_iterable(zip(headers, payloads, strict=True)))
            path = self.directory / _file_name(hour * 3600.0 - IST_OFFSET_SECONDS)
            try:
                written = self._append_member(path, blob)
            except OSError as exc:
                self._on_write_error(path, exc, len(group), now)
                continue
            self._frames += len(group)
            self._bytes += len(blob) - _RECORD_SIZE * len(group)
            self._file_bytes += written
            self._files.add(path)
            if self._failing_since is not None:
                logger.warning(
                    "Feed recorder writing to %s again after disk errors since %s",
                    path,
                    _fmt_time(self._failing_since),
                )
                self._failing_since = None
        self._last_flush_at = now

    def _append_member(self, path: Path, blob: bytes) -> int:
        """Append ``blob`` as one gzip member to ``path``; return the bytes written."""
        member = zlib.compress(blob, COMPRESS_LEVEL, _GZIP_WBITS)
        if path not in self._checked:
            self.directory.mkdir(parents=True, exist_ok=True)
            _repair_tail(path)
            self._checked.add(path)
        with open(path, "ab") as f:
            start = f.tell()
            try:
                f.write(member)
                f.flush()
            except OSError:
                # A partial member (disk full mid-write) would sit in the middle of the file
                # once later members are appended and make everything after it unreadable:
                # cut it off, then report the error.
                try:
                    f.truncate(start)
                except OSError:
                    logger.exception("Feed recorder could not cut a partial write off %s", path)
                raise
        return len(member)

    def _on_write_error(self, path: Path, exc: OSError, n_frames: int, now: float) -> None:
        self._write_errors += 1
        self._lost_frames += n_frames
        self._last_error = f"{type(exc).__name__}: {exc}"
        # The path may be fine next time (disk freed): recheck its tail before appending.
        self._checked.discard(path)
        if self._failing_since is None:
            self._failing_since = now
            self._last_error_log = now
            logger.error("Feed recorder cannot write %s (%d frames lost): %s", path, n_frames, exc)
        elif now - self._last_error_log >= _ERROR_LOG_EVERY:
            self._last_error_log = now
            logger.error(
                "Feed recorder still failing since %s (%d write errors, %d frames lost): %s",
                _fmt_time(self._failing_since),
                self._write_errors,
                self._lost_frames,
                exc,
            )

    # -- stats ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for the heartbeat.

        frames / bytes: frames and payload bytes written to disk; files: files appended to;
        file_bytes: compressed bytes appended; pending_frames / pending_bytes: buffered now;
        dropped_frames: refused because the buffer was full (or after close); write_errors:
        failed file writes; lost_frames: frames in those failed writes.
        """
        with self._lock:
            pending_frames = len(self._pending)
            pending_bytes = self._pending_bytes
            dropped = self._dropped_frames
        return {
            "frames": self._frames,
            "bytes": self._bytes,
            "files": len(self._files),
            "file_bytes": self._file_bytes,
            "pending_frames": pending_frames,
            "pending_bytes": pending_bytes,
            "dropped_frames": dropped,
            "write_errors": self._write_errors,
            "lost_frames": self._lost_frames,
            "last_flush_at": self._last_flush_at,
            "last_error": self._last_error,
        }


def _fmt_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, IST).isoformat(timespec="seconds")


def _split_by_hour(
    batch: list[tuple[float, bytes]], now: float
) -> list[tuple[float, list[tuple[float, bytes]]]]:
    """Group a batch by the IST hour (hours since the IST-shifted epoch) of each record,
    keeping the batch order within each group; groups in hour order."""
    times = list(map(itemgetter(0), batch))
    total = sum(times)
    if math.isfinite(total):
        first = (min(times) + IST_OFFSET_SECONDS) // 3600.0
        if (max(times) + IST_OFFSET_SECONDS) // 3600.0 == first:
            return [(first, batch)]  # the usual case: no per-record work
    # A batch across an hour boundary (records of several socket threads may interleave
    # around it), or a non-finite receive time (a caller bug): such a record goes to the
    # file of the current hour rather than nowhere.
    now_hour = (now + IST_OFFSET_SECONDS) // 3600.0
    groups: dict[float, list[tuple[float, bytes]]] = {}
    for record in batch:
        received = record[0]
        hour = (received + IST_OFFSET_SECONDS) // 3600.0 if math.isfinite(received) else now_hour
        groups.setdefault(hour, []).append(record)
    return sorted(groups.items())


def _repair_tail(path: Path) -> None:
    """Cut an incomplete last gzip member (a crash mid-write) off an existing file.

    Without this, a restart within the hour would append new members after the broken one,
    and the reader could not get past it. Only an incomplete tail is removed; a file whose
    last member is corrupt (rather than short) is left alone for the reader to report.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "r+b") as f:
        window = _READ_CHUNK
        while True:
            start = max(0, size - window)
            f.seek(start)
            tail = f.read(size - start)
            at = tail.rfind(_MEMBER_HEADER)
            # Keep looking further back until a header is found: the last member is one
            # flush, normally far smaller than the first window.
            if at >= 0 or start == 0:
                break
            window *= 8
        if at < 0:
            if size < len(_MEMBER_HEADER) and _MEMBER_HEADER.startswith(tail):
                at = 0  # a crash while writing the first header: all of it goes
            else:
                logger.error("Feed recorder: %s holds no gzip member it wrote; appending", path)
                return
        valid = at + _complete_members(tail[at:])
        if start + valid < size:
            logger.warning(
                "Feed recorder: %s ends in an incomplete gzip member at byte %d (a crash "
                "mid-write?); cutting %d bytes off before appending",
                path,
                start + valid,
                size - start - valid,
            )
            f.truncate(start + valid)


def _complete_members(data: bytes) -> int:
    """Length of the prefix of ``data`` made of complete gzip members."""
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(_GZIP_WBITS)
        try:
            # Output discarded in bounded pieces: only whether the member ends matters.
            rest = data[pos:]
            while not d.eof:
                got = d.decompress(rest, _READ_CHUNK)
                rest = d.unconsumed_tail
                if not got and not rest:
                    break  # input used up and no output pending: the member is short
        except zlib.error:
            return len(data)  # corrupt, not short: not ours to cut
        if not d.eof:
            break
        pos = len(data) - len(d.unused_data)
    return pos


# -- reading ------------------------------------------------------------------------------


def iter_frames(paths: Path | str | Iterable[Path | str]) -> Iterator[tuple[float, bytes]]:
    """Yield ``(received, payload)`` for every record, in file order.

    ``paths``: a record file, a directory (its ``feed-*.bin.gz`` in name order, which is
    chronological) or an iterable of either. A truncated last member (a crash mid-write)
    yields the records of the complete members and logs a warning naming the file and offset;
    corrupt data anywhere else raises ValueError naming the file and record index. Memory is
    bounded by one member (one flush), whatever the file size.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for file in sorted(path.glob("feed-*.bin.gz")):
                yield from _iter_file(file)
        else:
            yield from _iter_file(path)


def _iter_file(path: Path) -> Iterator[tuple[float, bytes]]:
    index = 0  # records yielded from this file so far
    read = 0  # bytes read from the file so far
    decomp: Any = None  # zlib.Decompress of the member being read
    member_at = 0
    out: list[bytes] = []
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            read += len(chunk)
            data = chunk
            while data:
                if decomp is None:
                    decomp = zlib.decompressobj(_GZIP_WBITS)
                    member_at = read - len(data)
                    out = []
                try:
                    out.append(decomp.decompress(data))
                except zlib.error as exc:
                    raise ValueError(
                        f"{path}: corrupt gzip member at byte {member_at} "
                        f"(after record {index}): {exc}"
                    ) from None
                if not decomp.eof:
                    break
                # Records are yielded only once the member's CRC has been checked.
                data = decomp.unused_data
                decomp = None
                for record in _parse_member(path, b"".join(out), index, member_at):
                    yield record
                    index += 1
    if decomp is not None:
        logger.warning(
            "%s: truncated gzip member at byte %d (a crash mid-write?): %d records read, "
            "the incomplete last flush is skipped",
            path,
            member_at,
            index,
        )


def _parse_member(
    path: Path, blob: bytes, index: int, member_at: int
) -> Iterator[tuple[float, bytes]]:
    pos = 0
    end = len(blob)
    while pos < end:
        if end - pos < _RECORD_SIZE:
            raise ValueError(
                f"{path}: corrupt record {index} in the member at byte {member_at}: "
                f"{end - pos} bytes left, a record header is {_RECORD_SIZE}"
            )
        received, length = _unpack_record(blob, pos)
        pos += _RECORD_SIZE
        if pos + length > end:
            raise ValueError(
                f"{path}: corrupt record {index} in the member at byte {member_at}: "
                f"length {length} overruns the member ({end - pos} bytes left)"
            )
        yield received, blob[pos : pos + length]
        pos += length
        index += 1
