"""Which option to buy for a signal: expiry, ATM, offset strike, liquidity (DOMAIN "Entry" step 3).

Pure: the catalog's listed contracts, the latest quotes and the clock arrive as arguments.

Strike steps are never computed: "one strike OTM" is the next strike the catalog lists for that
expiry and option type. Steps differ by exchange (SENSEX 100, NIFTY 50) and listings are uneven
(wider steps far from the money, extra strikes added intraday), so a computed ``atm + 50`` could
name a contract that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from trading.config.types import FeedConfig, IndexConfig, PremiumBand, StrikesConfig
from trading.rules.market import IST, instrument_key
from trading.rules.vocab import Direction

CALL = "CE"
PUT = "PE"
OPTION_TYPES = (CALL, PUT)
# The signal's direction -> the option bought: calls for a rise, puts for a fall.
OPTION_FOR_DIRECTION = {Direction.BULLISH: CALL, Direction.BEARISH: PUT}


@dataclass(frozen=True, slots=True)
class OptionContract:
    """One listed option, as the catalog describes it (lot and tick size per contract)."""

    exchange_segment: str  # NSE_FNO or BSE_FNO
    security_id: int
    symbol: str  # the trading symbol, for messages
    underlying: str  # NIFTY, SENSEX, ...
    expiry: date
    strike: Decimal
    option_type: str  # CE or PE
    lot_size: int  # units per lot
    tick_size: Decimal  # rupees

    @property
    def key(self) -> str:
        """The instrument key used by the feed and the quote maps: ``"NSE_FNO:35001"``."""
        return instrument_key(self.exchange_segment, self.security_id)


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """The latest market data of an option. ``bid``/``ask``/``oi`` are None when unknown (not
    subscribed in a mode that carries them); ``age_seconds`` is the age of the last tick."""

    ltp: float
    bid: float | None
    ask: float | None
    oi: int | None
    age_seconds: float


@dataclass(frozen=True, slots=True)
class StrikeChoice:
    """The outcome of :func:`choose_strike`.

    ``contract`` is the option to buy, or None with ``reason`` saying why nothing can be bought.
    ``tried`` lists every rejected candidate in the order tried as (contract key, or a label
    when no contract was listed there; reason), so a signal row can show why the offset strike
    was passed over even when the ATM fallback was taken.
    """

    contract: OptionContract | None
    reason: str | None
    expiry: date | None
    atm: Decimal | None
    tried: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.contract is not None


def ist(now: datetime) -> datetime:
    """``now`` in Asia/Kolkata; a naive datetime is refused (its zone would be a guess)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now!r}")
    return now.astimezone(IST)


