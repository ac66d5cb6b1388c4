"""FrameRecorder / iter_frames: raw feed frames to hourly gzip files and back."""

from __future__ import annotations

import errno
import logging
import threading
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

import workers.recorder as recorder_module
from trading.dhan.feed_codec import (
    IST,
    decode_frame,
    encode_full,
    encode_oi,
    encode_prev_close,
    encode_quote,
    encode_ticker,
)
from workers.recorder import FRAME_OVERHEAD, FrameRecorder, iter_frames, record_path

# 2025-01-06 10:59:58 IST, two seconds before an IST hour boundary.
T0 = datetime(2025, 1, 6, 10, 59, 58, tzinfo=IST).timestamp()
LTT = 1_736_161_198  # an IST-shifted LTT, any value round-trips


def _frames(count: int) -> list[bytes]:
    """Ticker, quote and full packets, a multi-packet frame and a garbage frame, cycled."""
    out: list[bytes] = []
    for i in range(count):
        price = 100.0 + i * 0.05
        kind = i % 5
        if kind == 0:
            out.append(encode_ticker("IDX_I", 13, price, LTT + i))
        elif kind == 1:
            out.append(
                encode_quote(
                    "NSE_FNO", 55796, ltp=price, ltt=LTT + i, ltq=75, atp=price - 1, volume=i,
                    total_sell_qty=10, total_buy_qty=20, open=99.0, close=0.0, high=110.0,
                    low=95.5,
                )
            )  # fmt: skip
        elif kind == 2:
            out.append(
                encode_full(
                    "NSE_FNO", 55797, ltp=price, ltt=LTT + i, ltq=25, volume=1000 + i,
                    oi=5000 + i, oi_day_high=6000, oi_day_low=4000, open=98.0, high=120.0,
                    low=90.0, depth=[(10 * j, 20 * j, j, j + 1, price - j, price + j)
                                     for j in range(1, 6)],
                )
            )  # fmt: skip
        elif kind == 3:
            # Several packets in one frame, as Dhan sends them after a subscribe.
            out.append(
                encode_prev_close("NSE_FNO", 55796, 98.5, 4000)
                + encode_ticker("NSE_FNO", 55796, price, LTT + i)
                + encode_oi("NSE_FNO", 55796, 5100 + i)
            )
        else:
            out.append(b"\x99garbage that is no packet" + bytes([i % 256]))
    return out


def _ist(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, IST)


def test_recorded_frames_replay_into_the_same_packets(tmp_path: Path) -> None:
    frames = _frames(2000)
    times = [T0 - 600 + i * 0.01 for i in range(len(frames))]
    recorder = FrameRecorder(tmp_path)
    for data, received in zip(frames, times, strict=True):
        recorder.write(data, received)
    recorder.close()

    replayed = list(iter_frames(tmp_path))

    assert [received for received, _ in replayed] == times
    assert [payload for _, payload in replayed] == frames
    for (received, payload), original, at in zip(replayed, frames, times, strict=True):
        assert decode_frame(payload, _ist(received)) == decode_frame(original, _ist(at))
    # The comparison above is not vacuous: every kind of packet came back.
    decoded = [p for _, payload in replayed for p in decode_frame(payload, None)]
    kinds = {type(p).__name__ for p in decoded}
    assert kinds == {"TickerTick", "QuoteTick", "FullTick", "PrevClose", "OpenInterest"}
    stats = recorder.stats()
    assert stats["frames"] == len(frames)
    assert stats["bytes"] == sum(map(len, frames))
    assert stats["files"] == 1
    assert stats["dropped_frames"] == stats["write_errors"] == 0


def test_records_of_one_flush_are_split_by_the_ist_hour_of_their_receive_time(
    tmp_path: Path,
) -> None:
    # The clock says noon: the file name must come from each record's own time, not the
    # flush time.
    recorder = FrameRecorder(tmp_path, clock=lambda: T0 + 3600)
    times = [T0, T0 + 1.5, T0 + 1.999, T0 + 2.0, T0 + 2.5, T0 + 1.9]  # last: a late thread
    for i, received in enumerate(times):
        recorder.write(encode_ticker("IDX_I", 13, 100.0 + i, LTT), received)
    recorder.close()

    before = tmp_path / "feed-20250106-10.bin.gz"
    after = tmp_path / "feed-20250106-11.bin.gz"
    assert sorted(tmp_path.iterdir()) == [before, after]
    assert record_path(tmp_path, T0) == before
    assert record_path(tmp_path, T0 + 2.0) == after
    assert [t for t, _ in iter_frames(before)] == [T0, T0 + 1.5, T0 + 1.999, T0 + 1.9]
    assert [t for t, _ in iter_frames(after)] == [T0 + 2.0, T0 + 2.5]
    # A directory reads in name (= time) order.
    assert [t for t, _ in iter_frames(tmp_path)] == [
        T0, T0 + 1.5, T0 + 1.999, T0 + 1.9, T0 + 2.0, T0 + 2.5,
    ]  # fmt: skip
    assert recorder.stats()["files"] == 2


