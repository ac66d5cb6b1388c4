"""trading.dhan.ratelimit: limits hold, daily caps fail fast, Redis shares one budget."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from config_schema import ConfigError
from trading.dhan.errors import DailyCapExceeded, RateLimited, Retryable
from trading.dhan.ratelimit import (
    DEFAULT_LIMITS_FILE,
    IST,
    InProcessRateLimiter,
    Limit,
    RedisRateLimiter,
    limiter_from_settings,
    load_limits,
    parse_limits,
)

REPO = Path(__file__).resolve().parents[3]
EPOCH = 1_773_000_000.0  # wall-clock seconds at fake monotonic 0


class FakeTime:
    """A monotonic clock that only moves when the limiter sleeps (or a test advances it)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def wall(self) -> float:
        return EPOCH + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def limiter(fake: FakeTime, limits: dict) -> InProcessRateLimiter:
    return InProcessRateLimiter(limits, clock=fake.clock, sleep=fake.sleep, wall_clock=fake.wall)


# --- in-process -----------------------------------------------------------------------------


def test_ten_per_second_then_the_eleventh_waits_until_the_window_frees(fake):
    lim = limiter(fake, {"orders": [(10, 1)]})
    lim.acquire("orders")  # at 1000.0
    fake.advance(0.5)
    for _ in range(9):
        lim.acquire("orders")  # at 1000.5
    assert fake.sleeps == []
    lim.acquire("orders")  # the 11th: waits for the 1000.0 entry to leave the window
    assert fake.sleeps == [0.5]
    assert fake.now == 1001.0
    lim.acquire("orders")  # the 12th: the nine 1000.5 entries are still in the window
    assert fake.sleeps == [0.5, 0.5]
    assert fake.now == 1001.5


def test_the_per_minute_cap_holds_behind_the_per_second_one(fake):
    lim = limiter(fake, {"orders": [(10, 1), (250, 60)]})
    for _ in range(250):
        lim.acquire("orders")
    # 25 bursts of 10, one second apart.
    assert fake.now == 1024.0
    assert fake.sleeps == [1.0] * 24
    lim.acquire("orders")  # the 251st: waits for the first burst to be a minute old
    assert fake.sleeps[-1] == 36.0
    assert fake.now == 1060.0


def test_option_chain_allows_one_request_every_three_seconds(fake):
    lim = limiter(fake, {"option_chain": [(1, 3)]})
    lim.acquire("option_chain")
    with pytest.raises(RateLimited) as info:
        lim.acquire("option_chain", block=False)
    assert info.value.retry_after == 3.0
    fake.advance(1.0)
    lim.acquire("option_chain")
    assert fake.sleeps == [2.0]
    assert fake.now == 1003.0


def test_categories_have_separate_budgets(fake):
    lim = limiter(fake, {"quotes": [(1, 1)], "non_trading": [(2, 1)]})
    lim.acquire("quotes")
    lim.acquire("non_trading")
    lim.acquire("non_trading")
    assert fake.sleeps == []


def test_block_false_raises_rate_limited_without_using_a_slot(fake):
    lim = limiter(fake, {"quotes": [(2, 1)]})
    lim.acquire("quotes")
    lim.acquire("quotes")
    for _ in range(3):
        with pytest.raises(RateLimited, match=r"quotes: 2 requests per 1 s in use") as info:
            lim.acquire("quotes", block=False)
    assert isinstance(info.value, Retryable)
    assert info.value.retry_after == 1.0
    assert fake.sleeps == []
    fake.advance(1.0)
    lim.acquire("quotes", block=False)
    lim.acquire("quotes", block=False)  # the refused attempts took nothing


def test_a_wait_longer_than_the_timeout_fails_at_once(fake):
    lim = limiter(fake, {"option_chain": [(1, 3)]})
    lim.acquire("option_chain")
    with pytest.raises(RateLimited, match="exceeds timeout 2 s"):
        lim.acquire("option_chain", timeout=2.0)
    assert fake.sleeps == []
    lim.acquire("option_chain", timeout=3.0)
    assert fake.sleeps == [3.0]


def test_an_interrupted_wait_raises_instead_of_sending(fake):
    stop = threading.Event()
    stop.set()  # shutdown already requested: Event.wait returns True at once
    lim = InProcessRateLimiter({"quotes": [(1, 1)]}, clock=fake.clock, sleep=stop.wait)
    lim.acquire("quotes")
    with pytest.raises(RateLimited, match="interrupted"):
        lim.acquire("quotes")


