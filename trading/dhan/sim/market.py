"""A seedable synthetic market for the local Dhan simulator (issue 3). Pure: time is an argument.

One ``Market`` is one trading day. Everything it returns is a deterministic function of
``(seed, regime, contract universe, market time)``: two markets built alike answer alike, in any
query order, so a test can ask for "a trending day" and get the same one every run.

Model, in the units the rest of the project uses (prices in rupees, times IST-aware datetimes):

* Clock (``MarketClock``): the session is the project's (``market.session_open`` and
  ``session_close`` in ``config/algo.yml``, 09:15-15:30 IST = 22,500 market seconds) unless
  one is passed in. Real elapsed seconds map to market time at ``speed`` (60 plays the
  09:15-15:30 session in 375 real seconds). Market time is what goes into every tick's LTT
  (``feed_codec.datetime_to_ltt``).
* Index paths: log-price random walk stepped once per market second, seeded per (seed, symbol).
  Annualised volatility per index (``ANNUAL_VOL``, 12.5-17%) over a trading year of 252
  sessions, scaled by a U-shaped time-of-day profile (busy after the open and before the
  close, normalised so the day's variance is unchanged whatever the session's length).
  Regimes: ``random`` (no drift), ``trend`` (log drift of ``trend_pct`` over the session, sign
  = direction) and ``flat`` (mean reversion to the open, half-life ~17 min, so the close stays
  near the open). Levels are rounded to the index tick (0.05 NSE, 0.01 BSE) on output only;
  the walk itself is unrounded.
* Days before the trading date (indices only): a seeded daily history walking back from the
  previous close over the trading days of the calendar (weekdays, less ``holidays``), and for
  each day, on demand, a per-second path of the same session bridged from the day's open to its
  close and stretched onto its high and low (``earlier_intraday_candles``).
* Options: European Black-Scholes on the rounded index level, r = 6.5 %, no dividends, time to
  expiry ACT/365 from the contract's expiry moment in the scrip master (14:30 NSE, 15:30 BSE)
  quantised to the market minute (so prices only depend on (level, minute) and are cacheable).
  Volatility smile in standardised moneyness x = ln(K/F) / (atm_vol * sqrt(T)):
  ``iv = atm_vol * (1 + L tanh(c x^2 / L))`` (~ c x^2 near the money, saturating at (1 + L) x
  ATM, L = 1) with c larger on the put wing (x < 0) than on the call wing. Premiums are
  rounded to the 0.05 option tick, floor 0.05.
* Microstructure: a per-contract liquidity weight (ATM and near expiries liquid, far OTM thin)
  drives spread width, depth sizes, trade frequency, day volume and OI. Per-second randomness
  (trade or no trade, traded quantity, depth sizes) comes from a counter-based hash of
  (seed, security id, second), not from a shared RNG stream, so it is order-independent.
  Cumulative volume and OI are closed-form monotone functions of time (O(1) per query).

How the simulator's servers use it::

    market = Market(today, seed=7, speed=60, regime="trend")
    write_compact(out, iter(market.scrip_master_rows()))       # the catalog it serves
    t = market.clock.market_time(monotonic() - started)        # the loop owns the real clock
    market.advance(t)                                          # then query without t:
    ltp, ltt = market.last_trade("NSE_FNO", sid)               # ticker packets (cheap)
    q = market.quote("NSE_FNO", sid)                           # quote/full packets, REST quote
    market.intraday_candles(sid, 5, t)                         # /charts/intraday: the day,
    market.earlier_intraday_candles(sid, 5, from_t, to_t)      # and the days before it
    market.fair_value(sid), market.greeks(sid)                 # /optionchain
"""

from __future__ import annotations

import math
import random
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Literal

from instruments.synthetic import INDICES, OTHER_INDICES, generate
from trading.dhan.feed_codec import DepthLevel, segment_name
from trading.rules.market import IST

# ---------------------------------------------------------------------------------------------
# Constants (units in the names or the comments)

TRADING_DAYS_PER_YEAR = 252  # index volatility is quoted per trading year
SECONDS_PER_YEAR = 365 * 86_400  # option time to expiry: ACT/365 calendar time
RISK_FREE_RATE = 0.065  # continuously compounded, roughly the Indian T-bill yield
MIN_PREMIUM = 0.05  # exchanges do not quote an option below one tick
SMILE_CALL_CURVATURE = 0.035  # iv ~ atm * (1 + c * x^2), x = standardised log-moneyness
SMILE_PUT_CURVATURE = 0.06  # steeper on the put wing: the index put skew
# The lift saturates (tanh) at +100 % (2x ATM): an unbounded quadratic smile in x makes far
# OTM premiums non-monotone in strike (a static arbitrage) on short expiries.
SMILE_MAX_LIFT = 1.0
IMPLIED_OVER_REALISED = 1.08  # ATM implied vol sits a little above the path's realised vol
FLAT_HALF_LIFE_SECONDS = 1_050.0  # mean reversion of the flat regime (~17.5 market minutes)
DEFAULT_TREND_PCT = 0.015  # a trending day moves ~1.5 % open to close

# Annualised volatility of each index path (decimal fraction). INDIA VIX is a level in vol
# points that mean-reverts (flat regime always); its "volatility" is that of the VIX itself.
ANNUAL_VOL: Mapping[str, float] = {
    "NIFTY": 0.13,
    "BANKNIFTY": 0.16,
    "FINNIFTY": 0.14,
    "MIDCPNIFTY": 0.17,
    "NIFTYNXT50": 0.16,
    "SENSEX": 0.125,
    "BANKEX": 0.16,
    "INDIA VIX": 0.9,
}
VIX_LEVEL = 13.5
DEFAULT_VOL = 0.15

Regime = Literal["random", "trend", "flat"]
REGIMES: tuple[str, ...] = ("random", "trend", "flat")

_IDX_SEGMENT = "IDX_I"
_M64 = (1 << 64) - 1
_INV_2_64 = 1.0 / 18446744073709551616.0
_SQRT1_2 = math.sqrt(0.5)


# ---------------------------------------------------------------------------------------------
# Maths


def norm_cdf(x: float) -> float:
    """Standard normal CDF via math.erfc (accurate in both tails, no scipy)."""
    return 0.5 * math.erfc(-x * _SQRT1_2)


def black_scholes(
    option_type: str, spot: float, strike: float, years: float, rate: float, vol: float
) -> float:
    """European option value (no dividends). ``option_type`` "CE"/"C" call, "PE"/"P" put.

    ``years`` <= 0 (expired) or ``vol`` <= 0 gives intrinsic value against the discounted strike
    (plain intrinsic when expired).
    """
    call = option_type[0] == "C"
    if years <= 0.0 or vol <= 0.0:
        disc_strike = strike * math.exp(-rate * max(years, 0.0))
        return max(spot - disc_strike, 0.0) if call else max(disc_strike - spot, 0.0)
    sd = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sd
    d2 = d1 - sd
    disc_strike = strike * math.exp(-rate * years)
    if call:
        return spot * norm_cdf(d1) - disc_strike * norm_cdf(d2)
    return disc_strike * norm_cdf(-d2) - spot * norm_cdf(-d1)