def fmt_strike(strike: Decimal) -> str:
    """``Decimal("24000.00")`` -> ``"24000"``, ``Decimal("24012.50")`` -> ``"24012.5"``."""
    text = format(strike, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt_number(value: float | Decimal) -> str:
    """A number as the operator reads it: no float noise, no needless decimals."""
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return fmt_strike(number)


def choose_expiry(expiries: Sequence[date], now: datetime, cutoff: time) -> date | None:
    """The nearest expiry on or after today (IST); today's own expiry only before ``cutoff``.

    On expiry day the contract decays and then stops trading, and the exit engine squares it off
    at 15:10: an entry after the cutoff (13:00) rolls over to the next expiry instead. None when
    nothing qualifies (the catalog is stale or not imported).
    """
    moment = ist(now)
    today = moment.date()
    skip_today = moment.time() >= cutoff
    eligible = [day for day in expiries if day > today or (day == today and not skip_today)]
    return min(eligible) if eligible else None


def atm_strike(strikes: Sequence[Decimal], spot: float | Decimal) -> Decimal:
    """The listed strike nearest to ``spot``; on an exact tie the lower one (a stable choice).

    ValueError on an empty listing: there is no at-the-money strike to speak of.
    """
    if not strikes:
        raise ValueError("no strikes listed: cannot pick an ATM strike")
    target = spot if isinstance(spot, Decimal) else Decimal(str(spot))
    return min(strikes, key=lambda strike: (abs(strike - target), strike))


def offset_strike(
    strikes: Sequence[Decimal], atm: Decimal, offset: int, option_type: str
) -> Decimal | None:
    """The strike ``offset`` listed steps away from ``atm``: positive is out of the money (a
    higher strike for a call, a lower one for a put), negative in the money, 0 the ATM itself.

    None when the listing ends before that many steps. ValueError when ``atm`` is not listed or
    ``option_type`` is not CE/PE (caller bugs, not market conditions).
    """
    if option_type not in OPTION_TYPES:
        raise ValueError(f"option_type must be CE or PE, got {option_type!r}")
    listed = sorted(set(strikes))
    try:
        position = listed.index(atm)
    except ValueError:
        raise ValueError(f"ATM strike {fmt_strike(atm)} is not among the listed strikes") from None
    target = position + offset if option_type == CALL else position - offset
    if target < 0 or target >= len(listed):
        return None
    return listed[target]


def liquidity_reason(
    quote: OptionQuote | None, band: PremiumBand, strikes: StrikesConfig, feed: FeedConfig
) -> str | None:
    """Why this option must not be bought now, or None when it may.

    Checked in order: a tick at all; its age (older than ``feed.option_stale_seconds`` is not
    traded on: the price would be a guess); a positive LTP (0 = no trade yet today); the spread
    as a share of the LTP, only when both sides of the book are known (None = not subscribed
    with depth; a side at 0 is a known empty side and blocks); open interest, only when known;
    the premium inside the index's band (inclusive). Arithmetic is in Decimal through each
    float's shortest repr, so a spread of exactly the limit passes.
    """
    if quote is None:
        return "no tick for the option yet"
    if quote.age_seconds > feed.option_stale_seconds:
        return (
            f"option tick {quote.age_seconds:.1f} s old "
            f"(limit {_fmt_number(feed.option_stale_seconds)} s)"
        )
    ltp = Decimal(str(quote.ltp))
    if ltp <= 0:
        return f"no trade yet: LTP {_fmt_number(ltp)}"
    if quote.bid is not None and quote.ask is not None:
        bid, ask = Decimal(str(quote.bid)), Decimal(str(quote.ask))
        if bid <= 0:
            return f"no bid in the book (ask {ask:.2f})"
        if ask <= 0:
            return f"no ask in the book (bid {bid:.2f})"
        spread = (ask - bid) / ltp
        limit = Decimal(str(strikes.max_spread_pct))
        if spread > limit:
            return (
                f"spread {ask - bid:.2f} is {spread * 100:.2f}% of LTP {ltp:.2f} "
                f"(limit {limit * 100:.2f}%)"
            )
    if quote.oi is not None and quote.oi < strikes.min_oi:
        return f"OI {quote.oi} below the minimum {strikes.min_oi}"
    if not band.contains(ltp):
        return f"premium {ltp:.2f} outside the band {band.min:.2f}-{band.max:.2f}"
    return None


def _expiry_contracts(
    now: datetime, contracts: Sequence[OptionContract], strikes: StrikesConfig
) -> tuple[date | None, list[OptionContract]]:
    expiry = choose_expiry(sorted({c.expiry for c in contracts}), now, strikes.expiry_cutoff)
    if expiry is None:
        return None, []
    return expiry, [c for c in contracts if c.expiry == expiry]


def _by_strike(
    contracts: Sequence[OptionContract], option_type: str
) -> dict[Decimal, OptionContract]:
    return {c.strike: c for c in contracts if c.option_type == option_type}


def _no_expiry_reason(index_key: str, now: datetime, strikes: StrikesConfig) -> str:
    moment = ist(now)
    return (
        f"no {index_key} option expiry listed on or after {moment.date().isoformat()} "
        f"(today's is skipped from {strikes.expiry_cutoff:%H:%M}): is the catalog current?"
    )


def _offset_label(offset: int) -> str:
    if offset == 0:
        return "ATM"
    kind = "OTM" if offset > 0 else "ITM"
    return f"{offset:+d} {kind}"


def choose_strike(
    direction: Direction,
    spot: float | Decimal,
    now: datetime,
    contracts: Sequence[OptionContract],
    quotes: Mapping[str, OptionQuote],
    index: IndexConfig,
    strikes: StrikesConfig,
    feed: FeedConfig,
) -> StrikeChoice:
    """DOMAIN step 3: the option to buy for an entry ``direction`` (bullish -> CE, bearish ->
    PE; avoid is a ValueError: it has nothing to buy).

    ``contracts`` are all listed options of ``index`` (any expiry); ``quotes`` the latest quote
    per contract key. The expiry is :func:`choose_expiry`'s; ATM is the listed strike of that
    expiry and option type nearest to ``spot``; the wanted strike is ``index.offset(strikes)``
    listed steps from it. If that strike is not listed or fails :func:`liquidity_reason`, ATM is
    tried; if ATM fails too, the choice is blocked with a reason naming both failures.
    """
    option_type = OPTION_FOR_DIRECTION.get(direction)
    if option_type is None:
        raise ValueError(f"direction must be bullish or bearish, got {str(direction)!r}")
    expiry, current = _expiry_contracts(now, contracts, strikes)
    if expiry is None:
        return StrikeChoice(None, _no_expiry_reason(index.key, now, strikes), None, None)
    side = _by_strike(current, option_type)
    if not side:
        reason = f"no {index.key} {option_type} strikes listed for the {expiry.isoformat()} expiry"
        return StrikeChoice(None, reason, expiry, None)
    listed = sorted(side)
    atm = atm_strike(listed, spot)
    offset = index.offset(strikes)

    candidates: list[tuple[str, Decimal | None]] = []
    if offset != 0:
        candidates.append((_offset_label(offset), offset_strike(listed, atm, offset, option_type)))
    candidates.append(("ATM", atm))

    tried: list[tuple[str, str]] = []
    failures: list[str] = []
    for label, strike in candidates:
        if strike is None:
            reason = (
                f"no strike listed {abs(offset)} step(s) "
                f"{'OTM' if offset > 0 else 'ITM'} of ATM {fmt_strike(atm)} {option_type}"
            )
            tried.append((f"{index.key} {expiry.isoformat()} {label} {option_type}", reason))
            failures.append(f"{label}: {reason}")
            continue
        contract = side[strike]
        reason = liquidity_reason(quotes.get(contract.key), index.premium_band, strikes, feed)
        if reason is None:
            return StrikeChoice(contract, None, expiry, atm, tuple(tried))
        tried.append((contract.key, reason))
        failures.append(f"{label} {fmt_strike(strike)} {option_type}: {reason}")
    return StrikeChoice(None, "; ".join(failures), expiry, atm, tuple(tried))


def candidate_contracts(
    spot: float | Decimal,
    now: datetime,
    contracts: Sequence[OptionContract],
    strikes: StrikesConfig,
) -> list[OptionContract]:
    """The calls and puts of the expiry :func:`choose_strike` would use, within
    ``strikes.subscribe_width`` listed strikes either side of ATM (ATM included), calls first,
    each ascending by strike. The engine keeps them subscribed so their ticks are fresh when a
    signal arrives (an unsubscribed option has no quote and would be refused as "no tick").
    Empty when no expiry qualifies.
    """
    expiry, current = _expiry_contracts(now, contracts, strikes)
    if expiry is None:
        return []
    width = max(strikes.subscribe_width, 0)
    chosen: list[OptionContract] = []
    for option_type in OPTION_TYPES:
        side = _by_strike(current, option_type)
        if not side:
            continue
        listed = sorted(side)
        position = listed.index(atm_strike(listed, spot))
        low, high = max(position - width, 0), position + width + 1
        chosen.extend(side[strike] for strike in listed[low:high])
    return chosen