def test_a_restart_within_the_hour_appends_a_new_member(tmp_path: Path) -> None:
    for run in range(2):
        recorder = FrameRecorder(tmp_path)
        recorder.write(encode_ticker("IDX_I", 13, 100.0 + run, LTT), T0 - 10 + run)
        recorder.close()

    (path,) = tmp_path.iterdir()
    assert [t for t, _ in iter_frames(path)] == [T0 - 10, T0 - 9]
    assert [t for t, _ in iter_frames([path])] == [T0 - 10, T0 - 9]
    assert [t for t, _ in iter_frames(str(path))] == [T0 - 10, T0 - 9]


def _two_member_file(tmp_path: Path) -> tuple[Path, int]:
    """A file of two flushes of 3 frames; returns it and the offset of the second member."""
    recorder = FrameRecorder(tmp_path)
    for flush in range(2):
        for i in range(3):
            recorder.write(encode_ticker("IDX_I", 13, 100.0 + i, LTT), T0 - 100 + flush * 10 + i)
        recorder.flush()
        if flush == 0:
            first_size = record_path(tmp_path, T0 - 100).stat().st_size
    recorder.close()
    return record_path(tmp_path, T0 - 100), first_size


def test_a_truncated_last_member_yields_the_complete_ones_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, second_at = _two_member_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # a crash in the middle of the second flush's write

    with caplog.at_level(logging.WARNING, logger="workers.recorder"):
        got = list(iter_frames(path))

    assert [t for t, _ in got] == [T0 - 100, T0 - 99, T0 - 98]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in warning.getMessage()
    assert f"byte {second_at}" in warning.getMessage()


def test_a_crash_mid_header_is_a_truncated_member_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, second_at = _two_member_file(tmp_path)
    path.write_bytes(path.read_bytes()[: second_at + 4])

    with caplog.at_level(logging.WARNING, logger="workers.recorder"):
        assert len(list(iter_frames(path))) == 3
    assert f"byte {second_at}" in caplog.text


def test_a_recorder_reopening_a_crashed_file_cuts_the_incomplete_tail_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = _two_member_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])

    with caplog.at_level(logging.WARNING, logger="workers.recorder"):
        recorder = FrameRecorder(tmp_path)
        recorder.write(b"after the restart", T0 - 50)
        recorder.close()

    assert "incomplete gzip member" in caplog.text
    # Without the cut, the broken member would sit in the middle and the reader would stop.
    caplog.clear()
    assert [t for t, _ in iter_frames(path)] == [T0 - 100, T0 - 99, T0 - 98, T0 - 50]
    assert "truncated" not in caplog.text


def test_corrupt_gzip_data_in_the_middle_raises_naming_the_file_and_record(
    tmp_path: Path,
) -> None:
    path, second_at = _two_member_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[second_at + 15] ^= 0xFF  # inside the second member's deflate data
    path.write_bytes(bytes(data))

    with pytest.raises(ValueError, match=r"after record 3") as info:
        list(iter_frames(path))
    assert str(path) in str(info.value)
    assert f"byte {second_at}" in str(info.value)


def test_a_record_overrunning_its_member_raises_naming_the_record_index(tmp_path: Path) -> None:
    path = tmp_path / "feed-20250106-10.bin.gz"
    good = recorder_module._RECORD.pack(T0, 3) + b"abc"
    bad = recorder_module._RECORD.pack(T0, 99) + b"short"
    path.write_bytes(zlib.compress(good + good + bad, 1, 31))

    with pytest.raises(ValueError, match=r"record 2 .*length 99 overruns") as info:
        list(iter_frames(path))
    assert str(path) in str(info.value)


