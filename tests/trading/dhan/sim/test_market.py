"""The simulator's synthetic market: paths, pricing, microstructure, clock, candles, universe.

Pure tests: no database, no network, no wall clock. Every statistical check uses fixed seeds, so
it is deterministic; the bands are wide enough that a sane model passes with any seed.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from instruments.synthetic import INDICES, generate
from trading.dhan.feed_codec import (
    DepthLevel,
    FullTick,
    datetime_to_ltt,
    decode_frame,
    encode_full,
    ltt_to_datetime,
)
from trading.dhan.sim.market import (
    Candle,
    Market,
    MarketClock,
    Quote,
    black_scholes,
    black_scholes_greeks,
    configured_session,
    norm_cdf,
    smile_vol,
)
from trading.rules.market import IST

ALGO_YML = Path(__file__).resolve().parents[4] / "config" / "algo.yml"
DAY = date(2026, 11, 23)  # a Monday: NIFTY's weekly expires tomorrow, SENSEX's on Thursday
OPEN = datetime(2026, 11, 23, 9, 15, tzinfo=IST)
CLOSE = datetime(2026, 11, 23, 15, 30, tzinfo=IST)
ELEVEN = datetime(2026, 11, 23, 11, 0, tzinfo=IST)
INDEX_IDS = {spec.symbol: spec.security_id for spec in INDICES}


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 11, 23, hh, mm, ss, tzinfo=IST)


@pytest.fixture(scope="module")
def market():
    return Market(DAY, seed=11, strikes_each_side=20, weeklies=2, monthlies=2)


@pytest.fixture(scope="module")
def index_rows():
    return [row for row in generate(DAY, strikes_each_side=1) if row[1] == "I"]


def options(market, underlying, expiry_rank=0, option_type=None):
    specs = [market.contracts[sid] for sid in market.derivative_ids(underlying)]
    specs = [s for s in specs if s.instrument == "OPTIDX"]
    expiry = sorted({s.expiry for s in specs})[expiry_rank]
    chosen = [s for s in specs if s.expiry == expiry]
    if option_type:
        chosen = [s for s in chosen if s.option_type == option_type]
    return sorted(chosen, key=lambda s: (s.strike, s.option_type))


def on_tick(value, tick):
    return abs(value / tick - round(value / tick)) < 1e-6


# -- index paths -------------------------------------------------------------------------------


def test_the_same_seed_gives_identical_index_paths(index_rows):
    one = Market(DAY, seed=5, rows=index_rows)
    two = Market(DAY, seed=5, rows=index_rows)
    times = [OPEN + timedelta(seconds=s) for s in range(0, one.clock.session_seconds + 1, 97)]
    for symbol in ("NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"):
        assert [one.index_level(symbol, t) for t in times] == [
            two.index_level(symbol, t) for t in reversed(times)
        ][::-1]


def test_a_different_seed_gives_a_different_path(index_rows):
    one = Market(DAY, seed=5, rows=index_rows)
    two = Market(DAY, seed=6, rows=index_rows)
    assert one.index_level("NIFTY", ELEVEN) != two.index_level("NIFTY", ELEVEN)
    assert one.index_level("SENSEX", CLOSE) != two.index_level("SENSEX", CLOSE)


def test_each_index_opens_at_its_catalog_spot_and_is_found_by_symbol_or_id(index_rows):
    m = Market(DAY, seed=1, rows=index_rows)
    for spec in INDICES:
        assert m.index_level(spec.symbol, OPEN) == spec.spot
        assert m.index_level(spec.security_id, ELEVEN) == m.index_level(spec.symbol, ELEVEN)
    assert m.index_level("13", ELEVEN) == m.index_level("NIFTY", ELEVEN)


def test_index_levels_are_rounded_to_the_exchange_tick(index_rows):
    m = Market(DAY, seed=2, rows=index_rows)
    for s in range(0, m.clock.session_seconds, 61):
        t = OPEN + timedelta(seconds=s)
        assert on_tick(m.index_level("NIFTY", t), 0.05)
        assert on_tick(m.index_level("BANKNIFTY", t), 0.05)
        assert on_tick(m.index_level("SENSEX", t), 0.01)


def test_realised_volatility_of_a_session_is_within_a_sane_band(index_rows):
    for symbol, target in (("NIFTY", 0.13), ("BANKNIFTY", 0.16), ("SENSEX", 0.125)):
        vols = []
        for seed in range(6):
            m = Market(DAY, seed=seed, rows=index_rows)
            candles = m.intraday_candles(INDEX_IDS[symbol], 1, CLOSE)
            assert len(candles) == 375
            returns = [math.log(c.close / c.open) for c in candles]
            vols.append(math.sqrt(sum(r * r for r in returns) / len(returns) * 252 * 375))
        assert all(0.08 < v < 0.22 for v in vols), (symbol, vols)
        assert abs(sum(vols) / len(vols) - target) < 0.025, (symbol, vols)


def test_volatility_is_higher_after_the_open_and_before_the_close_than_at_midday(index_rows):
    first, middle, last = [], [], []
    for seed in range(6):
        m = Market(DAY, seed=seed, rows=index_rows)
        candles = m.intraday_candles(13, 1, CLOSE)
        sq = [math.log(c.close / c.open) ** 2 for c in candles]
        first.append(sum(sq[:20]) / 20)
        middle.append(sum(sq[150:230]) / 80)
        last.append(sum(sq[-20:]) / 20)
    assert sum(first) > 1.5 * sum(middle)
    assert sum(last) > 1.2 * sum(middle)


def test_a_trend_day_drifts_and_a_flat_day_does_not(index_rows):
    def day_returns(regime, trend_pct=0.015):
        out = []
        for seed in range(20):
            m = Market(DAY, seed=seed, regime=regime, trend_pct=trend_pct, rows=index_rows)
            out.append(m.index_level("NIFTY", CLOSE) / m.index_level("NIFTY", OPEN) - 1)
        return out

    up = day_returns("trend")
    down = day_returns("trend", trend_pct=-0.015)
    flat = day_returns("flat")
    assert sum(up) / len(up) > 0.01
    assert sum(1 for r in up if r > 0) >= 17
    assert sum(down) / len(down) < -0.01
    assert max(abs(r) for r in flat) < 0.01
    assert sum(abs(r) for r in flat) / len(flat) < 0.004


def test_a_regime_can_be_set_per_index(index_rows):
    m = Market(DAY, seed=3, regime="flat", regimes={"BANKNIFTY": "trend"}, rows=index_rows)
    assert m.regime("NIFTY") == "flat"
    assert m.regime("BANKNIFTY") == "trend"
    with pytest.raises(ValueError, match="regime"):
        Market(DAY, regime="sideways", rows=index_rows)


# -- Black-Scholes and the smile ---------------------------------------------------------------


def test_the_normal_cdf_matches_known_values():
    assert norm_cdf(0.0) == 0.5
    assert norm_cdf(1.959963984540054) == pytest.approx(0.975, abs=1e-12)
    assert norm_cdf(-1.0) == pytest.approx(0.15865525393145707, abs=1e-14)
    assert norm_cdf(-10.0) > 0.0  # erfc keeps the far tail


def test_black_scholes_matches_hulls_textbook_example():
    # Hull, Options, Futures and Other Derivatives: S=42, K=40, r=10 %, sigma=20 %, T=0.5.
    assert round(black_scholes("CE", 42, 40, 0.5, 0.10, 0.20), 2) == 4.76
    assert round(black_scholes("PE", 42, 40, 0.5, 0.10, 0.20), 2) == 0.81


def test_black_scholes_satisfies_put_call_parity():
    rng = random.Random(1)
    for _ in range(500):
        spot, strike = rng.uniform(10_000, 90_000), rng.uniform(10_000, 90_000)
        years, rate, vol = rng.uniform(1e-4, 1.0), rng.uniform(0.0, 0.1), rng.uniform(0.05, 0.6)
        call = black_scholes("CE", spot, strike, years, rate, vol)
        put = black_scholes("PE", spot, strike, years, rate, vol)
        assert call - put == pytest.approx(spot - strike * math.exp(-rate * years), abs=1e-6)


def test_an_expired_option_is_worth_its_intrinsic_value():
    assert black_scholes("CE", 26_100, 26_000, 0.0, 0.065, 0.13) == 100
    assert black_scholes("PE", 26_100, 26_000, -0.01, 0.065, 0.13) == 0


def test_greeks_match_finite_differences_of_the_price():
    spot, strike, years, rate, vol = 26_000.0, 26_200.0, 5 / 365, 0.065, 0.14

    def price(kind, s=spot, t=years, v=vol):
        return black_scholes(kind, s, strike, t, rate, v)

    for kind in ("CE", "PE"):
        g = black_scholes_greeks(kind, spot, strike, years, rate, vol)
        h = 1.0
        assert g.delta == pytest.approx((price(kind, s=spot + h) - price(kind, s=spot - h)) / 2)
        second = (price(kind, s=spot + h) - 2 * price(kind) + price(kind, s=spot - h)) / h**2
        assert g.gamma == pytest.approx(second, rel=1e-3)
        assert g.vega == pytest.approx(
            (price(kind, v=vol + 1e-4) - price(kind, v=vol - 1e-4)) / 2e-2
        )
        day = 1 / 365
        assert g.theta == pytest.approx(price(kind, t=years - day) - price(kind), rel=0.05)
        assert g.theta < 0
    call = black_scholes_greeks("CE", spot, strike, years, rate, vol)
    put = black_scholes_greeks("PE", spot, strike, years, rate, vol)
    assert call.delta - put.delta == pytest.approx(1.0)
    assert black_scholes_greeks("CE", spot, strike, 0.0, rate, vol).delta == 0.0


def test_the_markets_greeks_use_the_smile(market):
    spec = options(market, "NIFTY", 1, "CE")[20]
    g = market.greeks(spec.security_id, ELEVEN)
    assert 0.0 < g.delta < 1.0 and g.gamma > 0 and g.vega > 0 and g.theta < 0


def test_implied_vol_rises_away_from_the_money_with_a_put_skew():
    spot, years, atm = 26_000.0, 7 / 365, 0.14
    forward = spot * math.exp(0.065 * years)
    at_money = smile_vol(atm, spot, forward, years, 0.065)
    assert at_money == pytest.approx(atm)
    calls = [smile_vol(atm, spot, forward + k * 100, years, 0.065) for k in range(1, 12)]
    puts = [smile_vol(atm, spot, forward - k * 100, years, 0.065) for k in range(1, 12)]
    assert all(a < b for a, b in zip([at_money, *calls], calls, strict=False))
    assert all(a < b for a, b in zip([at_money, *puts], puts, strict=False))
    assert all(p > c for p, c in zip(puts, calls, strict=True))  # the put wing is steeper


def test_the_markets_smile_is_lowest_near_the_money(market):
    calls = options(market, "NIFTY", expiry_rank=1, option_type="CE")
    spot = market.index_level("NIFTY", ELEVEN)
    ivs = {s.strike: market.fair_value(s.security_id, ELEVEN)[1] for s in calls}
    atm = min(ivs, key=lambda k: abs(k - spot))
    assert ivs[atm - 500] > ivs[atm] and ivs[atm + 500] > ivs[atm]
    assert all(0.10 < iv < 0.40 for iv in ivs.values())


# -- option quotes -----------------------------------------------------------------------------


@pytest.mark.parametrize("underlying", ["NIFTY", "BANKNIFTY", "SENSEX"])
def test_premiums_are_monotone_in_strike(market, underlying):
    for rank in (0, 1):
        calls = [
            market.fair_value(s.security_id, ELEVEN)[0]
            for s in options(market, underlying, rank, "CE")
        ]
        puts = [
            market.fair_value(s.security_id, ELEVEN)[0]
            for s in options(market, underlying, rank, "PE")
        ]
        assert all(a >= b for a, b in itertools.pairwise(calls))
        assert all(a <= b for a, b in itertools.pairwise(puts))
        assert calls[0] > calls[-1] and puts[-1] > puts[0]


def test_atm_premiums_are_plausible_for_a_weekly_nifty_option(market):
    spot = market.index_level("NIFTY", OPEN)
    atm = [s for s in options(market, "NIFTY", 1) if s.strike == round(spot / 50) * 50]
    years = (atm[0].expiry - OPEN).total_seconds() / (365 * 86400)
    rough = 0.4 * spot * 0.14 * math.sqrt(years)  # the ATM approximation 0.4 S sigma sqrt(T)
    for spec in atm:
        assert market.fair_value(spec.security_id, OPEN)[0] == pytest.approx(rough, rel=0.35)


def test_every_quote_has_bid_below_fair_below_ask_and_sane_depth(market):
    for underlying in ("NIFTY", "SENSEX", "BANKNIFTY"):
        for spec in options(market, underlying, 0) + options(market, underlying, 1):
            q = market.quote(spec.exchange_segment, spec.security_id, ELEVEN)
            assert q.fair >= 0.05 and on_tick(q.fair, 0.05)
            assert q.ltp >= 0.05 and on_tick(q.ltp, 0.05)
            assert q.best_bid <= q.fair <= q.best_ask
            assert q.best_bid < q.best_ask
            assert len(q.depth) == 5
            bids = [lvl.bid_price for lvl in q.depth if lvl.bid_qty]
            asks = [lvl.ask_price for lvl in q.depth]
            assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
            assert asks == sorted(asks) and len(set(asks)) == len(asks)
            for lvl in q.depth:
                assert lvl.bid_qty % spec.lot == 0 and lvl.ask_qty % spec.lot == 0
                assert lvl.ask_qty > 0 and lvl.ask_orders > 0
                assert on_tick(lvl.ask_price, 0.05) and on_tick(lvl.bid_price, 0.05)
                if lvl.bid_qty == 0:
                    assert lvl.bid_price == 0.0  # an empty side is zeros, as on Dhan's feed
            assert q.ltq > 0 and q.ltq % spec.lot == 0
            assert q.volume % spec.lot == 0 and q.oi % spec.lot == 0
            assert q.low <= min(q.open, q.ltp) and q.high >= max(q.open, q.ltp)
            assert q.low <= q.atp <= q.high
            assert q.oi_day_low <= q.oi <= q.oi_day_high
            assert q.ltt <= ELEVEN


def test_the_spread_widens_for_far_otm_and_cheap_contracts(market):
    spot = market.index_level("NIFTY", ELEVEN)
    calls = options(market, "NIFTY", 1, "CE")
    atm = min(calls, key=lambda s: abs(s.strike - spot))
    far = calls[-1]
    q_atm = market.quote("NSE_FNO", atm.security_id, ELEVEN)
    q_far = market.quote("NSE_FNO", far.security_id, ELEVEN)
    assert q_far.fair < q_atm.fair
    assert (q_far.best_ask - q_far.best_bid) / q_far.fair > 2 * (
        (q_atm.best_ask - q_atm.best_bid) / q_atm.fair
    )


def test_volume_grows_through_the_day_and_oi_is_larger_near_the_money(market):
    spot = market.index_level("NIFTY", OPEN)
    calls = options(market, "NIFTY", 0, "CE")
    atm = min(calls, key=lambda s: abs(s.strike - spot))
    volumes = [
        market.quote("NSE_FNO", atm.security_id, at(9, 15) + timedelta(minutes=m)).volume
        for m in range(0, 376, 15)
    ]
    assert volumes == sorted(volumes) and volumes[-1] > volumes[0]
    oi_atm = market.quote("NSE_FNO", atm.security_id, ELEVEN).oi / atm.lot
    oi_far = market.quote("NSE_FNO", calls[-1].security_id, ELEVEN).oi / calls[-1].lot
    assert oi_atm > 5 * oi_far


def test_quotes_do_not_depend_on_query_order(market):
    ids = [s.security_id for s in options(market, "FINNIFTY", 0)][:30]
    fresh = Market(DAY, seed=11, strikes_each_side=20, weeklies=2, monthlies=2)
    times = [ELEVEN + timedelta(seconds=s) for s in range(0, 400, 37)]
    forward = [[market.quote("NSE_FNO", sid, t) for sid in ids] for t in times]
    backward = [
        [fresh.quote("NSE_FNO", sid, t) for sid in reversed(ids)][::-1] for t in reversed(times)
    ][::-1]
    assert forward == backward


def test_on_expiry_day_an_option_is_worth_intrinsic_after_its_expiry_moment():
    expiry_day = date(2026, 11, 24)  # NIFTY's weekly expires today at 14:30
    m = Market(expiry_day, seed=2, strikes_each_side=6, weeklies=1, monthlies=1)
    late = datetime(2026, 11, 24, 15, 0, tzinfo=IST)
    spot = m.index_level("NIFTY", late)
    todays = [
        m.contracts[s]
        for s in m.derivative_ids("NIFTY")
        if m.contracts[s].expiry is not None and m.contracts[s].expiry.date() == expiry_day
    ]
    assert todays
    for spec in todays:
        if spec.instrument != "OPTIDX":
            continue
        q = m.quote("NSE_FNO", spec.security_id, late)
        intrinsic = (
            max(spot - spec.strike, 0) if spec.option_type == "CE" else max(spec.strike - spot, 0)
        )
        assert q.fair == pytest.approx(max(intrinsic, 0.05), abs=0.051)
        assert q.best_bid <= q.fair <= q.best_ask


def test_an_index_quote_carries_the_days_ohlc_and_no_quantities(market):
    q = market.quote("IDX_I", 13, ELEVEN)
    assert q.ltp == market.index_level("NIFTY", ELEVEN)
    assert q.open == market.index_level("NIFTY", OPEN)
    assert q.low <= min(q.open, q.ltp) <= max(q.open, q.ltp) <= q.high
    assert q.ltt == ELEVEN and q.depth == () and q.volume == 0 and q.oi == 0
    assert q.prev_close > 0


def test_unknown_instruments_and_other_days_are_refused(market):
    with pytest.raises(KeyError):
        market.quote("NSE_FNO", 999_999_999, ELEVEN)
    with pytest.raises(KeyError):
        market.quote("BSE_FNO", options(market, "NIFTY")[0].security_id, ELEVEN)
    with pytest.raises(ValueError, match="not on this market's day"):
        market.quote("IDX_I", 13, ELEVEN + timedelta(days=1))
    with pytest.raises(ValueError, match="aware"):
        market.index_level("NIFTY", datetime(2026, 11, 23, 11, 0))


def test_advance_sets_the_default_time_for_queries(market):
    m = Market(DAY, seed=4, strikes_each_side=2, weeklies=1, monthlies=1)
    m.advance(ELEVEN)
    assert m.now == ELEVEN
    assert m.index_level("NIFTY") == m.index_level("NIFTY", ELEVEN)
    sid = m.derivative_ids("NIFTY")[0]
    assert m.quote("NSE_FNO", sid) == m.quote("NSE_FNO", sid, ELEVEN)


# -- clock -------------------------------------------------------------------------------------


def test_at_speed_60_the_session_plays_in_375_real_seconds():
    clock = MarketClock(DAY, speed=60)
    assert clock.real_session_seconds == 375
    assert clock.market_time(0) == OPEN
    assert clock.market_time(60) == at(10, 15)
    assert clock.market_time(375) == CLOSE
    assert clock.market_time(10_000) == CLOSE  # market time stops at the close
    assert clock.elapsed_for(at(12, 15)) == 180
    assert clock.session_second(at(9, 0)) == 0 and clock.session_second(at(16, 0)) == 22_500
    assert clock.is_open(at(15, 29, 59)) and not clock.is_open(CLOSE)


def test_a_clock_can_start_mid_session():
    clock = MarketClock(DAY, speed=100, start=time(14, 0))
    assert clock.market_time(9) == at(14, 15)
    assert clock.elapsed_for(at(14, 15)) == 9


# -- the session -------------------------------------------------------------------------------

LATE = (time(10, 0), time(16, 0))  # a session other than the project's: 6 h = 21,600 s


def test_the_default_session_is_the_configured_one():
    clock = MarketClock(DAY)
    assert clock.session == configured_session() == (time(9, 15), time(15, 30))
    assert (clock.open_at, clock.close_at, clock.start) == (OPEN, CLOSE, time(9, 15))
    assert clock.session_seconds == 22_500


def test_a_seed_gives_the_pinned_market_price_for_price():
    # Values computed before the session came from config/algo.yml (when the simulator wrote
    # 09:15-15:30 by hand): the same seed must still give the same day, price for price.
    m = Market(DAY, seed=7, regime="trend", strikes_each_side=5, weeklies=1, monthlies=1)
    seconds = (0, 1, 600, 11_250, 22_499, 22_500)
    levels = {
        symbol: [m.index_level(symbol, OPEN + timedelta(seconds=s)) for s in seconds]
        for symbol in ("NIFTY", "SENSEX")
    }
    assert levels == {
        "NIFTY": [26000.0, 26001.0, 25965.95, 26033.75, 26181.6, 26180.8],
        "SENSEX": [85000.0, 84992.9, 85144.57, 85790.45, 85640.62, 85642.78],
    }
    vix = [m.index_level("INDIA VIX", OPEN + timedelta(seconds=s)) for s in (0, 7_777, 22_500)]
    assert vix == [13.5, 13.45, 13.25]
    call = 35010  # NIFTY 26000 CE, the 24 Nov weekly
    assert m.contracts[call].trading_symbol == "NIFTY-Nov2026-26000-CE"
    assert m.quote("NSE_FNO", call, at(11, 0, 17)) == Quote(
        "NSE_FNO", call, 78.45, 455, at(11, 0, 17), 78.65, 1_193_725, 10_927_345, 10_927_345,
        10_334_220, 87.0, 120.4, 28.85, 78.45, 116.1, 35_360, 49_400,
        (
            DepthLevel(455, 2470, 3, 13, 78.4, 78.5),
            DepthLevel(3640, 2080, 19, 11, 78.35, 78.55),
            DepthLevel(325, 3900, 2, 21, 78.3, 78.6),
            DepthLevel(2925, 520, 16, 3, 78.25, 78.65),
            DepthLevel(1495, 3380, 8, 18, 78.2, 78.7),
        ),
        78.45, 0.14040473256131944,
    )  # fmt: skip
    assert m.last_trade("NSE_FNO", call, at(14, 5, 3)) == (173.05, at(14, 5, 3))
    candles = m.intraday_candles(call, 5, at(12, 0))
    assert len(candles) == 34
    assert candles[0] == Candle(OPEN, 87.0, 120.4, 79.5, 108.0, 248_690, 10_362_365)
    assert candles[17] == Candle(at(10, 40), 89.6, 95.1, 69.1, 69.85, 29_900, 10_841_220)
    nifty = m.intraday_candles(13, 15, at(16, 0))
    assert len(nifty) == 25
    assert nifty[0] == Candle(OPEN, 26000.0, 26058.35, 25960.1, 25995.9, 0, 0)
    assert nifty[-1] == Candle(at(15, 15), 26249.45, 26296.65, 26179.5, 26180.8, 0, 0)
    daily = m.daily_candles(13, date(2026, 11, 19), date(2026, 11, 24), at(15, 0))
    midnight = datetime(2026, 11, 23, tzinfo=IST)
    assert daily[-1] == Candle(midnight, 26000.0, 26187.1, 25840.55, 26126.8, 0, 0)


def test_a_clock_opens_clamps_and_closes_at_the_session_it_is_given():
    clock = MarketClock(DAY, speed=60, session=LATE)
    assert clock.session == LATE and clock.start == time(10, 0)
    assert (clock.open_at, clock.close_at) == (at(10, 0), at(16, 0))
    assert clock.session_seconds == 21_600 and clock.real_session_seconds == 360
    assert clock.market_time(0) == at(10, 0)
    assert clock.market_time(359) == at(15, 59)
    assert clock.market_time(10_000) == at(16, 0)  # market time stops at this close
    assert not clock.is_open(at(9, 59, 59)) and clock.is_open(at(10, 0))
    assert clock.is_open(at(15, 59, 59)) and not clock.is_open(at(16, 0))
    assert clock.session_second(at(9, 30)) == 0
    assert clock.session_second(at(15, 30)) == 19_800
    assert clock.session_second(at(17, 0)) == 21_600
    assert clock.at_second(60) == at(10, 1)
    assert MarketClock(DAY, speed=60, start=time(9, 30), session=LATE).elapsed_for(at(10, 0)) == 30


def test_a_market_spans_the_session_it_is_given(index_rows):
    m = Market(DAY, seed=7, rows=index_rows, session=LATE)
    assert (m.clock.open_at, m.clock.close_at) == (at(10, 0), at(16, 0))
    # Before the open everything sits at the opening print, stamped with the open.
    assert m.index_level("NIFTY", at(9, 30)) == m.index_level("NIFTY", at(10, 0)) == 26_000.0
    assert m.last_trade("IDX_I", 13, at(9, 30)) == (26_000.0, at(10, 0))
    assert m.quote("IDX_I", 13, at(9, 45)).ltt == at(10, 0)
    # The path runs on after 15:30 and stops at 16:00.
    assert m.index_level("NIFTY", at(15, 45)) != m.index_level("NIFTY", at(15, 30))
    assert m.index_level("NIFTY", at(16, 30)) == m.index_level("NIFTY", at(16, 0))
    assert m.last_trade("IDX_I", 13, at(16, 30))[1] == at(16, 0)
    candles = m.intraday_candles(13, 15, at(17, 0))
    assert len(candles) == 24  # 10:00-16:00 in 15 minutes
    assert (candles[0].start, candles[-1].start) == (at(10, 0), at(15, 45))
    assert candles[-1].close == m.index_level("NIFTY", at(16, 0))
    assert len(m.intraday_candles(13, 1, at(16, 0))) == 360
    today = m.daily_candles(13, DAY, DAY + timedelta(days=1), at(16, 0))[-1]
    assert (today.open, today.close) == (26_000.0, m.index_level("NIFTY", at(16, 0)))
    assert today.high == max(c.high for c in candles) and today.low == min(c.low for c in candles)


def test_an_option_trades_volume_and_oi_over_the_session_it_is_given():
    m = Market(DAY, seed=7, strikes_each_side=3, weeklies=1, monthlies=1, session=LATE)
    call = options(m, "NIFTY", 0, "CE")[3]
    early = m.quote("NSE_FNO", call.security_id, at(9, 30))
    assert early.ltt == at(10, 0)
    volumes = [
        m.quote("NSE_FNO", call.security_id, at(10, 0) + timedelta(minutes=k)).volume
        for k in range(0, 361, 30)
    ]
    assert volumes == sorted(volumes) and volumes[-1] > volumes[-2] > volumes[0]
    last = m.intraday_candles(call.security_id, 30, at(16, 0))[-1]
    assert last.start == at(15, 30) and last.volume > 0


def test_a_shorter_session_keeps_the_days_volatility(index_rows):
    # The per-second volatility is scaled to the session, so a 6 h day moves like a 6.25 h one.
    vols = []
    for seed in range(6):
        m = Market(DAY, seed=seed, rows=index_rows, session=LATE)
        returns = [math.log(c.close / c.open) for c in m.intraday_candles(13, 1, at(16, 0))]
        vols.append(math.sqrt(sum(r * r for r in returns) / len(returns) * 252 * 360))
    assert abs(sum(vols) / len(vols) - 0.13) < 0.025, vols


@pytest.mark.parametrize(
    ("session", "problem"),
    [
        ((time(15, 30), time(9, 15)), "session open 15:30:00 must be before its close 09:15:00"),
        ((time(10, 0), time(10, 0)), "session open 10:00:00 must be before its close"),
        ((time(10, 0),), "session must be (open, close) times of day"),
        (("09:15", "15:30"), "session open must be a time of day"),
        ((time(9, 15, tzinfo=IST), time(15, 30)), "session open must be a time of day"),
    ],
)
def test_a_bad_session_is_refused_naming_the_problem(session, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        MarketClock(DAY, session=session)


def test_the_session_comes_from_the_configured_algo_file(settings, tmp_path):
    text = ALGO_YML.read_text(encoding="utf-8")
    assert text.count('session_open: "09:15"') == text.count('session_close: "15:30"') == 1
    moved = text.replace('session_open: "09:15"', 'session_open: "09:00"')
    moved = moved.replace('session_close: "15:30"', 'session_close: "15:29"')
    (tmp_path / "algo.yml").write_text(moved, encoding="utf-8")
    settings.ALGO_CONFIG_FILE = tmp_path / "algo.yml"
    assert configured_session() == (time(9, 0), time(15, 29))
    m = Market(DAY, seed=1, strikes_each_side=1, weeklies=1, monthlies=1)
    assert (m.clock.open_at, m.clock.close_at) == (at(9, 0), at(15, 29))
    assert m.last_trade("IDX_I", 13, at(8, 0))[1] == at(9, 0)


def test_without_django_settings_the_session_is_the_repositorys_algo_yml():
    # A fresh interpreter with no settings module: the simulator reads config/algo.yml itself
    # and never imports Django to find out that settings are not there.
    code = (
        "import sys; from trading.dhan.sim.market import MarketClock; from datetime import date; "
        "clock = MarketClock(date(2026, 11, 23)); "
        "print(clock.open_at.time(), clock.close_at.time(), "
        "[m for m in sys.modules if m.split('.')[0] == 'django'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root = Path(__file__).resolve().parents[4]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["09:15:00", "15:30:00", "[]"]


def test_ltt_round_trips_through_the_feed_codec(market):
    sid = options(market, "NIFTY", 0)[10].security_id
    for t in (OPEN, at(9, 15, 1), ELEVEN, at(15, 29, 59), CLOSE):
        q = market.quote("NSE_FNO", sid, t)
        assert ltt_to_datetime(datetime_to_ltt(q.ltt)) == q.ltt
        assert q.ltt.tzinfo is not None and q.ltt <= t


def test_a_quote_encodes_into_a_full_packet_the_feed_hub_can_decode(market):
    spec = options(market, "SENSEX", 0)[20]
    q = market.quote(spec.exchange_segment, spec.security_id, ELEVEN)
    packet = encode_full(
        q.exchange_segment,
        q.security_id,
        ltp=q.ltp,
        ltt=q.ltt,
        ltq=q.ltq,
        atp=q.atp,
        volume=q.volume,
        total_sell_qty=q.total_sell_qty,
        total_buy_qty=q.total_buy_qty,
        oi=q.oi,
        oi_day_high=q.oi_day_high,
        oi_day_low=q.oi_day_low,
        open=q.open,
        close=q.prev_close,
        high=q.high,
        low=q.low,
        depth=q.depth,
    )
    (tick,) = decode_frame(packet, None)
    assert isinstance(tick, FullTick)
    assert tick.security_id == spec.security_id and ltt_to_datetime(tick.ltt) == q.ltt
    assert tick.ltp == pytest.approx(q.ltp, abs=0.005)
    assert tick.best_ask_price == pytest.approx(q.best_ask, abs=0.005)


# -- candles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [1, 5, 15, 25, 60])
def test_candles_are_consistent_with_the_ticks(market, interval):
    until = at(13, 7, 30)
    spec = options(market, "NIFTY", 0)[18]
    for sid in (13, 51, spec.security_id):
        candles = market.intraday_candles(sid, interval, until)
        assert candles[0].start == OPEN
        assert all(
            b.start - a.start == timedelta(minutes=interval) for a, b in itertools.pairwise(candles)
        )
        assert candles[-1].start <= until < candles[-1].start + timedelta(minutes=interval)
        for c in candles:
            assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
            assert c.volume >= 0
        q = market.quote("IDX_I" if sid in (13, 51) else spec.exchange_segment, sid, until)
        assert candles[-1].close == q.fair
        assert candles[0].open == q.open
        assert sum(c.volume for c in candles) == q.volume


def test_a_full_day_has_375_one_minute_candles(market):
    candles = market.intraday_candles(25, 1, CLOSE)
    assert len(candles) == 375
    assert candles[-1].start == at(15, 29)
    assert candles[-1].close == market.index_level("BANKNIFTY", CLOSE)


# -- earlier days' intraday candles ------------------------------------------------------------


def ist(day: date, hh: int = 0, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=IST)


def earlier_minutes(market, sid, day):
    return market.earlier_intraday_candles(sid, 1, ist(day), ist(day + timedelta(days=1)))


def daily_of(market, sid, day):
    (candle,) = market.daily_candles(sid, day, day + timedelta(days=1))
    return candle


@pytest.mark.parametrize("seed", [0, 11, 29])
def test_an_earlier_days_minutes_match_its_daily_candle_exactly(index_rows, seed):
    m = Market(DAY, seed=seed, rows=index_rows)
    for symbol in ("NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX"):
        sid, spec = INDEX_IDS[symbol], m.contracts[INDEX_IDS[symbol]]
        for day in (date(2026, 11, 20), date(2026, 11, 19), date(2026, 10, 7), date(2026, 3, 2)):
            daily = daily_of(m, sid, day)
            minutes = earlier_minutes(m, sid, day)
            assert len(minutes) == 375
            assert [c.start for c in minutes] == [
                ist(day, 9, 15) + timedelta(minutes=k) for k in range(375)
            ]
            assert minutes[0].open == daily.open and minutes[-1].close == daily.close
            assert max(c.high for c in minutes) == daily.high
            assert min(c.low for c in minutes) == daily.low
            for c in minutes:
                assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
                assert all(on_tick(v, spec.tick) for v in (c.open, c.high, c.low, c.close))
                assert (c.volume, c.oi) == (0, 0)
            # One path: each minute closes where the next opens, as on the trading day.
            assert all(a.close == b.open for a, b in itertools.pairwise(minutes))


def test_a_session_too_short_to_wander_still_matches_the_daily_candle(index_rows):
    # Two seconds leave one point between the open and the close, which cannot make both the
    # high and the low: the day's extremes are set on its one minute.
    m = Market(DAY, seed=1, rows=index_rows, session=(time(9, 15), time(9, 15, 2)))
    day = date(2026, 11, 20)
    (minute,) = earlier_minutes(m, 13, day)
    daily = daily_of(m, 13, day)
    assert (minute.open, minute.high, minute.low, minute.close) == (
        daily.open, daily.high, daily.low, daily.close,
    )  # fmt: skip
    assert minute.start == ist(day, 9, 15)


def test_earlier_minutes_move_like_the_trading_days(index_rows):
    # Each day is stretched onto its own daily range, so single days vary; the typical day
    # keeps the index's volatility and the U-shaped profile of the trading day.
    m = Market(DAY, seed=4, rows=index_rows)
    candles = m.earlier_intraday_candles(13, 1, ist(date(2026, 8, 26)), ist(DAY))
    days: dict[date, list[Candle]] = {}
    for c in candles:
        days.setdefault(c.start.date(), []).append(c)
    vols, first, middle = [], 0.0, 0.0
    for minutes in days.values():
        sq = [math.log(c.close / c.open) ** 2 for c in minutes]
        vols.append(math.sqrt(sum(sq) / len(sq) * 252 * 375))
        first += sum(sq[:20]) / 20
        middle += sum(sq[150:230]) / 80
    vols.sort()
    assert len(vols) > 50
    assert 0.09 < vols[len(vols) // 2] < 0.17, vols
    assert first > 1.5 * middle


def test_earlier_minutes_are_the_same_whatever_was_asked_before_and_in_what_order(index_rows):
    days = [date(2026, 11, 16) + timedelta(days=k) for k in range(5)]
    one = Market(DAY, seed=7, rows=index_rows)
    forward = one.earlier_intraday_candles(25, 1, ist(days[0], 9, 15), ist(DAY))
    two = Market(DAY, seed=7, rows=index_rows)
    two.earlier_intraday_candles(25, 5, ist(date(2026, 9, 1)), ist(date(2026, 11, 1)))
    backward = [c for day in reversed(days) for c in earlier_minutes(two, 25, day)]
    assert len(forward) == 5 * 375
    assert forward == sorted(backward, key=lambda c: c.start)
    # A part of a day is that part of the day.
    noon, half_past = ist(days[2], 12, 0), ist(days[2], 12, 30)
    part = two.earlier_intraday_candles(25, 1, noon, half_past)
    assert [c.start for c in part] == [noon + timedelta(minutes=k) for k in range(30)]
    assert part == [c for c in forward if noon <= c.start < half_past]
    other = Market(DAY, seed=8, rows=index_rows)
    assert earlier_minutes(other, 25, days[2]) != earlier_minutes(one, 25, days[2])


@pytest.mark.parametrize(("interval", "count"), [(5, 75), (15, 25), (25, 15), (60, 7)])
def test_earlier_candles_of_an_interval_group_the_minutes_from_the_open(
    index_rows, interval, count
):
    m = Market(DAY, seed=3, rows=index_rows)
    day = date(2026, 11, 18)
    minutes = earlier_minutes(m, 13, day)
    candles = m.earlier_intraday_candles(13, interval, ist(day), ist(day + timedelta(days=1)))
    assert len(candles) == count
    for k, c in enumerate(candles):
        group = minutes[k * interval : (k + 1) * interval]
        assert c == Candle(
            ist(day, 9, 15) + timedelta(minutes=k * interval),
            group[0].open,
            max(g.high for g in group),
            min(g.low for g in group),
            group[-1].close,
            0,
            0,
        )
    # The trading day's candles of that interval start at the same times of day.
    today = m.intraday_candles(13, interval, CLOSE)
    assert [c.start.time() for c in today] == [c.start.time() for c in candles]


def test_earlier_days_skip_weekends_and_holidays_as_the_daily_history_does(index_rows):
    wednesday = date(2026, 11, 25)  # the day after a holiday of config/algo.yml (24 Nov)
    m = Market(wednesday, seed=2, rows=generate(wednesday, strikes_each_side=1))
    assert date(2026, 11, 24) in m.holidays
    candles = m.earlier_intraday_candles(13, 60, ist(date(2026, 11, 19)), ist(wednesday))
    days = sorted({c.start.date() for c in candles})
    assert days == [date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 23)]
    daily = m.daily_candles(13, date(2026, 11, 19), wednesday)
    assert [c.start.date() for c in daily] == days
    # A calendar of one's own: the market skips the holidays it is given.
    mine = Market(DAY, seed=2, rows=index_rows, holidays={date(2026, 11, 19)})
    candles = mine.earlier_intraday_candles(13, 60, ist(date(2026, 11, 18)), ist(DAY))
    assert sorted({c.start.date() for c in candles}) == [date(2026, 11, 18), date(2026, 11, 20)]


@pytest.mark.parametrize(
    ("trading_day", "previous"),
    [(DAY, date(2026, 11, 20)), (date(2026, 11, 25), date(2026, 11, 23))],
    ids=["monday-after-the-weekend", "wednesday-after-a-holiday"],
)
def test_the_last_earlier_day_closes_at_the_trading_days_previous_close(trading_day, previous):
    m = Market(trading_day, seed=5, rows=generate(trading_day, strikes_each_side=1))
    opens = ist(trading_day, 9, 15)
    for symbol in ("NIFTY", "SENSEX"):
        sid = INDEX_IDS[symbol]
        last = m.earlier_intraday_candles(sid, 1, opens - timedelta(days=7), opens)[-1]
        assert last.start == ist(previous, 15, 29)
        assert last.close == m.quote("IDX_I", sid, opens).prev_close


def test_earlier_days_end_before_the_trading_date_and_derivatives_have_none(market):
    call = options(market, "NIFTY", 0, "CE")[10].security_id
    week = (ist(DAY - timedelta(days=7)), ist(DAY, 15, 30))
    candles = market.earlier_intraday_candles(13, 1, *week)
    assert candles and candles[-1].start < OPEN
    assert market.earlier_intraday_candles(call, 1, *week) == []
    with pytest.raises(KeyError):
        market.earlier_intraday_candles(999_999_999, 1, *week)
    with pytest.raises(ValueError, match="interval"):
        market.earlier_intraday_candles(13, 0, *week)
    with pytest.raises(ValueError, match="aware"):
        market.earlier_intraday_candles(13, 1, datetime(2026, 11, 20), week[1])


def test_a_long_history_keeps_few_days_in_memory(index_rows):
    m = Market(DAY, seed=1, rows=index_rows)
    for sid in (13, 25):
        candles = m.earlier_intraday_candles(sid, 60, ist(date(2026, 8, 25)), ist(DAY))
        assert len(candles) == 7 * len({c.start.date() for c in candles}) > 100
    assert len(m._day_minutes) <= Market._DAY_CACHE


# -- contract universe -------------------------------------------------------------------------


def test_the_contract_universe_matches_the_synthetic_scrip_master():
    rows = list(generate(DAY, strikes_each_side=5, weeklies=2, monthlies=2))
    m = Market(DAY, seed=0, strikes_each_side=5, weeklies=2, monthlies=2)
    assert m.scrip_master_rows() == rows
    fno = [r for r in rows if r[3] in ("OPTIDX", "FUTIDX")]
    assert len(fno) == len(m.derivative_ids()) and len(fno) > 100
    for row in fno:
        spec = m.contracts[int(row[2])]
        assert spec.exchange_segment == f"{row[0]}_FNO"
        assert spec.trading_symbol == row[5]
        assert spec.lot == int(float(row[6]))
        assert spec.expiry.strftime("%Y-%m-%d %H:%M:%S") == row[8]
        assert spec.option_type == row[10]
        if row[3] == "OPTIDX":
            assert spec.strike == float(row[9])
    assert m.contracts[13].exchange_segment == "IDX_I"
    assert m.contracts[51].tick == 0.01
    lots = {s.symbol: s.lot for s in INDICES}
    for sid in m.derivative_ids():
        spec = m.contracts[sid]
        assert spec.lot == lots[spec.underlying]
        expected_close = time(15, 30) if spec.exchange_segment == "BSE_FNO" else time(14, 30)
        assert spec.expiry.timetz().replace(tzinfo=None) == expected_close


def test_a_market_can_be_built_from_the_exact_rows_the_simulator_served():
    rows = list(generate(DAY, strikes_each_side=3, weeklies=1, monthlies=1))
    m = Market(DAY, seed=0, rows=rows)
    assert sorted(m.contracts) == sorted(int(r[2]) for r in rows)


def test_futures_trade_at_a_premium_to_the_index(market):
    futures = [market.contracts[s] for s in market.derivative_ids("NIFTY")]
    future = next(s for s in futures if s.instrument == "FUTIDX")
    q = market.quote("NSE_FNO", future.security_id, ELEVEN)
    assert q.fair > market.index_level("NIFTY", ELEVEN)
    assert q.best_bid <= q.fair <= q.best_ask


# -- throughput smoke (not a timing assertion) -------------------------------------------------


def test_a_hundred_thousand_quotes_complete():
    m = Market(DAY, seed=9)
    ids = [(m.contracts[s].exchange_segment, s) for s in m.derivative_ids()]
    count = 0
    second = 0
    while count < 100_000:
        t = at(10, 0) + timedelta(seconds=second)
        for segment, sid in ids[:2_000]:
            m.quote(segment, sid, t)
            count += 1
        second += 1
    assert count == 100_000


def test_last_trade_agrees_with_the_full_quote(market):
    specs = options(market, "BANKNIFTY", 0)[::7]
    for second in range(0, 300, 13):
        t = at(12, 0) + timedelta(seconds=second)
        for spec in specs:
            ltp, ltt = market.last_trade(spec.exchange_segment, spec.security_id, t)
            q = market.quote(spec.exchange_segment, spec.security_id, t)
            assert (ltp, ltt) == (q.ltp, q.ltt)
    assert market.last_trade("IDX_I", 25, ELEVEN) == (market.index_level(25, ELEVEN), ELEVEN)


def test_liquid_contracts_trade_more_often_than_far_otm_ones(market):
    spot = market.index_level("NIFTY", ELEVEN)
    calls = options(market, "NIFTY", 0, "CE")
    atm = min(calls, key=lambda s: abs(s.strike - spot))

    def trades(spec):
        times = [ELEVEN + timedelta(seconds=s) for s in range(600)]
        return sum(1 for t in times if market.last_trade("NSE_FNO", spec.security_id, t)[1] == t)

    assert trades(atm) > 3 * trades(calls[-1]) > 0


def test_the_market_module_is_pure():
    # A fresh interpreter: pytest-django has already imported Django into this one.
    code = (
        "import sys, trading.dhan.sim.market; "
        "banned = ('django', 'redis', 'socket', 'websocket'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in banned]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[4]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_index_futures_quote_a_tight_spread():
    market = Market(date(2026, 11, 24), seed=1)
    future = next(s for s in market.contracts.values() if s.instrument == "FUTIDX")
    quote = market.quote(future.exchange_segment, future.security_id)
    assert 0 < quote.best_ask - quote.best_bid <= 3 * future.tick