@dataclass(frozen=True, slots=True)
class Greeks:
    """Black-Scholes sensitivities in the units option chains quote them.

    delta per rupee of index, gamma per rupee per rupee, theta in rupees per calendar day
    (negative for a long option), vega in rupees per 1 volatility point (0.01).
    """

    delta: float
    gamma: float
    theta: float
    vega: float


def black_scholes_greeks(
    option_type: str, spot: float, strike: float, years: float, rate: float, vol: float
) -> Greeks:
    """Greeks of a European option (no dividends); all zero but delta once expired."""
    call = option_type[0] == "C"
    if years <= 0.0 or vol <= 0.0:
        itm = spot > strike if call else spot < strike
        return Greeks((1.0 if call else -1.0) if itm else 0.0, 0.0, 0.0, 0.0)
    root = math.sqrt(years)
    sd = vol * root
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sd
    d2 = d1 - sd
    pdf = math.exp(-0.5 * d1 * d1) / math.sqrt(2.0 * math.pi)
    disc_strike = strike * math.exp(-rate * years)
    decay = -spot * pdf * vol / (2.0 * root)
    if call:
        delta = norm_cdf(d1)
        theta = decay - rate * disc_strike * norm_cdf(d2)
    else:
        delta = norm_cdf(d1) - 1.0
        theta = decay + rate * disc_strike * norm_cdf(-d2)
    return Greeks(delta, pdf / (spot * sd), theta / 365.0, spot * pdf * root / 100.0)


def smile_vol(atm_vol: float, spot: float, strike: float, years: float, rate: float) -> float:
    """Implied vol of ``strike``: rises with |standardised log-moneyness|, faster for puts."""
    if years <= 0.0:
        return atm_vol
    x = math.log(strike / (spot * math.exp(rate * years))) / (atm_vol * math.sqrt(years))
    curvature = SMILE_PUT_CURVATURE if x < 0 else SMILE_CALL_CURVATURE
    return atm_vol * (1.0 + SMILE_MAX_LIFT * math.tanh(curvature * x * x / SMILE_MAX_LIFT))


def round_to_tick(value: float, tick: float) -> float:
    """Nearest multiple of ``tick``, cleaned of binary noise (26000.050000000003 -> 26000.05)."""
    return round(round(value / tick) * tick, 2)


def _mix(x: int) -> int:
    # splitmix64 finaliser: a counter-based hash, so per-second randomness does not depend on
    # the order in which the simulator happens to ask for contracts.
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _unit(key: int, a: int, b: int = 0) -> float:
    """Deterministic uniform in [0, 1) from (key, a, b)."""
    return _mix(_mix(key ^ a) ^ b) * _INV_2_64


# ---------------------------------------------------------------------------------------------
# Session

Session = tuple[time, time]
"""A trading session: (open, close) as IST times of day, open before close."""

# The session's source when no Django settings are configured (a plain script, a bench): the
# repository's algo config, the file settings.ALGO_CONFIG_FILE names by default.
_REPOSITORY_ALGO_CONFIG = Path(__file__).resolve().parents[3] / "config" / "algo.yml"


def configured_session() -> Session:
    """The project's session, ``market.session_open`` and ``session_close`` of the algo config:
    the file ``settings.ALGO_CONFIG_FILE`` when Django settings are configured, else the
    repository's ``config/algo.yml``. The file alone, without the operator's stored overrides:
    the simulator never touches the database. Each file is read once per process."""
    return _calendar_in(_configured_algo_file())[0]


def configured_holidays() -> frozenset[date]:
    """The project's exchange holidays, ``market.holidays`` of the same file as
    :func:`configured_session`: the weekdays the market's history skips."""
    return _calendar_in(_configured_algo_file())[1]


def _configured_algo_file() -> Path:
    # Settings can only be configured once django.conf is imported: looking it up instead of
    # importing it keeps a plain script's market free of Django.
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None)
    configured = settings is not None and settings.configured
    return Path(settings.ALGO_CONFIG_FILE) if configured else _REPOSITORY_ALGO_CONFIG


@cache
def _calendar_in(file: Path) -> tuple[Session, frozenset[date]]:
    # Imported here: the loader brings pydantic (and, through the standard library, sockets);
    # the market model itself stays pure, and only this file read needs the loader.
    from trading.config.load import load_algo_file

    market = load_algo_file(file).market
    return (market.session_open, market.session_close), market.holidays