def test_frames_from_many_threads_are_all_recorded_in_each_threads_order(
    tmp_path: Path,
) -> None:
    recorder = FrameRecorder(tmp_path, flush_interval=0.001)
    recorder.start()
    threads_n, per_thread = 8, 3000
    barrier = threading.Barrier(threads_n)

    def feed(thread: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            recorder.write(f"{thread}:{i}".encode(), T0 - 60 + i * 0.001)

    threads = [threading.Thread(target=feed, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close()

    seen: dict[int, list[int]] = {n: [] for n in range(threads_n)}
    for _, payload in iter_frames(tmp_path):
        thread, index = map(int, payload.split(b":"))
        seen[thread].append(index)
    assert seen == {n: list(range(per_thread)) for n in range(threads_n)}
    assert recorder.stats()["frames"] == threads_n * per_thread


def test_an_unwritable_directory_is_counted_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A regular file where the directory should be: fails even as root (a read-only
    # directory would not).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    recorder = FrameRecorder(blocker / "records")

    with caplog.at_level(logging.ERROR, logger="workers.recorder"):
        for i in range(10):
            recorder.write(b"frame", T0 - 100 + i)
        recorder.flush()
        recorder.write(b"frame", T0 - 80)
        recorder.close()

    stats = recorder.stats()
    assert stats["write_errors"] == 2
    assert stats["lost_frames"] == 11
    assert stats["frames"] == 0
    assert "NotADirectoryError" in stats["last_error"] or "FileExists" in stats["last_error"]
    # Logged once for the episode, not once per flush.
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


class _DiskFullFile:
    """Writes half of what it is given, then fails like a full disk."""

    def __init__(self, real: object) -> None:
        self.real = real

    def __enter__(self) -> _DiskFullFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.real.close()  # type: ignore[attr-defined]

    def tell(self) -> int:
        return self.real.tell()  # type: ignore[attr-defined]

    def truncate(self, size: int) -> int:
        self.real.flush()  # type: ignore[attr-defined]
        return self.real.truncate(size)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self.real.flush()  # type: ignore[attr-defined]

    def write(self, data: bytes) -> int:
        self.real.write(data[: len(data) // 2])  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_mid_write_leaves_no_partial_member_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = FrameRecorder(tmp_path)
    recorder.write(b"first", T0 - 30)
    recorder.flush()

    real_open = open
    monkeypatch.setattr(
        recorder_module,
        "open",
        lambda path, mode="r": _DiskFullFile(real_open(path, mode)),
        raising=False,
    )
    recorder.write(b"lost", T0 - 20)
    recorder.flush()  # must not raise
    monkeypatch.undo()
    recorder.write(b"third", T0 - 10)
    recorder.close()

    assert [payload for _, payload in iter_frames(tmp_path)] == [b"first", b"third"]
    stats = recorder.stats()
    assert (stats["write_errors"], stats["lost_frames"], stats["frames"]) == (1, 1, 2)
    assert "No space left" in stats["last_error"]


def test_a_full_buffer_drops_and_counts_frames_with_one_warning_per_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = bytes(162)
    room = 5
    recorder = FrameRecorder(tmp_path, max_pending_bytes=room * (162 + FRAME_OVERHEAD))

    with caplog.at_level(logging.WARNING, logger="workers.recorder"):
        for i in range(100):
            recorder.write(frame, T0 - 100 + i)
        assert recorder.stats()["dropped_frames"] == 100 - room
        assert recorder.stats()["pending_frames"] == room
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1
        assert "DROPPING" in warnings[0]

        recorder.flush()  # the writer caught up: the episode ends
        for i in range(10):
            recorder.write(frame, T0 - 50 + i)
        recorder.close()

    stats = recorder.stats()
    assert stats["dropped_frames"] == 100 - room + 10 - room
    assert stats["frames"] == 2 * room
    messages = [r.getMessage() for r in caplog.records]
    assert sum("DROPPING" in m for m in messages) == 2
    assert any("95 were dropped" in m for m in messages)
    assert len(list(iter_frames(tmp_path))) == 2 * room


def test_close_writes_everything_and_later_writes_are_dropped(tmp_path: Path) -> None:
    recorder = FrameRecorder(tmp_path, flush_interval=3600)
    recorder.start()
    recorder.write(b"one", T0)
    recorder.close()
    recorder.write(b"too late", T0 + 1)

    assert [payload for _, payload in iter_frames(tmp_path)] == [b"one"]
    assert recorder.stats()["dropped_frames"] == 1


def test_a_non_finite_receive_time_is_filed_under_the_clocks_hour(tmp_path: Path) -> None:
    recorder = FrameRecorder(tmp_path, clock=lambda: T0 + 3600)
    recorder.write(b"good", T0)
    recorder.write(b"bad", float("nan"))
    recorder.close()

    assert [p for _, p in iter_frames(record_path(tmp_path, T0))] == [b"good"]
    assert [p for _, p in iter_frames(record_path(tmp_path, T0 + 3600))] == [b"bad"]


def test_file_names_use_the_ist_hour_not_utc(tmp_path: Path) -> None:
    received = datetime(2025, 1, 6, 23, 45, tzinfo=UTC).timestamp()  # 05:15 IST next day
    assert record_path(tmp_path, received).name == "feed-20250107-05.bin.gz"
