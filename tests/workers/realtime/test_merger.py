"""workers.realtime.merger: feed packets -> merged TickRecords."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from trading.dhan.feed_codec import (
    Disconnect,
    FullTick,
    MarketStatus,
    OpenInterest,
    PrevClose,
    decode_frame,
    encode_full,
)
from workers.realtime.merger import TickMerger

from .kit import (
    DEPTH,
    LTT,
    RECEIVED,
    quote,
    record,
    ticker,
)


def test_a_ticker_sets_ltp_true_epoch_exchange_time_and_float_receive_time() -> None:
    merger = TickMerger()
    (rec,) = merger.merge([ticker(55796, 152.5)])
    assert rec.key == "NSE_FNO:55796" and rec.seq == 1 and rec.ltp == 152.5
    assert rec.exchange_time == LTT - 19800 == 1795410000
    assert rec.receive_time == RECEIVED.timestamp()


def test_a_zero_ltp_never_overwrites_a_good_one() -> None:
    merger = TickMerger()
    merger.merge([ticker(1, 152.5)])
    (rec,) = merger.merge([ticker(1, 0.0, ltt=LTT + 5)])
    assert rec.ltp == 152.5 and rec.seq == 2 and rec.exchange_time == LTT + 5 - 19800
    (rec,) = merger.merge([quote(1, 0.0)])
    assert rec.ltp == 152.5 and rec.volume == 12000


def test_a_zero_ltt_keeps_the_last_exchange_time() -> None:
    merger = TickMerger()
    merger.merge([ticker(1, 10.0)])
    (rec,) = merger.merge([ticker(1, 11.0, ltt=0)])
    assert rec.ltp == 11.0 and rec.exchange_time == LTT - 19800


def test_a_key_without_a_price_yet_has_ltp_zero_and_no_exchange_time() -> None:
    merger = TickMerger()
    (rec,) = merger.merge([OpenInterest(2, 7, 5000, RECEIVED)])
    assert rec.ltp == 0.0 and rec.exchange_time is None and rec.oi == 5000 and rec.seq == 1


def test_seq_increases_per_key_and_the_same_key_can_appear_twice() -> None:
    merger = TickMerger()
    out = merger.merge([ticker(1, 10.0), ticker(2, 20.0), ticker(1, 11.0)])
    assert [(r.key, r.seq, r.ltp) for r in out] == [
        ("NSE_FNO:1", 1, 10.0),
        ("NSE_FNO:2", 1, 20.0),
        ("NSE_FNO:1", 2, 11.0),
    ]
    assert out[0] is not out[2] and out[0].ltp == 10.0  # handed-out records never change
    assert merger.get("NSE_FNO:1") is out[2]


def test_quote_full_oi_and_prev_close_fill_their_fields() -> None:
    merger = TickMerger()
    depth = [(10 * i, 20 * i, i, i + 1, 100.0 - i, 100.5 + i) for i in range(1, 6)]
    frame = encode_full(
        "NSE_FNO",
        9,
        ltp=100.25,
        ltt=LTT,
        ltq=50,
        atp=99.0,
        volume=700,
        oi=1234,
        open=98.0,
        close=0.0,
        high=101.0,
        low=97.0,
        depth=depth,
    )
    (full,) = decode_frame(frame, RECEIVED)
    assert isinstance(full, FullTick)
    (rec,) = merger.merge([full])
    assert (rec.ltp, rec.ltq, rec.atp, rec.volume, rec.oi) == (100.25, 50, 99.0, 700, 1234)
    assert (rec.open, rec.high, rec.low, rec.close) == (98.0, 101.0, 97.0, 0.0)
    assert (rec.bid, rec.bid_qty, rec.ask, rec.ask_qty) == (99.0, 10, 101.5, 20)
    assert rec.depth == tuple(depth)
    out = merger.merge([PrevClose(2, 9, 95.5, 1000, RECEIVED), quote(9, 100.5)])
    assert out[0].prev_close == 95.5 and out[0].seq == 2 and out[0].depth == tuple(depth)
    assert out[1].prev_close == 95.5 and out[1].ltq == 75 and out[1].oi == 1234
    assert out[1].seq == 3


def full_tick(sid: int = 9, ltp: float = 100.25, ltt: int = LTT) -> FullTick:
    frame = encode_full(
        "NSE_FNO",
        sid,
        ltp=ltp,
        ltt=ltt,
        ltq=50,
        atp=99.0,
        volume=700,
        oi=1234,
        open=98.0,
        close=0.0,
        high=101.0,
        low=97.0,
        depth=list(DEPTH),
    )
    (packet,) = decode_frame(frame, RECEIVED)
    assert isinstance(packet, FullTick)
    return packet


def test_each_packet_type_carries_over_exactly_the_fields_it_does_not_have() -> None:
    merger = TickMerger()
    merger.merge([PrevClose(2, 9, 95.5, 1000, RECEIVED)])
    (full,) = merger.merge([full_tick()])
    kept = replace(full)
    assert full.prev_close == 95.5 and full.seq == 2 and full.depth == DEPTH
    later = datetime(2026, 11, 23, 5, 0, 1, tzinfo=UTC)
    (after_ticker,) = merger.merge([ticker(9, 101.0, ltt=LTT + 1, received=later)])
    assert after_ticker == replace(
        full, seq=3, ltp=101.0, exchange_time=LTT + 1 - 19800, receive_time=later.timestamp()
    )
    (after_oi,) = merger.merge([OpenInterest(2, 9, 4321, later)])
    assert after_oi == replace(after_ticker, seq=4, oi=4321)
    (after_prev_close,) = merger.merge([PrevClose(2, 9, 96.0, 1000, later)])
    assert after_prev_close == replace(after_oi, seq=5, prev_close=96.0)
    (after_quote,) = merger.merge([quote(9, 102.0)])
    assert after_quote == replace(
        after_prev_close,
        seq=6,
        ltp=102.0,
        exchange_time=LTT - 19800,
        receive_time=RECEIVED.timestamp(),
        ltq=75,
        atp=151.5,
        volume=12000,
        open=150.0,
        close=0.0,
        high=155.0,
        low=149.0,
    )  # best bid/ask and depth stay those of the last full packet
    assert full == kept  # records handed out are never changed


def test_a_full_packet_with_zero_ltp_and_ltt_keeps_the_price_and_time() -> None:
    merger = TickMerger()
    merger.merge([ticker(9, 152.5)])
    (rec,) = merger.merge([full_tick(ltp=0.0, ltt=0)])
    assert rec.ltp == 152.5 and rec.exchange_time == LTT - 19800 and rec.oi == 1234


def test_packets_of_one_frame_with_different_receive_times_keep_their_own() -> None:
    later = RECEIVED + timedelta(milliseconds=5)
    merger = TickMerger()
    out = merger.merge([ticker(1, 1.0), ticker(2, 2.0, received=later), ticker(3, 3.0)])
    assert [r.receive_time for r in out] == [
        RECEIVED.timestamp(),
        later.timestamp(),
        RECEIVED.timestamp(),
    ]
    (rec,) = merger.merge([ticker(1, 1.5, received=later)])  # the cache spans frames too
    assert rec.receive_time == later.timestamp()


def test_market_status_and_disconnect_packets_are_ignored() -> None:
    merger = TickMerger()
    assert merger.merge([MarketStatus(0, 0, b"", RECEIVED), Disconnect(0, 0, 807, RECEIVED)]) == []
    assert merger.snapshot() == {}


def test_seq_start_and_load_continue_a_previous_writers_seqs() -> None:
    merger = TickMerger(seq_start=lambda key: 100 if key == "NSE_FNO:1" else 0)
    assert [r.seq for r in merger.merge([ticker(1, 1.0), ticker(2, 2.0)])] == [101, 1]
    other = TickMerger()
    other.load([record("NSE_FNO:5", seq=41, ltp=77.0)])
    (rec,) = other.merge([ticker(5, 0.0)])
    assert rec.seq == 42 and rec.ltp == 77.0
    assert set(other.snapshot()) == {"NSE_FNO:5"}


def test_a_packet_without_receive_time_gets_the_wall_clock() -> None:
    before = time.time()
    (rec,) = TickMerger().merge([ticker(1, 1.0, received=None)])
    assert before <= rec.receive_time <= time.time()