@cache
def _profile(session_seconds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-second volatility multipliers of a session (mean square 1, so the day's variance
    does not depend on the session's length) and its cumulative volume curve (0 -> 1, one
    point per second boundary: ``session_seconds + 1`` of them).

    U-shape: +130 % of the base level decaying over the first ~5 % of the session (~20 min of
    09:15-15:30), +60 % building over the last ~7 % (~25 min). Volume intensity follows
    variance (busy when the market moves).
    """
    raw = []
    for s in range(session_seconds):
        u = (s + 0.5) / session_seconds
        raw.append(0.8 + 1.3 * math.exp(-u / 0.05) + 0.6 * math.exp(-(1.0 - u) / 0.07))
    norm = math.sqrt(sum(m * m for m in raw) / session_seconds)
    vol = [m / norm for m in raw]
    cum, total = [0.0], 0.0
    for m in vol:
        total += m * m
        cum.append(total)
    return tuple(vol), tuple(c / total for c in cum)


# ---------------------------------------------------------------------------------------------
# Clock


class MarketClock:
    """Maps real elapsed seconds <-> simulated market time on ``trading_date``.

    ``session`` is (open, close), IST times of day; default :func:`configured_session`.
    ``start`` is the market time at real elapsed 0 (default the open). Market time stops at the
    close: elapsed seconds past the session map to the close. Read-only once built.
    """

    __slots__ = (
        "close_at",
        "open_at",
        "session",
        "session_seconds",
        "speed",
        "start",
        "start_at",
        "trading_date",
    )

    def __init__(
        self,
        trading_date: date,
        speed: float = 1.0,
        start: time | None = None,
        *,
        session: Session | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.session = _checked_session(configured_session() if session is None else session)
        self.trading_date = trading_date
        self.speed = speed
        self.start = self.session[0] if start is None else start
        self.open_at = datetime.combine(trading_date, self.session[0], tzinfo=IST)
        self.close_at = datetime.combine(trading_date, self.session[1], tzinfo=IST)
        self.start_at = datetime.combine(trading_date, self.start, tzinfo=IST)
        # Whole seconds: the paths step once a second (09:15-15:30 = 22,500).
        self.session_seconds = int((self.close_at - self.open_at).total_seconds())

    def __repr__(self) -> str:
        return (
            f"MarketClock({self.trading_date}, speed={self.speed:g}, start={self.start}, "
            f"session={self.session[0]}-{self.session[1]})"
        )

    @property
    def real_session_seconds(self) -> float:
        """Real seconds the whole session takes at this speed (22,500 / speed for 09:15-15:30)."""
        return self.session_seconds / self.speed

    def market_time(self, elapsed: float) -> datetime:
        """Market time after ``elapsed`` real seconds, clamped to the close."""
        moment = self.start_at + timedelta(seconds=elapsed * self.speed)
        return min(moment, self.close_at)

    def elapsed_for(self, moment: datetime) -> float:
        """Real seconds after the start at which market time reaches ``moment`` (may be < 0)."""
        return (moment - self.start_at).total_seconds() / self.speed

    def session_second(self, moment: datetime) -> int:
        """Whole market seconds since the open, clamped to [0, session_seconds]."""
        if moment.tzinfo is None:
            raise ValueError("market time must be an aware datetime (naive times are ambiguous)")
        seconds = (moment - self.open_at).total_seconds()
        if seconds <= 0:
            # Before the open (pre-open, or an earlier date) everything sits at the opening print.
            return 0
        return min(int(seconds), self.session_seconds)

    def is_open(self, moment: datetime) -> bool:
        return self.open_at <= moment < self.close_at

    def at_second(self, second: int) -> datetime:
        """Market datetime ``second`` seconds after the open."""
        return self.open_at + timedelta(seconds=second)


def _checked_session(session: Session) -> Session:
    """``session`` when it is two naive times of day, the open before the close; else a
    ValueError naming the problem."""
    try:
        open_, close = session
    except (TypeError, ValueError):
        raise ValueError(f"session must be (open, close) times of day, got {session!r}") from None
    for name, moment in (("open", open_), ("close", close)):
        if not isinstance(moment, time) or moment.tzinfo is not None:
            raise ValueError(
                f"session {name} must be a time of day without a zone (IST), got {moment!r}"
            )
    if open_ >= close:
        raise ValueError(f"session open {open_} must be before its close {close}")
    return open_, close


# ---------------------------------------------------------------------------------------------
# Index paths


class IndexPath:
    """One index's level per market second, generated lazily in order, deterministically.

    Stores the unrounded level per second plus the running high/low and the seconds where they
    were set (option day highs/lows are priced at those seconds).
    """

    __slots__ = (
        "_arg_hi",
        "_arg_lo",
        "_drift",
        "_hi",
        "_kappa",
        "_lo",
        "_rng",
        "_sigma",
        "_vol_profile",
        "_x",
        "levels",
        "open",
        "prev_close",
        "regime",
        "rounded",
        "security_id",
        "symbol",
        "tick",
    )

    def __init__(
        self,
        symbol: str,
        security_id: int,
        open_level: float,
        tick: float,
        annual_vol: float,
        regime: str,
        seed: int,
        trend_pct: float = DEFAULT_TREND_PCT,
        *,
        session_seconds: int,
    ) -> None:
        if regime not in REGIMES:
            raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")
        self.symbol, self.security_id, self.tick, self.regime = symbol, security_id, tick, regime
        # A str seed is hashed with SHA-512 by random.seed: stable across runs and platforms.
        self._rng = random.Random(f"{seed}:{symbol}")
        self.open = open_level
        # Yesterday's close: the open minus an overnight gap of ~0.4 % (one s.d.).
        self.prev_close = round_to_tick(open_level / math.exp(self._rng.gauss(0.0, 0.004)), tick)
        # Per second: a trading year is 252 sessions of ``session_seconds`` each, and the trend
        # spreads its drift over the session, so a day's move does not depend on its length.
        self._sigma = annual_vol / math.sqrt(TRADING_DAYS_PER_YEAR * session_seconds)
        self._drift = trend_pct / session_seconds if regime == "trend" else 0.0  # log
        self._vol_profile = _profile(session_seconds)[0]
        self._kappa = math.log(2) / FLAT_HALF_LIFE_SECONDS if regime == "flat" else 0.0
        self._x = 0.0  # log(level / open)
        self.levels = [open_level]
        self.rounded = [round_to_tick(open_level, tick)]  # what ticks carry, made once
        self._hi = self._lo = open_level
        self._arg_hi = [0]
        self._arg_lo = [0]

    def _extend(self, second: int) -> None:
        levels, rounded, arg_hi, arg_lo = self.levels, self.rounded, self._arg_hi, self._arg_lo
        tick = self.tick
        gauss, sigma, drift, kappa = self._rng.gauss, self._sigma, self._drift, self._kappa
        x, hi, lo, open_level = self._x, self._hi, self._lo, self.open
        profile = self._vol_profile
        for s in range(len(levels) - 1, second):
            step_sigma = sigma * profile[s]
            # Ito correction keeps E[level] on the drift line; kappa pulls log-level to 0.
            x += drift - kappa * x - 0.5 * step_sigma * step_sigma + step_sigma * gauss(0.0, 1.0)
            level = open_level * math.exp(x)
            levels.append(level)
            rounded.append(round(round(level / tick) * tick, 2))
            if level > hi:
                hi = level
                arg_hi.append(s + 1)
            else:
                arg_hi.append(arg_hi[-1])
            if level < lo:
                lo = level
                arg_lo.append(s + 1)
            else:
                arg_lo.append(arg_lo[-1])
        self._x, self._hi, self._lo = x, hi, lo

    def raw(self, second: int) -> float:
        """Unrounded level at ``second`` (0 .. the session's seconds)."""
        if second >= len(self.levels):
            self._extend(second)
        return self.levels[second]

    def level(self, second: int) -> float:
        """Level at ``second`` rounded to the index tick (what ticks carry)."""
        if second >= len(self.levels):
            self._extend(second)
        return self.rounded[second]

    def extremes(self, second: int) -> tuple[int, int]:
        """(second of the day's high so far, second of the day's low so far)."""
        if second >= len(self.levels):
            self._extend(second)
        return self._arg_hi[second], self._arg_lo[second]


# ---------------------------------------------------------------------------------------------
# Contracts


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """One tradable (or index) instrument, parsed from a compact scrip-master row."""

    security_id: int
    exchange_segment: str  # IDX_I, NSE_FNO, BSE_FNO
    trading_symbol: str
    underlying: str  # index symbol (NIFTY, SENSEX, ...); the symbol itself for index rows
    instrument: str  # INDEX, OPTIDX, FUTIDX
    strike: float  # 0 for indices and futures
    option_type: str  # CE, PE, or XX (index, future)
    expiry: datetime | None  # aware IST expiry moment (14:30 NSE, 15:30 BSE); None for indices
    lot: int
    tick: float  # rupees
    expiry_flag: str  # W, M, or "" for indices


def parse_scrip_rows(rows: Iterable[Sequence[str]]) -> list[ContractSpec]:
    """Index, index-option and index-future rows of a compact master; others are skipped."""
    specs = []
    for row in rows:
        exch, seg, sid, name = row[0], row[1], int(row[2]), row[3]
        symbol = row[5]
        if seg == "I":
            tick = 0.01 if exch == "BSE" else 0.05
            specs.append(
                ContractSpec(
                    sid, _IDX_SEGMENT, symbol, symbol, "INDEX", 0.0, "XX", None, 1, tick, ""
                )
            )
        elif seg == "D" and name in ("OPTIDX", "FUTIDX"):
            expiry = datetime.fromisoformat(row[8]).replace(tzinfo=IST)
            strike = float(row[9]) if name == "OPTIDX" else 0.0
            specs.append(
                ContractSpec(
                    sid,
                    f"{exch}_FNO",
                    symbol,
                    symbol.split("-", 1)[0],
                    name,
                    strike,
                    row[10],
                    expiry,
                    int(float(row[6])),
                    float(row[11]) / 100.0,  # derivative tick sizes are in paise
                    row[12],
                )
            )
    return specs


class _Contract:
    """Per-derivative model state: fixed liquidity parameters plus three one-entry caches."""

    __slots__ = (
        "atm_vol",
        "day_lots",
        "depth_lots",
        "hl_key",
        "hl_val",
        "key",
        "ladder",
        "ladder_key",
        "last_s",
        "last_trade_s",
        "liquidity",
        "ltp_s",
        "ltp_val",
        "oi_drift",
        "oi_open_lots",
        "open_price",
        "path",
        "prev_close",
        "price_iv",
        "price_key",
        "price_val",
        "quote",
        "quote_s",
        "spec",
        "trade_p",
        "warp_amp",
        "warp_freq",
    )

    def __init__(
        self, spec: ContractSpec, path: IndexPath, atm_vol: float, liquidity: float, key: int
    ) -> None:
        self.spec, self.path, self.atm_vol, self.liquidity, self.key = (
            spec,
            path,
            atm_vol,
            liquidity,
            key,
        )
        # Trades per second: ~1 at the money, down to 1 a minute-ish in the far wings.
        self.trade_p = 0.02 + 0.9 * liquidity
        # Day volume in lots: tens of thousands at the money on a near expiry.
        self.day_lots = int(50 + 60_000 * liquidity * (0.7 + 0.6 * _unit(key, 1)))
        self.oi_open_lots = int(200 + 150_000 * liquidity * (0.6 + 0.8 * _unit(key, 2)))
        self.oi_drift = -0.15 + 0.55 * _unit(key, 3)  # OI change over the day, fraction
        # Volume curve warp u -> u + a sin(2 pi f u) / (2 pi f): monotone for a < 1, fixes 0, 1.
        self.warp_freq = 2.0 * math.pi * (2 + int(_unit(key, 4) * 5))
        self.warp_amp = 0.6 * _unit(key, 5)
        self.depth_lots = int(2 + 60 * liquidity)  # max lots per depth level (6-bit scaled)
        self.ladder: tuple[tuple[float, float], ...] = ()
        self.ladder_key = -1.0
        self.open_price: float | None = None
        self.prev_close: float | None = None
        self.price_key: tuple[float, int] | None = None
        self.price_val = 0.0
        self.price_iv = 0.0
        self.ltp_s = -1
        self.ltp_val = 0.0
        self.hl_key: tuple[int, int, int] | None = None
        self.hl_val = (0.0, 0.0)
        self.last_s = -1
        self.last_trade_s = 0
        self.quote_s = -1
        self.quote: Quote | None = None


# ---------------------------------------------------------------------------------------------
# Snapshot types


@dataclass(frozen=True, slots=True)
class Quote:
    """What the feed's full packet and the REST /marketfeed/quote carry for one instrument.

    Prices in rupees; quantities in units (multiples of the lot for derivatives). ``close`` is
    the running close of the day (= the last price); ``prev_close`` is yesterday's close, which
    is what Dhan's REST ``ohlc.close`` and the feed's previous-close packet carry. ``fair`` is
    the model's theoretical price at ``t`` rounded to the tick; ``iv`` the implied volatility
    used (0 for indices and futures). Indices have no quantities, OI or depth.
    """

    exchange_segment: str
    security_id: int
    ltp: float
    ltq: int
    ltt: datetime
    atp: float
    volume: int
    oi: int
    oi_day_high: int
    oi_day_low: int
    open: float
    high: float
    low: float
    close: float
    prev_close: float
    total_buy_qty: int
    total_sell_qty: int
    depth: tuple[DepthLevel, ...]
    fair: float
    iv: float

    @property
    def best_bid(self) -> float:
        return self.depth[0].bid_price if self.depth else 0.0

    @property
    def best_ask(self) -> float:
        return self.depth[0].ask_price if self.depth else 0.0


@dataclass(frozen=True, slots=True)
class Candle:
    """One intraday candle: ``start`` is the candle's opening market time (Dhan convention)."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    oi: int


# ---------------------------------------------------------------------------------------------
# Market


class Market:
    """One synthetic trading day over the contract universe of ``instruments.synthetic``.

    ``rows`` defaults to ``generate(trading_date, strikes_each_side=..., weeklies=...,
    monthlies=...)``, the same call (hence the same security ids) as the scrip master the
    simulator serves; pass the exact rows you wrote to be sure both agree. ``regime`` applies
    to every index unless ``regimes`` overrides it per symbol; ``trend_pct`` is the signed
    open-to-close log drift of the trend regime. ``opens`` overrides opening levels (default:
    ``IndexSpec.spot``, the level the synthetic strikes are centred on). ``session`` is the
    day's (open, close) (default: the project's, :func:`configured_session`): the paths, volume
    and OI curves and the candles span it, whatever its length. ``holidays`` are the weekdays
    the history before the trading date skips (default: the project's,
    :func:`configured_holidays`); the trading date itself is traded whatever they say.
    """

    def __init__(
        self,
        trading_date: date,
        *,
        seed: int = 0,
        speed: float = 1.0,
        regime: Regime = "random",
        regimes: Mapping[str, Regime] | None = None,
        trend_pct: float = DEFAULT_TREND_PCT,
        opens: Mapping[str, float] | None = None,
        rows: Iterable[Sequence[str]] | None = None,
        strikes_each_side: int = 40,
        weeklies: int = 4,
        monthlies: int = 3,
        session: Session | None = None,
        holidays: Iterable[date] | None = None,
    ) -> None:
        self.trading_date = trading_date
        self.seed = seed
        self.holidays = configured_holidays() if holidays is None else frozenset(holidays)
        self.clock = MarketClock(trading_date, speed, session=session)
        self._open_at = self.clock.open_at
        self._session_seconds = seconds = self.clock.session_seconds
        self._volume_curve = _profile(seconds)[1]
        if rows is None:
            rows = generate(
                trading_date,
                strikes_each_side=strikes_each_side,
                weeklies=weeklies,
                monthlies=monthlies,
            )
        self._rows = [list(row) for row in rows]
        self.contracts: dict[int, ContractSpec] = {}
        self._paths: dict[str, IndexPath] = {}
        self._index_by_id: dict[int, IndexPath] = {}
        self._derivs: dict[int, _Contract] = {}
        self._histories: dict[int, dict[date, Candle]] = {}  # daily candles before the day
        # 1-minute candles of earlier days, (security id, day) -> candles, least recent first.
        self._day_minutes: OrderedDict[tuple[int, date], tuple[Candle, ...]] = OrderedDict()
        self.now = self._open_at
        self._now_second = 0
        regimes = regimes or {}
        opens = opens or {}
        spot_by_symbol = {spec.symbol: float(spec.spot) for spec in INDICES}
        spot_by_symbol.update({symbol: VIX_LEVEL for _, _, symbol, _ in OTHER_INDICES})

        specs = parse_scrip_rows(self._rows)
        for spec in specs:
            self.contracts[spec.security_id] = spec
            if spec.instrument == "INDEX":
                symbol = spec.underlying
                is_vix = symbol == "INDIA VIX"
                path = IndexPath(
                    symbol,
                    spec.security_id,
                    float(opens.get(symbol, spot_by_symbol.get(symbol, 1000.0))),
                    spec.tick,
                    ANNUAL_VOL.get(symbol, DEFAULT_VOL),
                    "flat" if is_vix else regimes.get(symbol, regime),
                    seed,
                    trend_pct,
                    session_seconds=seconds,
                )
                self._paths[symbol] = path
                self._index_by_id[spec.security_id] = path
        seed_key = _mix(seed & _M64)
        # Expiry rank per underlying: the nearest expiry is the busiest.
        expiries: dict[str, list[datetime]] = {}
        for spec in specs:
            if spec.instrument == "OPTIDX":
                expiries.setdefault(spec.underlying, [])
                if spec.expiry not in expiries[spec.underlying]:
                    expiries[spec.underlying].append(spec.expiry)
        for values in expiries.values():
            values.sort()
        for spec in specs:
            if spec.instrument == "INDEX" or spec.underlying not in self._paths:
                continue
            path = self._paths[spec.underlying]
            atm_vol = ANNUAL_VOL.get(spec.underlying, DEFAULT_VOL) * IMPLIED_OVER_REALISED
            liquidity = self._liquidity(spec, path.open, atm_vol, expiries)
            key = _mix(seed_key ^ spec.security_id)
            self._derivs[spec.security_id] = _Contract(spec, path, atm_vol, liquidity, key)

    def _liquidity(
        self,
        spec: ContractSpec,
        spot: float,
        atm_vol: float,
        expiries: Mapping[str, list[datetime]],
    ) -> float:
        """0..1, 1 = ATM on the nearest expiry; fixed at the open (small per-contract state)."""
        if spec.instrument == "FUTIDX":
            return 0.5
        assert spec.expiry is not None
        rank = expiries[spec.underlying].index(spec.expiry)
        years = max((spec.expiry - self._open_at).total_seconds(), 3600.0) / SECONDS_PER_YEAR
        x = math.log(spec.strike / spot) / (atm_vol * math.sqrt(years))
        return math.exp(-0.5 * (x / 1.2) ** 2) / (1.0 + rank)

    # -- universe ------------------------------------------------------------------------------

    def scrip_master_rows(self) -> list[list[str]]:
        """The compact scrip-master rows this market was built from (for write_compact)."""
        return [list(row) for row in self._rows]

    @property
    def index_symbols(self) -> list[str]:
        return list(self._paths)

    def regime(self, symbol: str) -> str:
        """The regime an index's path was generated with (random, trend or flat)."""
        return self._paths[symbol].regime

    def derivative_ids(self, underlying: str | None = None) -> list[int]:
        """Security ids of the options and futures (on ``underlying`` when given)."""
        return [
            sid
            for sid, c in self._derivs.items()
            if underlying is None or c.spec.underlying == underlying
        ]

    def _path(self, symbol_or_security_id: str | int) -> IndexPath:
        if isinstance(symbol_or_security_id, int):
            return self._index_by_id[symbol_or_security_id]
        if symbol_or_security_id.isdigit():
            return self._index_by_id[int(symbol_or_security_id)]
        return self._paths[symbol_or_security_id]

    # -- time ----------------------------------------------------------------------------------

    def _second(self, t: datetime | None) -> int:
        if t is None or t is self.now:
            # The simulator's hot path: advance(t) once per publishing pass, then many queries.
            return self._now_second
        if t.tzinfo is None:
            raise ValueError("market time must be an aware datetime (naive times are ambiguous)")
        if t.astimezone(IST).date() != self.trading_date:
            raise ValueError(f"{t.isoformat()} is not on this market's day {self.trading_date}")
        return self.clock.session_second(t)

    def advance(self, t: datetime) -> None:
        """Step every index path to market time ``t`` and make it the default query time.

        Quotes are pure functions of time, so this only pays the path generation up front (and
        lets callers omit ``t``); going back in time is allowed and changes nothing generated.
        """
        second = self._second(t)
        for path in self._paths.values():
            path.raw(second)
        self.now, self._now_second = t, second

    # -- indices -------------------------------------------------------------------------------

    def index_level(self, symbol_or_security_id: str | int, t: datetime | None = None) -> float:
        """Index level at market time ``t`` (default: the last ``advance``), tick-rounded."""
        return self._path(symbol_or_security_id).level(self._second(t))

    # -- pricing -------------------------------------------------------------------------------

    def _years(self, c: _Contract, minute: int) -> float:
        """Years (ACT/365) from market minute ``minute`` of the session to the expiry moment."""
        assert c.spec.expiry is not None
        return (
            c.spec.expiry - self._open_at
        ).total_seconds() / SECONDS_PER_YEAR - minute * 60.0 / SECONDS_PER_YEAR

    @staticmethod
    def _value(c: _Contract, spot: float, years: float) -> tuple[float, float]:
        """(price rounded to the contract tick, iv) of ``c`` at index ``spot``, ``years`` left."""
        spec = c.spec
        if spec.instrument == "FUTIDX":
            return round_to_tick(spot * math.exp(RISK_FREE_RATE * max(years, 0.0)), spec.tick), 0.0
        iv = smile_vol(c.atm_vol, spot, spec.strike, years, RISK_FREE_RATE)
        value = black_scholes(spec.option_type, spot, spec.strike, years, RISK_FREE_RATE, iv)
        return max(round_to_tick(value, spec.tick), MIN_PREMIUM), iv

    def _price(self, c: _Contract, second: int) -> tuple[float, float]:
        """(premium, iv) at ``second``. One-entry cache per contract keyed by (index level,
        minute): time to expiry is quantised to the minute, so between index moves a contract
        costs a tuple comparison instead of a Black-Scholes evaluation."""
        spot = c.path.level(second)
        key = (spot, second // 60)
        if key != c.price_key:
            c.price_val, c.price_iv = self._value(c, spot, self._years(c, key[1]))
            c.price_key = key
        return c.price_val, c.price_iv

    def _price_at(self, c: _Contract, second: int) -> float:
        """Premium at ``second`` without touching the current-price cache (history, candles)."""
        return self._value(c, c.path.level(second), self._years(c, second // 60))[0]

    def fair_value(self, security_id: int, t: datetime | None = None) -> tuple[float, float]:
        """(model price rounded to the tick, implied vol) of a derivative at ``t``."""
        return self._price(self._derivs[security_id], self._second(t))

    def greeks(self, security_id: int, t: datetime | None = None) -> Greeks:
        """Black-Scholes greeks of an option at ``t`` (smile vol, minute-quantised expiry time),
        for the option-chain API."""
        c = self._derivs[security_id]
        if c.spec.instrument != "OPTIDX":
            raise KeyError(f"{security_id} is not an option")
        second = self._second(t)
        spot, minute = c.path.level(second), second // 60
        years = self._years(c, minute)
        vol = smile_vol(c.atm_vol, spot, c.spec.strike, years, RISK_FREE_RATE)
        return black_scholes_greeks(
            c.spec.option_type, spot, c.spec.strike, years, RISK_FREE_RATE, vol
        )

    # -- per-second microstructure (closed forms and counter hashes: order-independent) ------

    def _last_trade_second(self, c: _Contract, second: int) -> int:
        """Latest second <= ``second`` with a trade. Second 0 (the opening print) always trades.

        Scans back from ``second`` to the previous query's second when time moves forward
        (amortised O(1) for a simulator stepping through the day), the whole way otherwise.
        """
        forward = second >= c.last_s >= 0
        stop = c.last_s if forward else 0
        key, p = c.key, c.trade_p
        found = -1
        threshold = int(p * 18446744073709551616.0)  # compare raw 64-bit draws, no float
        for s in range(second, stop, -1):
            if _mix(key ^ (s << 24) ^ 7) < threshold:
                found = s
                break
        if found < 0:
            found = c.last_trade_s if forward else 0
        if second >= c.last_s:
            c.last_s, c.last_trade_s = second, found
        return found

    def _volume(self, c: _Contract, second: int) -> int:
        """Cumulative traded units at ``second``: day lots x a warped U-shaped intraday curve."""
        seconds = self._session_seconds
        u = second / seconds
        w = u + c.warp_amp * math.sin(c.warp_freq * u) / c.warp_freq
        index = min(max(int(w * seconds), 0), seconds)
        return int(c.day_lots * self._volume_curve[index]) * c.spec.lot

    def _oi(self, c: _Contract, second: int) -> int:
        """Open interest (units) at ``second``: linear from the open by the contract's drift."""
        lots = c.oi_open_lots + int(c.oi_open_lots * c.oi_drift * second / self._session_seconds)
        return max(lots, 1) * c.spec.lot

    @staticmethod
    def _ladder(c: _Contract, fair: float) -> tuple[tuple[float, float], ...]:
        """Five (bid, ask) price levels around ``fair``: bid1 <= fair <= ask1, stepping away
        by ``gap`` ticks. The spread widens with illiquidity (far OTM, later expiries) and by a
        tick for premiums under Rs 10; a level that would bid below one tick is empty (0.0)."""
        tick = c.spec.tick
        f = round(fair / tick)
        if c.spec.instrument == "FUTIDX":
            ticks = 2  # index futures are the deepest book on the exchange: a point or so wide
        else:
            rel = 0.001 + 0.02 * (1.0 - c.liquidity) ** 2  # relative spread: 0.1 % ATM .. 2.1 %
            ticks = max(1, math.ceil(fair * rel / tick - 1e-9))
            if fair < 10.0:
                ticks += 1
        bid = max(f - ticks // 2, 1)
        ask = bid + ticks
        gap = max(1, ticks // 2)
        ladder = []
        for i in range(0, 5 * gap, gap):
            ladder.append(
                (round((bid - i) * tick, 2) if bid - i >= 1 else 0.0, round((ask + i) * tick, 2))
            )
        return tuple(ladder)

    def _depth(self, c: _Contract, fair: float, second: int) -> tuple[DepthLevel, ...]:
        """Five depth levels (Dhan's full-packet order), quantities in whole lots."""
        if c.ladder_key != fair:
            c.ladder, c.ladder_key = self._ladder(c, fair), fair
        lot, depth_lots = c.spec.lot, c.depth_lots
        bits = _mix(c.key ^ (second << 12))  # 10 x 6-bit draws: 5 levels x 2 sides
        levels = []
        for bid_price, ask_price in c.ladder:
            bid_lots = 1 + ((bits & 63) * depth_lots >> 6)
            ask_lots = 1 + ((bits >> 6 & 63) * depth_lots >> 6)
            bits >>= 12
            if bid_price:
                levels.append(
                    DepthLevel(
                        bid_lots * lot,
                        ask_lots * lot,
                        1 + bid_lots // 3,
                        1 + ask_lots // 3,
                        bid_price,
                        ask_price,
                    )
                )
            else:
                # Nothing bids below one tick: Dhan sends an empty side as zeros.
                levels.append(DepthLevel(0, ask_lots * lot, 0, 1 + ask_lots // 3, 0.0, ask_price))
        return tuple(levels)

    # -- snapshots -----------------------------------------------------------------------------

    def quote(
        self, exchange_segment: str | int, security_id: int, t: datetime | None = None
    ) -> Quote:
        """Snapshot of one instrument at market time ``t`` (default: the last ``advance``).

        Raises KeyError for an id this market does not know or a segment it is not on (the REST
        side drops those silently, as Dhan does).
        """
        self._check_segment(exchange_segment, security_id)
        second = self._second(t)
        c = self._derivs.get(security_id)
        if c is None:
            return self._index_quote(self._index_by_id[security_id], second)
        if c.quote_s == second and c.quote is not None:
            return c.quote
        quote = self._derivative_quote(c, second)
        c.quote_s, c.quote = second, quote
        return quote

    def _check_segment(self, exchange_segment: str | int, security_id: int) -> None:
        """KeyError unless ``security_id`` is a contract of this market on that segment."""
        segment = (
            segment_name(exchange_segment)
            if isinstance(exchange_segment, int)
            else exchange_segment
        )
        spec = self.contracts[security_id]
        if spec.exchange_segment != segment:
            raise KeyError(f"{security_id} is on {spec.exchange_segment}, not {segment}")

    def _index_quote(self, path: IndexPath, second: int) -> Quote:
        level = path.level(second)
        hi_s, lo_s = path.extremes(second)
        return Quote(
            _IDX_SEGMENT,
            path.security_id,
            level,
            0,
            self._open_at + timedelta(seconds=second),
            0.0,
            0,
            0,
            0,
            0,
            path.level(0),
            path.level(hi_s),
            path.level(lo_s),
            level,
            path.prev_close,
            0,
            0,
            (),
            level,
            0.0,
        )

    def _ltp(self, c: _Contract, second: int) -> tuple[float, int]:
        """(last traded price, second of that trade): the model price at the trade second."""
        trade_s = self._last_trade_second(c, second)
        if trade_s == c.ltp_s:
            return c.ltp_val, trade_s
        ltp = self._price(c, second)[0] if trade_s == second else self._price_at(c, trade_s)
        c.ltp_s, c.ltp_val = trade_s, ltp
        return ltp, trade_s

    def last_trade(
        self, exchange_segment: str | int, security_id: int, t: datetime | None = None
    ) -> tuple[float, datetime]:
        """(LTP, LTT) only: what a ticker packet carries, at a fraction of ``quote``'s cost.

        A contract traded in the second of ``t`` exactly when the returned LTT equals ``t``
        floored to the second, so a publisher can send ticks only for contracts that traded.
        Indices "trade" every second.
        """
        self._check_segment(exchange_segment, security_id)
        second = self._second(t)
        c = self._derivs.get(security_id)
        if c is None:
            level = self._index_by_id[security_id].level(second)
            return level, self._open_at + timedelta(seconds=second)
        ltp, trade_s = self._ltp(c, second)
        return ltp, self._open_at + timedelta(seconds=trade_s)

    def _derivative_quote(self, c: _Contract, second: int) -> Quote:
        spec = c.spec
        fair, iv = self._price(c, second)
        ltp, trade_s = self._ltp(c, second)
        if c.open_price is None:
            c.open_price = self._price_at(c, 0)
        open_price = c.open_price
        hi_s, lo_s = c.path.extremes(second)
        if c.hl_key != (hi_s, lo_s, 0):
            c.hl_val = (self._price_at(c, hi_s), self._price_at(c, lo_s))
            c.hl_key = (hi_s, lo_s, 0)
        high = max(open_price, ltp, *c.hl_val)
        low = min(open_price, ltp, *c.hl_val)
        if c.prev_close is None:
            # Yesterday's close is a day less the session before today's open (17.75 h for
            # 09:15-15:30; weekends ignored: a model, not a calendar), on yesterday's closing
            # index level.
            night_hours = (86_400 - self._session_seconds) / 3_600
            years = self._years(c, 0) + night_hours / (365 * 24)
            c.prev_close = self._value(c, c.path.prev_close, years)[0]
        oi_open, oi = self._oi(c, 0), self._oi(c, second)
        depth = self._depth(c, fair, second)
        ltq = spec.lot * (1 + int(_unit(c.key, 8, trade_s) * (1 + 19 * c.liquidity)))
        return Quote(
            spec.exchange_segment,
            spec.security_id,
            ltp,
            ltq,
            self._open_at + timedelta(seconds=trade_s),
            round_to_tick((open_price + high + low + ltp) / 4.0, spec.tick),
            self._volume(c, second),
            oi,
            max(oi_open, oi),
            min(oi_open, oi),
            open_price,
            high,
            low,
            ltp,
            c.prev_close,
            # Totals: the 5 shown levels plus the book behind them (~3x as deep again).
            4 * (depth[0][0] + depth[1][0] + depth[2][0] + depth[3][0] + depth[4][0]),
            4 * (depth[0][1] + depth[1][1] + depth[2][1] + depth[3][1] + depth[4][1]),
            depth,
            fair,
            iv,
        )

    def intraday_candles(
        self, security_id: int, interval_minutes: int, until_t: datetime | None = None
    ) -> list[Candle]:
        """OHLCV candles from the open up to ``until_t`` (the last one may be forming).

        Built from the same path as the ticks: index candles from the per-second levels,
        derivative candles priced at the candle's first/last second and at the seconds of the
        index's high and low inside it (option prices are monotone in the index at fixed time).
        Each candle spans [start, start + interval] inclusive, so its close is the next open.
        """
        if interval_minutes <= 0:
            raise ValueError(f"interval must be a positive number of minutes: {interval_minutes}")
        until = self._second(until_t)
        step = interval_minutes * 60
        c = self._derivs.get(security_id)
        path = c.path if c is not None else self._index_by_id[security_id]
        path.raw(until)
        levels = path.levels
        candles = []
        for start in range(0, min(until + 1, self._session_seconds), step):
            end = min(start + step, until)
            window = range(start, end + 1)
            hi_s = max(window, key=levels.__getitem__)
            lo_s = min(window, key=levels.__getitem__)
            begin = self._open_at + timedelta(seconds=start)
            if c is None:
                candles.append(
                    Candle(
                        begin,
                        path.level(start),
                        path.level(hi_s),
                        path.level(lo_s),
                        path.level(end),
                        0,
                        0,
                    )
                )
                continue
            prices = [self._price_at(c, s) for s in (start, end, hi_s, lo_s)]
            candles.append(
                Candle(
                    begin,
                    prices[0],
                    max(prices),
                    min(prices),
                    prices[1],
                    self._volume(c, end) - self._volume(c, start),
                    self._oi(c, end),
                )
            )
        return candles

    def daily_candles(
        self, security_id: int, from_date: date, to_date: date, until_t: datetime | None = None
    ) -> list[Candle]:
        """Daily candles for the trading days in ``[from_date, to_date)`` (Dhan's ``toDate`` is
        not inclusive); ``start`` is midnight IST, as Dhan stamps daily candles.

        An index gets a history before the trading date, on its weekdays that are not
        ``holidays``: a seeded walk backwards from the previous close at the index's daily
        volatility (the same seed gives the same history whatever range is asked). The trading
        date's candle is the intraday path up to ``until_t``. A derivative has only the trading
        date (its history is not modelled).
        """
        path = self._index_by_id.get(security_id)
        if path is None and security_id not in self._derivs:
            raise KeyError(security_id)
        candles = []
        day = from_date
        while day < to_date:
            if day.weekday() < 5 and day <= self.trading_date:
                if day == self.trading_date:
                    # One candle for the whole session: an interval at least its length.
                    session_minutes = -(-self._session_seconds // 60)
                    today = self.intraday_candles(security_id, session_minutes, until_t)
                    if today:
                        first, last = today[0], today[-1]
                        candles.append(
                            Candle(
                                datetime.combine(day, time(0), tzinfo=IST),
                                first.open,
                                max(c.high for c in today),
                                min(c.low for c in today),
                                last.close,
                                sum(c.volume for c in today),
                                last.oi,
                            )
                        )
                elif path is not None:
                    candle = self._history(path).get(day)
                    if candle is not None:
                        candles.append(candle)
            day += timedelta(days=1)
        return candles

    _HISTORY_DAYS = 520  # about two years of trading days
    # Earlier days' 1-minute candles kept: 4 indices x 5 days of warm-up with room to spare,
    # ~100 KB a day (375 candles), so a long-running simulator stays small.
    _DAY_CACHE = 64

    def _trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def _history(self, path: IndexPath) -> dict[date, Candle]:
        cached = self._histories.get(path.security_id)
        if cached is not None:
            return cached
        rng = random.Random(f"{self.seed}:{path.symbol}:daily")
        daily_vol = ANNUAL_VOL.get(path.symbol, DEFAULT_VOL) / math.sqrt(TRADING_DAYS_PER_YEAR)
        history: dict[date, Candle] = {}
        # The walk starts at the trading day's previous close: the first trading day before
        # the trading date closes exactly there, so its minutes lead into today's open gap.
        close = path.prev_close
        day = self.trading_date
        for _ in range(self._HISTORY_DAYS):
            day -= timedelta(days=1)
            while not self._trading_day(day):
                day -= timedelta(days=1)
            prev = close / math.exp(rng.gauss(0.0, daily_vol))  # the close a day earlier
            open_ = prev * math.exp(rng.gauss(0.0, daily_vol * 0.3))
            high = max(open_, close) * (1 + abs(rng.gauss(0.0, daily_vol * 0.5)))
            low = min(open_, close) * (1 - abs(rng.gauss(0.0, daily_vol * 0.5)))
            tick = path.tick
            history[day] = Candle(
                datetime.combine(day, time(0), tzinfo=IST),
                round_to_tick(open_, tick),
                round_to_tick(high, tick),
                round_to_tick(low, tick),
                round_to_tick(close, tick),
                0,
                0,
            )
            close = prev
        self._histories[path.security_id] = history
        return history

    def earlier_intraday_candles(
        self, security_id: int, interval_minutes: int, from_t: datetime, to_t: datetime
    ) -> list[Candle]:
        """Intraday candles of the trading days before the trading date (weekdays that are not
        holidays, within the daily history) whose start is in ``[from_t, to_t)``, oldest first.

        An index's earlier day is a seeded per-second path of that day's session that matches
        its daily candle (:meth:`daily_candles`) exactly: the first minute opens at its open,
        the last closes at its close, the minutes' highest high and lowest low are its high and
        low. The same seed gives the same minutes whatever range, interval or order is asked.
        ``interval_minutes`` candles group the 1-minute ones from the session's open, as the
        trading day's do. A derivative has no earlier days (its history is not modelled): [].
        """
        if interval_minutes <= 0:
            raise ValueError(f"interval must be a positive number of minutes: {interval_minutes}")
        for name, moment in (("from", from_t), ("to", to_t)):
            if moment.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime (naive times are ambiguous)")
        path = self._index_by_id.get(security_id)
        if path is None:
            if security_id not in self._derivs:
                raise KeyError(security_id)
            return []
        history = self._history(path)
        last = min(to_t.astimezone(IST).date(), self.trading_date - timedelta(days=1))
        day = from_t.astimezone(IST).date()
        candles: list[Candle] = []
        while day <= last:
            if day in history:
                minutes = self._minutes_of(path, day, history[day])
                for candle in _grouped(minutes, interval_minutes):
                    if from_t <= candle.start < to_t:
                        candles.append(candle)
            day += timedelta(days=1)
        return candles

    def _minutes_of(self, path: IndexPath, day: date, daily: Candle) -> tuple[Candle, ...]:
        """The 1-minute candles of an earlier ``day`` of ``path`` (its daily candle given)."""
        key = (path.security_id, day)
        cached = self._day_minutes.get(key)
        if cached is not None:
            self._day_minutes.move_to_end(key)
            return cached
        # Seeded by (seed, index, day) alone: a day's minutes do not depend on which other
        # days were generated before it, nor in what order.
        rng = random.Random(f"{self.seed}:{path.symbol}:{day.isoformat()}:minutes")
        seconds = self._session_seconds
        sigma = ANNUAL_VOL.get(path.symbol, DEFAULT_VOL) / math.sqrt(
            TRADING_DAYS_PER_YEAR * seconds
        )
        open_at = datetime.combine(day, self.clock.session[0], tzinfo=IST)
        minutes = _bridged_minutes(rng, daily, open_at, seconds, sigma, path.tick)
        self._day_minutes[key] = minutes
        if len(self._day_minutes) > self._DAY_CACHE:
            self._day_minutes.popitem(last=False)
        return minutes


_BRIDGE_DRAWS = 8  # paths drawn for one day before the day's extremes are set by hand


def _bridged_minutes(
    rng: random.Random, daily: Candle, open_at: datetime, seconds: int, sigma: float, tick: float
) -> tuple[Candle, ...]:
    """1-minute candles of a session of ``seconds`` from ``open_at`` whose day is ``daily``.

    A log random walk with the trading day's per-second volatility ``sigma`` and U-shaped
    profile, bridged (conditioned on its end, in the profile's variance time) from the day's
    open to its close; then stretched above the higher of open and close and below the lower,
    each side by one factor (monotone, so every candle stays a candle and the open and close
    do not move), so the path's extremes land on the day's high and low. Levels rounded to the
    index ``tick`` on output, as the trading day's are.
    """
    top, bottom = max(daily.open, daily.close), min(daily.open, daily.close)
    for _ in range(_BRIDGE_DRAWS):
        levels = _bridge(rng, daily.open, daily.close, seconds, sigma)
        raw_high, raw_low = max(levels), min(levels)
        # A path that never leaves its ends on a side has nothing to stretch onto that side's
        # extreme (about 1 day in 20 starts off and never comes back): draw another.
        if (raw_high > top or daily.high == top) and (raw_low < bottom or daily.low == bottom):
            break
    # After the last draw a side with nothing to stretch keeps its end (factor 0) and the
    # day's extreme is set on the minute that holds that end, below.
    up = (daily.high - top) / (raw_high - top) if raw_high > top else 0.0
    down = (bottom - daily.low) / (bottom - raw_low) if raw_low < bottom else 0.0

    def level(value: float) -> float:
        if value > top:
            value = top + (value - top) * up
        elif value < bottom:
            value = bottom - (bottom - value) * down
        return round(round(value / tick) * tick, 2)

    candles = []
    for start in range(0, seconds, 60):
        end = min(start + 60, seconds)
        window = levels[start : end + 1]  # [start, end] inclusive: a close is the next open
        candles.append(
            Candle(
                open_at + timedelta(seconds=start),
                level(window[0]),
                level(max(window)),
                level(min(window)),
                level(window[-1]),
                0,
                0,
            )
        )
    # Exact extremes even when a side had nothing to stretch: widen the candle that comes
    # closest (widening a high or a low never breaks a candle).
    hi = max(range(len(candles)), key=lambda i: candles[i].high)
    if candles[hi].high != daily.high:
        candles[hi] = replace(candles[hi], high=daily.high)
    lo = min(range(len(candles)), key=lambda i: candles[i].low)
    if candles[lo].low != daily.low:
        candles[lo] = replace(candles[lo], low=daily.low)
    return tuple(candles)


def _bridge(
    rng: random.Random, open_level: float, close_level: float, seconds: int, sigma: float
) -> list[float]:
    """Levels at the ``seconds + 1`` second boundaries of a session: a log random walk with
    per-second volatility ``sigma`` x the U-shaped profile, conditioned to go from
    ``open_level`` to ``close_level`` (the walk less its end spread over the variance time)."""
    vol, cum = _profile(seconds)
    # Uniform steps of the same variance as the trading day's Gaussian ones (a twentieth of
    # the cost): only minute candles leave this module, and 60 steps make a minute's move
    # Gaussian for any purpose an indicator has.
    rnd, width = rng.random, sigma * math.sqrt(12.0)
    walk = list(accumulate(((rnd() - 0.5) * width * m for m in vol), initial=0.0))
    log_open = math.log(open_level)
    pull = math.log(close_level) - log_open - walk[-1]
    exp = math.exp
    levels = [exp(log_open + w + c * pull) for w, c in zip(walk, cum, strict=True)]
    levels[0], levels[-1] = open_level, close_level  # exactly, whatever the float error
    return levels


def _grouped(minutes: Sequence[Candle], interval_minutes: int) -> Iterable[Candle]:
    """``interval_minutes`` candles from consecutive 1-minute ones of one session (the last may
    be shorter): open of the first, close of the last, extremes of all."""
    if interval_minutes == 1:
        return minutes
    groups = []
    for i in range(0, len(minutes), interval_minutes):
        group = minutes[i : i + interval_minutes]
        groups.append(
            Candle(
                group[0].start,
                group[0].open,
                max(c.high for c in group),
                min(c.low for c in group),
                group[-1].close,
                0,
                0,
            )
        )
    return groups