def test_a_daily_cap_fails_fast_naming_category_cap_and_reset(fake):
    lim = limiter(fake, {"orders": [(10, 1), (3, 86400)]})
    lim.acquire("orders")  # at 1000.0
    fake.advance(3600.0)
    lim.acquire("orders")
    lim.acquire("orders")
    for block in (True, False):
        with pytest.raises(DailyCapExceeded) as info:
            lim.acquire("orders", block=block)
        err = info.value
        assert fake.sleeps == []
        assert not isinstance(err, Retryable)  # a generic retry loop must not wait a day
        assert (err.category, err.cap, err.window) == ("orders", 3, 86400.0)
        assert err.retry_after == 86400.0 - 3600.0
        assert err.resets_at.utcoffset() == timedelta(hours=5, minutes=30)
        assert err.resets_at.timestamp() == EPOCH + 1000.0 + 86400.0
        assert "orders" in str(err)
        assert "3 requests per 86400 s" in str(err)
        assert err.resets_at.isoformat(timespec="seconds") in str(err)


def test_the_daily_cap_wins_when_a_shorter_window_is_also_full(fake):
    lim = limiter(fake, {"data": [(1, 1), (1, 86400)]})
    lim.acquire("data")
    with pytest.raises(DailyCapExceeded):
        lim.acquire("data")


def test_the_fail_fast_window_is_configurable(fake):
    lim = InProcessRateLimiter(
        {"orders": [(1, 3600)]}, fail_fast_window=3600, clock=fake.clock, sleep=fake.sleep
    )
    lim.acquire("orders")
    with pytest.raises(DailyCapExceeded):
        lim.acquire("orders")


def test_an_unknown_category_is_a_bug(fake):
    with pytest.raises(ValueError, match="unknown rate-limit category 'order'"):
        limiter(fake, {"orders": [(1, 1)]}).acquire("order")


def test_threads_never_get_more_than_the_limit(fake):
    lim = limiter(fake, {"orders": [(10, 1)]})  # the clock stands still: one window
    admitted: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(20):
            try:
                lim.acquire("orders", block=False)
            except RateLimited:
                continue
            admitted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 10


# --- configuration --------------------------------------------------------------------------


def test_the_shipped_config_holds_the_documented_limits():
    assert load_limits(DEFAULT_LIMITS_FILE) == {
        "orders": (Limit(10, 1), Limit(250, 60), Limit(1000, 3600), Limit(7000, 86400)),
        "data": (Limit(5, 1), Limit(100000, 86400)),
        "quotes": (Limit(1, 1),),
        "option_chain": (Limit(1, 3),),
        "non_trading": (Limit(20, 1),),
    }


def test_pairs_may_be_written_as_mappings():
    assert parse_limits({"quotes": [{"count": 1, "window": 0.5}]}) == {"quotes": (Limit(1, 0.5),)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"orders": [[10, 1], [250, "x"]]},
            "ratelimits.yml: orders[1]: window must be a positive number, got 'x'",
        ),
        ({"orders": [[10, 0]]}, "ratelimits.yml: orders[0]: window must be a positive number"),
        ({"orders": [[0, 1]]}, "ratelimits.yml: orders[0]: count must be a positive integer"),
        (
            {"orders": [[2.5, 1]]},
            "ratelimits.yml: orders[0]: count must be a positive integer, got 2.5",
        ),
        ({"orders": [[True, 1]]}, "ratelimits.yml: orders[0]: count must be a positive integer"),
        ({"orders": [[10, 1], [20, 1.0]]}, "ratelimits.yml: orders[1]: window 1 s repeats orders"),
        ({"orders": [[10]]}, "ratelimits.yml: orders[0]: expected [count, window_seconds]"),
        ({"orders": [{"count": 1, "windw": 1}]}, "ratelimits.yml: orders[0]: unknown keys"),
        ({"orders": []}, "ratelimits.yml: orders: expected a non-empty list"),
        ({"orders": None}, "ratelimits.yml: orders: expected a non-empty list"),
        ({"Orders!": [[1, 1]]}, "ratelimits.yml: category names are lowercase identifiers"),
        ([["orders", 1]], "ratelimits.yml: expected a mapping"),
        (None, "ratelimits.yml: expected a mapping"),
    ],
)
def test_config_errors_name_the_key_path(data, message):
    with pytest.raises(ConfigError) as info:
        parse_limits(data)
    assert str(info.value).startswith(message)


