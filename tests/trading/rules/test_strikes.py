"""trading.rules.strikes: expiry, ATM, offset strike, liquidity and the choice; no database."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.trading.rules.factories import make_config, make_index
from trading.rules.strikes import (
    OptionContract,
    OptionQuote,
    atm_strike,
    candidate_contracts,
    choose_expiry,
    choose_strike,
    liquidity_reason,
    offset_strike,
)

IST = ZoneInfo("Asia/Kolkata")
CFG = make_config()
NIFTY_EXPIRY = date(2026, 11, 24)  # a Tuesday
NIFTY_NEXT = date(2026, 12, 1)
SENSEX_EXPIRY = date(2026, 11, 26)  # a Thursday
MONDAY_10AM = datetime(2026, 11, 23, 10, 0, tzinfo=IST)

NIFTY_STRIKES = [Decimal(k) for k in range(23800, 24201, 50)]
SENSEX_STRIKES = [Decimal(k) for k in range(79700, 80301, 100)]
# Uneven, as the exchanges list them: 50 apart near the money, 100 further out, plus a strike
# added intraday (24075) that breaks any computed step.
UNEVEN_STRIKES = [
    Decimal(k) for k in (23700, 23800, 23900, 23950, 24000, 24050, 24075, 24100, 24200, 24300)
]


def D(text: str) -> Decimal:
    return Decimal(text)


def chain(
    underlying: str,
    expiry: date,
    strikes: Iterable[Decimal],
    *,
    segment: str = "NSE_FNO",
    lot_size: int = 65,
) -> list[OptionContract]:
    """CE and PE contracts of one expiry; security ids encode expiry day, strike and type."""
    out = []
    for strike in strikes:
        for offset, kind in ((1, "CE"), (2, "PE")):
            out.append(
                OptionContract(
                    exchange_segment=segment,
                    security_id=expiry.day * 10_000_000 + int(strike) * 10 + offset,
                    symbol=f"{underlying}-{expiry:%d%b%Y}-{strike}-{kind}",
                    underlying=underlying,
                    expiry=expiry,
                    strike=strike,
                    option_type=kind,
                    lot_size=lot_size,
                    tick_size=D("0.05"),
                )
            )
    return out


def find(contracts: list[OptionContract], strike: str, kind: str, expiry: date) -> OptionContract:
    return next(
        c
        for c in contracts
        if c.strike == D(strike) and c.option_type == kind and c.expiry == expiry
    )


GOOD = OptionQuote(ltp=120.0, bid=119.9, ask=120.1, oi=100_000, age_seconds=0.5)


def quotes_for(contracts: list[OptionContract], **bad: OptionQuote) -> dict[str, OptionQuote]:
    """A liquid quote for every contract; ``bad`` maps a strike+type label ("24050CE") to a
    different quote (for every expiry)."""
    result = {}
    for c in contracts:
        label = f"{c.strike}{c.option_type}"
        result[c.key] = bad.get(label, GOOD)
    return result


NIFTY_CHAIN = [
    *chain("NIFTY", NIFTY_EXPIRY, NIFTY_STRIKES),
    *chain("NIFTY", NIFTY_NEXT, NIFTY_STRIKES),
]
SENSEX_CHAIN = chain("SENSEX", SENSEX_EXPIRY, SENSEX_STRIKES, segment="BSE_FNO", lot_size=20)


# -- choose_expiry --------------------------------------------------------------------------------

CUTOFF = time(13, 0)
EXPIRIES = [NIFTY_NEXT, NIFTY_EXPIRY, date(2026, 11, 17)]  # unsorted, with a past one


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(MONDAY_10AM, NIFTY_EXPIRY, id="the-day-before-takes-tomorrows"),
        pytest.param(
            datetime(2026, 11, 24, 12, 59, 59, tzinfo=IST),
            NIFTY_EXPIRY,
            id="expiry-day-before-13h-keeps-todays",
        ),
        pytest.param(
            datetime(2026, 11, 24, 13, 0, tzinfo=IST),
            NIFTY_NEXT,
            id="expiry-day-at-13h-rolls-over",
        ),
        pytest.param(
            datetime(2026, 11, 24, 14, 30, tzinfo=IST),
            NIFTY_NEXT,
            id="expiry-day-after-13h-rolls-over",
        ),
        pytest.param(
            datetime(2026, 11, 24, 7, 29, tzinfo=UTC),
            NIFTY_EXPIRY,
            id="utc-0729-is-1259-ist-keeps-todays",
        ),
        pytest.param(
            datetime(2026, 11, 24, 7, 30, tzinfo=UTC),
            NIFTY_NEXT,
            id="utc-0730-is-1300-ist-rolls-over",
        ),
        pytest.param(
            datetime(2026, 12, 2, 9, 30, tzinfo=IST), None, id="nothing-listed-ahead-is-none"
        ),
    ],
)
def test_choose_expiry_takes_the_nearest_expiry_not_yet_past_its_cutoff(now, expected):
    assert choose_expiry(EXPIRIES, now, CUTOFF) == expected


def test_choose_expiry_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="aware"):
        choose_expiry(EXPIRIES, datetime(2026, 11, 23, 10, 0), CUTOFF)


# -- atm_strike -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strikes", "spot", "expected"),
    [
        pytest.param(NIFTY_STRIKES, 24012.4, D("24000"), id="nifty-nearest-below"),
        pytest.param(NIFTY_STRIKES, 24026.0, D("24050"), id="nifty-nearest-above"),
        pytest.param(NIFTY_STRIKES, 24025.0, D("24000"), id="exact-tie-takes-the-lower"),
        pytest.param(NIFTY_STRIKES, D("24074.99"), D("24050"), id="decimal-spot"),
        pytest.param(NIFTY_STRIKES, 30000.0, D("24200"), id="spot-beyond-the-listing"),
        pytest.param(SENSEX_STRIKES, 80049.0, D("80000"), id="sensex-100-steps"),
        pytest.param(SENSEX_STRIKES, 80051.0, D("80100"), id="sensex-nearest-above"),
        pytest.param(UNEVEN_STRIKES, 24070.0, D("24075"), id="uneven-listing-intraday-strike"),
    ],
)
def test_atm_is_the_listed_strike_nearest_to_spot(strikes, spot, expected):
    assert atm_strike(strikes, spot) == expected


def test_atm_of_an_empty_listing_is_an_error():
    with pytest.raises(ValueError, match="no strikes listed"):
        atm_strike([], 24000.0)


# -- offset_strike --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strikes", "atm", "offset", "kind", "expected"),
    [
        pytest.param(NIFTY_STRIKES, "24000", 0, "CE", "24000", id="zero-is-atm"),
        pytest.param(NIFTY_STRIKES, "24000", 1, "CE", "24050", id="ce-plus1-otm-is-higher"),
        pytest.param(NIFTY_STRIKES, "24000", 1, "PE", "23950", id="pe-plus1-otm-is-lower"),
        pytest.param(NIFTY_STRIKES, "24000", -1, "CE", "23950", id="ce-minus1-itm-is-lower"),
        pytest.param(NIFTY_STRIKES, "24000", -1, "PE", "24050", id="pe-minus1-itm-is-higher"),
        pytest.param(NIFTY_STRIKES, "24000", 2, "CE", "24100", id="ce-plus2"),
        pytest.param(SENSEX_STRIKES, "80000", 1, "CE", "80100", id="sensex-ce-plus1-is-100-up"),
        pytest.param(SENSEX_STRIKES, "80000", 1, "PE", "79900", id="sensex-pe-plus1-is-100-down"),
        pytest.param(UNEVEN_STRIKES, "24050", 1, "CE", "24075", id="uneven-next-listed-not-+50"),
        pytest.param(UNEVEN_STRIKES, "24100", 1, "CE", "24200", id="uneven-wider-step-out"),
        pytest.param(UNEVEN_STRIKES, "23900", 1, "PE", "23800", id="uneven-pe-wider-step-down"),
        pytest.param(NIFTY_STRIKES, "24200", 1, "CE", None, id="ce-off-the-top-is-none"),
        pytest.param(NIFTY_STRIKES, "23800", 1, "PE", None, id="pe-off-the-bottom-is-none"),
        pytest.param(NIFTY_STRIKES, "23800", -1, "CE", None, id="ce-itm-off-the-bottom-is-none"),
    ],
)
def test_offset_steps_follow_the_listed_strikes(strikes, atm, offset, kind, expected):
    result = offset_strike(strikes, D(atm), offset, kind)
    assert result == (None if expected is None else D(expected))


@pytest.mark.parametrize(
    ("atm", "kind", "match"),
    [
        pytest.param("24010", "CE", "not among the listed", id="atm-not-listed"),
        pytest.param("24000", "XX", "CE or PE", id="bad-option-type"),
    ],
)
def test_offset_strike_refuses_caller_mistakes(atm, kind, match):
    with pytest.raises(ValueError, match=match):
        offset_strike(NIFTY_STRIKES, D(atm), 1, kind)


# -- liquidity_reason -----------------------------------------------------------------------------

BAND = make_index("NIFTY").premium_band  # 50-300


def quote(**changes: object) -> OptionQuote:
    return dataclasses.replace(GOOD, **changes)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param(GOOD, None, id="liquid-passes"),
        pytest.param(None, "no tick for the option yet", id="no-tick"),
        pytest.param(quote(age_seconds=3.1), "option tick 3.1 s old (limit 2 s)", id="stale-tick"),
        pytest.param(quote(age_seconds=2.0), None, id="tick-exactly-at-the-age-limit-passes"),
        pytest.param(quote(ltp=0.0, bid=None, ask=None), "no trade yet: LTP 0", id="ltp-zero"),
        pytest.param(
            quote(ltp=100.0, bid=98.0, ask=100.1),
            "spread 2.10 is 2.10% of LTP 100.00 (limit 1.50%)",
            id="wide-spread",
        ),
        pytest.param(
            quote(ltp=100.0, bid=99.25, ask=100.75), None, id="spread-exactly-at-the-limit-passes"
        ),
        pytest.param(
            quote(ltp=100.0, bid=None, ask=None), None, id="spread-unknown-without-depth-passes"
        ),
        pytest.param(quote(bid=0.0), "no bid in the book (ask 120.10)", id="empty-bid-side"),
        pytest.param(quote(oi=4999), "OI 4999 below the minimum 5000", id="low-oi"),
        pytest.param(quote(oi=5000), None, id="oi-at-the-minimum-passes"),
        pytest.param(quote(oi=None), None, id="oi-unknown-passes"),
        pytest.param(
            quote(ltp=49.95, bid=49.9, ask=50.0),
            "premium 49.95 outside the band 50.00-300.00",
            id="premium-below-the-band",
        ),
        pytest.param(
            quote(ltp=300.05, bid=300.0, ask=300.1),
            "premium 300.05 outside the band 50.00-300.00",
            id="premium-above-the-band",
        ),
        pytest.param(quote(ltp=300.0, bid=299.9, ask=300.1), None, id="premium-at-the-top-edge"),
        pytest.param(quote(ltp=50.0, bid=49.95, ask=50.05), None, id="premium-at-the-bottom-edge"),
    ],
)
def test_liquidity_reason_names_the_first_problem(q, expected):
    assert liquidity_reason(q, BAND, CFG.strikes, CFG.feed) == expected


def test_a_stale_tick_is_reported_before_anything_else():
    stale_and_bad = OptionQuote(ltp=0.0, bid=1.0, ask=9.0, oi=1, age_seconds=60.0)
    assert liquidity_reason(stale_and_bad, BAND, CFG.strikes, CFG.feed).startswith("option tick")


# -- choose_strike --------------------------------------------------------------------------------


def choose(
    direction,
    *,
    spot=24012.0,
    now=MONDAY_10AM,
    contracts=NIFTY_CHAIN,
    quotes=None,
    offset=0,
    index="NIFTY",
):
    cfg = make_config(strikes__offset=offset)
    return choose_strike(
        direction,
        spot,
        now,
        contracts,
        quotes_for(contracts) if quotes is None else quotes,
        cfg.index(index),
        cfg.strikes,
        cfg.feed,
    )


@pytest.mark.parametrize(
    ("direction", "offset", "kind", "strike"),
    [
        pytest.param("bullish", 0, "CE", "24000", id="bullish-atm-call"),
        pytest.param("bearish", 0, "PE", "24000", id="bearish-atm-put"),
        pytest.param("bullish", 1, "CE", "24050", id="bullish-plus1-otm-call"),
        pytest.param("bearish", 1, "PE", "23950", id="bearish-plus1-otm-put"),
        pytest.param("bullish", -1, "CE", "23950", id="bullish-minus1-itm-call"),
        pytest.param("bearish", -1, "PE", "24050", id="bearish-minus1-itm-put"),
    ],
)
def test_it_buys_the_offset_strike_of_the_nearest_expiry(direction, offset, kind, strike):
    choice = choose(direction, offset=offset)
    assert choice.ok and choice.reason is None
    assert choice.contract == find(NIFTY_CHAIN, strike, kind, NIFTY_EXPIRY)
    assert (choice.expiry, choice.atm, choice.tried) == (NIFTY_EXPIRY, D("24000"), ())


@pytest.mark.parametrize(
    ("direction", "offset", "strike"),
    [
        pytest.param("bullish", 1, "80100", id="sensex-call-plus1-is-100-up"),
        pytest.param("bearish", 1, "79900", id="sensex-put-plus1-is-100-down"),
        pytest.param("bullish", 0, "80000", id="sensex-atm"),
    ],
)
def test_bse_sensex_steps_come_from_its_listing(direction, offset, strike):
    choice = choose(direction, spot=80030.0, contracts=SENSEX_CHAIN, offset=offset, index="SENSEX")
    kind = "CE" if direction == "bullish" else "PE"
    assert choice.contract == find(SENSEX_CHAIN, strike, kind, SENSEX_EXPIRY)
    assert choice.contract.exchange_segment == "BSE_FNO"


def test_an_uneven_listing_steps_to_the_next_listed_strike():
    contracts = chain("NIFTY", NIFTY_EXPIRY, UNEVEN_STRIKES)
    choice = choose("bullish", spot=24052.0, contracts=contracts, offset=1)
    assert choice.atm == D("24050")
    assert choice.contract.strike == D("24075")


def test_the_index_strike_offset_overrides_the_global_one():
    cfg = make_config(indices=(make_index("NIFTY", strike_offset=1),))
    choice = choose_strike(
        "bullish",
        24012.0,
        MONDAY_10AM,
        NIFTY_CHAIN,
        quotes_for(NIFTY_CHAIN),
        cfg.index("NIFTY"),
        cfg.strikes,
        cfg.feed,
    )
    assert choice.contract.strike == D("24050")


def test_an_illiquid_offset_strike_falls_back_to_atm_and_records_why():
    wide = quote(ltp=100.0, bid=97.0, ask=100.0)
    choice = choose("bullish", offset=1, quotes=quotes_for(NIFTY_CHAIN, **{"24050CE": wide}))
    offset_contract = find(NIFTY_CHAIN, "24050", "CE", NIFTY_EXPIRY)
    assert choice.contract == find(NIFTY_CHAIN, "24000", "CE", NIFTY_EXPIRY)
    assert choice.tried == (
        (offset_contract.key, "spread 3.00 is 3.00% of LTP 100.00 (limit 1.50%)"),
    )


def test_an_offset_strike_off_the_listing_falls_back_to_atm():
    choice = choose("bullish", spot=24190.0, offset=1)
    assert choice.contract == find(NIFTY_CHAIN, "24200", "CE", NIFTY_EXPIRY)
    assert choice.tried == (
        (
            "NIFTY 2026-11-24 +1 OTM CE",
            "no strike listed 1 step(s) OTM of ATM 24200 CE",
        ),
    )


def test_when_offset_and_atm_both_fail_it_blocks_naming_both_reasons():
    quotes = quotes_for(
        NIFTY_CHAIN,
        **{"24050CE": quote(oi=10), "24000CE": quote(age_seconds=3.1)},
    )
    choice = choose("bullish", offset=1, quotes=quotes)
    assert not choice.ok and choice.contract is None
    assert choice.reason == (
        "+1 OTM 24050 CE: OI 10 below the minimum 5000; "
        "ATM 24000 CE: option tick 3.1 s old (limit 2 s)"
    )
    assert [reason for _, reason in choice.tried] == [
        "OI 10 below the minimum 5000",
        "option tick 3.1 s old (limit 2 s)",
    ]
    assert (choice.expiry, choice.atm) == (NIFTY_EXPIRY, D("24000"))


def test_at_atm_offset_a_failing_atm_blocks_with_its_reason():
    quotes = {
        k: v
        for k, v in quotes_for(NIFTY_CHAIN).items()
        if k != find(NIFTY_CHAIN, "24000", "PE", NIFTY_EXPIRY).key
    }
    choice = choose("bearish", quotes=quotes)
    assert choice.reason == "ATM 24000 PE: no tick for the option yet"


@pytest.mark.parametrize(
    ("now", "expiry"),
    [
        pytest.param(datetime(2026, 11, 24, 12, 59, tzinfo=IST), NIFTY_EXPIRY, id="before-13h"),
        pytest.param(datetime(2026, 11, 24, 13, 0, tzinfo=IST), NIFTY_NEXT, id="at-13h-rolls"),
    ],
)
def test_on_expiry_day_the_choice_rolls_to_the_next_expiry_after_the_cutoff(now, expiry):
    choice = choose("bullish", now=now)
    assert choice.contract == find(NIFTY_CHAIN, "24000", "CE", expiry)
    assert choice.expiry == expiry


def test_with_no_expiry_ahead_it_blocks_and_says_so():
    choice = choose("bullish", now=datetime(2026, 12, 2, 10, 0, tzinfo=IST))
    assert choice.reason == (
        "no NIFTY option expiry listed on or after 2026-12-02 (today's is skipped from 13:00): "
        "is the catalog current?"
    )
    assert (choice.contract, choice.expiry, choice.atm) == (None, None, None)


def test_an_unknown_direction_is_an_error():
    with pytest.raises(ValueError, match="bullish or bearish"):
        choose("avoid")


# -- candidate_contracts --------------------------------------------------------------------------


def test_candidates_are_calls_and_puts_within_the_width_of_atm():
    cfg = make_config(strikes__subscribe_width=1)
    found = candidate_contracts(24012.0, MONDAY_10AM, NIFTY_CHAIN, cfg.strikes)
    assert [(c.option_type, c.strike, c.expiry) for c in found] == [
        (kind, D(k), NIFTY_EXPIRY) for kind in ("CE", "PE") for k in ("23950", "24000", "24050")
    ]


def test_candidates_stop_at_the_edge_of_the_listing_and_follow_the_rollover():
    cfg = make_config(strikes__subscribe_width=2)
    after_cutoff = datetime(2026, 11, 24, 13, 30, tzinfo=IST)
    found = candidate_contracts(24190.0, after_cutoff, NIFTY_CHAIN, cfg.strikes)
    assert {c.expiry for c in found} == {NIFTY_NEXT}
    assert sorted({c.strike for c in found}) == [D("24100"), D("24150"), D("24200")]
    assert len(found) == 6


def test_no_expiry_ahead_means_no_candidates():
    later = datetime(2026, 12, 2, 10, 0, tzinfo=IST)
    assert candidate_contracts(24000.0, later, NIFTY_CHAIN, CFG.strikes) == []


def test_the_contract_key_is_segment_and_security_id():
    contract = find(SENSEX_CHAIN, "80000", "CE", SENSEX_EXPIRY)
    assert contract.key == f"BSE_FNO:{contract.security_id}"
