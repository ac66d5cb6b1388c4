"""GET /api/signals/ and /api/signals/<id>/ (admin users only)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.support.rows import INDICATORS, INTENT, ids, ist, make_signal

pytestmark = pytest.mark.django_db

SIGNALS = "/api/signals/"
BAD_DATE = "expected a date as YYYY-MM-DD from 2000-01-01 to 2099-12-31, got "


def test_the_list_shows_each_signal_without_the_bulky_json(admin_api):
    signal = make_signal(
        outcome="blocked", gate="max_trades", block_reason="8 trades today", reason=""
    )
    response = admin_api.get(SIGNALS)
    assert response.status_code == 200
    assert response.json() == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "id": signal.id,
                "index": "NIFTY",
                "timeframe": 300,
                "candle_start": "2026-11-23T10:15:00+05:30",
                "close": "26012.3500",
                "direction": "bullish",
                "confidence": 0.72,
                "reason": "",
                "outcome": "blocked",
                "gate": "max_trades",
                "block_reason": "8 trades today",
                "config_version": "v1a2b3c4",
                "decided_at": None,
                "created_at": response.json()["results"][0]["created_at"],
            }
        ],
    }


def test_the_detail_adds_the_indicators_and_the_intent(admin_api):
    signal = make_signal(decided_at=ist(2026, 11, 23, 10, 20))
    response = admin_api.get(f"{SIGNALS}{signal.id}/")
    assert response.status_code == 200
    body = response.json()
    assert body["indicators"] == INDICATORS
    assert body["intent"] == INTENT
    assert body["decided_at"] == "2026-11-23T10:20:00+05:30"
    assert body["id"] == signal.id


def test_the_detail_of_a_signal_that_never_got_an_intent_says_null(admin_api):
    signal = make_signal(direction="avoid", outcome="avoid", reason="adx below 20")
    assert admin_api.get(f"{SIGNALS}{signal.id}/").json()["intent"] is None


def test_an_unknown_signal_is_404(admin_api):
    assert admin_api.get(f"{SIGNALS}999/").status_code == 404


def test_the_newest_candle_comes_first(admin_api):
    old = make_signal(candle_start=ist(2026, 11, 20, 9, 30))
    new = make_signal(candle_start=ist(2026, 11, 23, 9, 30))
    mid = make_signal(candle_start=ist(2026, 11, 21, 9, 30))
    assert ids(admin_api.get(SIGNALS)) == [new.id, mid.id, old.id]


def test_limit_and_offset_page_through_the_list(admin_api):
    rows = [make_signal(candle_start=ist(2026, 11, 23, 9, 15 + 5 * n)) for n in range(5)]
    newest_first = [row.id for row in reversed(rows)]
    first = admin_api.get(SIGNALS, {"limit": 2})
    body = first.json()
    assert body["count"] == 5
    assert ids(first) == newest_first[:2]
    assert body["previous"] is None
    assert "offset=2" in body["next"]
    second = admin_api.get(body["next"])
    assert ids(second) == newest_first[2:4]
    assert ids(admin_api.get(SIGNALS, {"limit": 2, "offset": 4})) == newest_first[4:]


def test_filters_by_index_case_insensitively(admin_api):
    nifty = make_signal(index="NIFTY")
    make_signal(index="BANKNIFTY")
    assert ids(admin_api.get(SIGNALS, {"index": "NIFTY"})) == [nifty.id]
    assert ids(admin_api.get(SIGNALS, {"index": "nifty"})) == [nifty.id]
    assert ids(admin_api.get(SIGNALS, {"index": "SENSEX"})) == []  # well formed: empty page


def test_filters_by_outcome_and_direction_together(admin_api):
    wanted = make_signal(direction="bearish", outcome="blocked", gate="kill_switch")
    make_signal(index="BANKNIFTY", direction="bullish", outcome="blocked", gate="kill_switch")
    make_signal(index="FINNIFTY", direction="bearish", outcome="intent")
    response = admin_api.get(SIGNALS, {"outcome": "blocked", "direction": "bearish"})
    assert ids(response) == [wanted.id]


def test_the_date_filter_is_the_ist_calendar_day_of_the_candle(admin_api):
    # 00:10 IST on the 23rd is still the 22nd in UTC; 23:55 IST on the 23rd is the 23rd in
    # UTC; midnight IST on the 24th is the 23rd in UTC. Only the IST day counts.
    early = make_signal(candle_start=ist(2026, 11, 23, 0, 10))
    late = make_signal(candle_start=ist(2026, 11, 23, 23, 55))
    make_signal(candle_start=ist(2026, 11, 24, 0, 0))
    make_signal(candle_start=ist(2026, 11, 22, 23, 55))
    assert ids(admin_api.get(SIGNALS, {"date": "2026-11-23"})) == [late.id, early.id]


def test_an_empty_filter_value_means_no_filter(admin_api):
    signal = make_signal()
    assert ids(admin_api.get(SIGNALS, {"index": "", "outcome": "", "date": ""})) == [signal.id]


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        (
            {"index": "NIFTY 50!"},
            {"index": ["expected an index symbol such as NIFTY, got 'NIFTY 50!'"]},
        ),
        (
            {"outcome": "won"},
            {
                "outcome": [
                    "expected one of 'pending', 'avoid', 'blocked', 'intent', 'rejected', "
                    "'stale', got 'won'"
                ]
            },
        ),
        (
            {"direction": "up"},
            {"direction": ["expected one of 'bullish', 'bearish', 'avoid', got 'up'"]},
        ),
        (
            {"date": "23-11-2026"},
            {"date": [BAD_DATE + "'23-11-2026'"]},
        ),
        (
            {"date": "2026-02-30"},
            {"date": [BAD_DATE + "'2026-02-30'"]},
        ),
        (
            {"date": "20261123"},
            {"date": [BAD_DATE + "'20261123'"]},
        ),
        ({"limit": "0"}, {"limit": ["expected a whole number from 1 to 500, got '0'"]}),
        ({"limit": "501"}, {"limit": ["expected a whole number from 1 to 500, got '501'"]}),
        ({"limit": "ten"}, {"limit": ["expected a whole number from 1 to 500, got 'ten'"]}),
        ({"offset": "-1"}, {"offset": ["expected a whole number from 0 to 1000000000, got '-1'"]}),
        ({"indx": "NIFTY"}, {"indx": ["unknown query parameter"]}),
        (
            {"outcome": "won", "date": "today"},
            {
                "outcome": [
                    "expected one of 'pending', 'avoid', 'blocked', 'intent', 'rejected', "
                    "'stale', got 'won'"
                ],
                "date": [BAD_DATE + "'today'"],
            },
        ),
    ],
    ids=[
        "index",
        "outcome",
        "direction",
        "date order",
        "no such day",
        "date without dashes",
        "limit zero",
        "limit too big",
        "limit not a number",
        "negative offset",
        "unknown parameter",
        "every bad one at once",
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(admin_api, params, errors):
    make_signal()
    response = admin_api.get(SIGNALS, params)
    assert response.status_code == 400
    assert response.json() == errors


def test_a_filter_given_twice_is_a_400(admin_api):
    response = admin_api.get(f"{SIGNALS}?index=NIFTY&index=SENSEX")
    assert response.status_code == 400
    assert response.json() == {"index": ["give this parameter at most once"]}


@pytest.mark.parametrize("staff", [None, False], ids=["anonymous", "not staff"])
def test_signals_are_for_admin_users_only(django_user_model, staff):
    signal = make_signal()
    api = APIClient()
    if staff is not None:
        api.force_authenticate(django_user_model.objects.create_user("viewer", "v@example.com"))
    assert api.get(SIGNALS).status_code == 403
    assert api.get(f"{SIGNALS}{signal.id}/").status_code == 403