def test_load_limits_names_the_file(tmp_path):
    path = tmp_path / "ratelimits.yml"
    path.write_text("orders:\n  - [10, 1]\n  - [250, x]\n")
    with pytest.raises(ConfigError) as info:
        load_limits(path)
    assert str(info.value) == (
        "ratelimits.yml: orders[1]: window must be a positive number, got 'x'"
    )
    path.write_text("orders: [10, 1\n")
    with pytest.raises(ConfigError, match=r"^ratelimits.yml: not valid YAML"):
        load_limits(path)


def test_a_limiter_validates_its_limits():
    with pytest.raises(ConfigError, match=r"quotes\[0\]: window"):
        InProcessRateLimiter({"quotes": [(1, -1)]})


def test_limiter_from_settings_picks_the_backend(settings):
    settings.REDIS_URL = None
    assert type(limiter_from_settings()) is InProcessRateLimiter
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # from_url does not connect yet
    assert type(limiter_from_settings()) is RedisRateLimiter


# --- Redis ----------------------------------------------------------------------------------


def test_redis_limiter_holds_the_per_second_limit(redis_client):
    lim = RedisRateLimiter(redis_client, {"quotes": [(3, 0.5)]})
    for _ in range(3):
        lim.acquire("quotes", block=False)
    with pytest.raises(RateLimited) as info:
        lim.acquire("quotes", block=False)
    assert 0 < info.value.retry_after <= 0.5
    lim.acquire("quotes", timeout=1.0)  # really sleeps until the first entry expires
    (key,) = lim.keys("quotes")
    assert key == "ratelimit:{quotes}:0.5"
    assert redis_client.zcard(key) <= 3
    assert 0 < redis_client.pttl(key) <= 1500  # window + 1 s: idle keys disappear


def test_redis_limiter_fails_fast_on_a_daily_cap(redis_client):
    lim = RedisRateLimiter(redis_client, {"orders": [(100, 1), (2, 86400)]})
    lim.acquire("orders")
    lim.acquire("orders")
    with pytest.raises(DailyCapExceeded) as info:
        lim.acquire("orders")
    assert info.value.cap == 2
    assert 86000 < info.value.retry_after <= 86400
    assert info.value.resets_at.tzinfo is IST
    assert lim.keys("orders") == ["ratelimit:{orders}:1", "ratelimit:{orders}:86400"]
    assert redis_client.zcard("ratelimit:{orders}:86400") == 2
    assert 0 < redis_client.pttl("ratelimit:{orders}:86400") <= 86_401_000


CHILD = textwrap.dedent(
    """
    import sys
    import redis
    from trading.dhan.errors import RateLimited
    from trading.dhan.ratelimit import RedisRateLimiter

    url, name = sys.argv[1], sys.argv[2]
    client = redis.Redis.from_url(url)
    lim = RedisRateLimiter(client, {"orders": [(5, 2)]})
    client.rpush("test:ready", name)
    assert client.blpop(["test:go"], timeout=20), "parent never said go"
    admitted = 0
    for _ in range(10):
        try:
            lim.acquire("orders", block=False)
        except RateLimited:
            continue
        admitted += 1
    print(admitted)
    """
)


def test_redis_limiter_shares_one_budget_across_processes(redis_client, redis_url):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, f"child{i}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        # Both children are connected and waiting: release them together, so both loops run
        # within one 2 s window (each takes milliseconds).
        for _ in children:
            assert redis_client.blpop(["test:ready"], timeout=20), "a child did not start"
        redis_client.rpush("test:go", "1", "1")
        results = [child.communicate(timeout=20) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    counts = [int(out) for out, _ in results]
    assert sum(counts) == 5, counts


def test_redis_down_falls_back_to_a_per_process_limit(caplog):
    import redis

    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=None)
    lim = RedisRateLimiter(client, {"quotes": [(1, 1)]})
    with caplog.at_level(logging.WARNING, logger="trading.dhan.ratelimit"):
        lim.acquire("quotes")
        with pytest.raises(RateLimited):
            lim.acquire("quotes", block=False)
    assert "Redis unavailable" in caplog.text
