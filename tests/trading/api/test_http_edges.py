"""Bodies and query strings at the edges answer 4xx naming the problem, never a 500, and store
nothing: lone surrogates, NUL characters, deep nesting, oversized or non-UTF-8 bodies, numbers
JSON cannot carry, duplicate keys, dates and numbers outside what the database holds."""

from __future__ import annotations

import pytest

from tests.support.rows import make_signal
from trading.api.overrides import overrides_version
from trading.api.parsers import MAX_BODY_BYTES, MAX_DEPTH
from trading.config.load import OVERRIDES_KEY
from trading.models import Setting
from trading.switches import KILL_SWITCH_KEY, TRADING_SWITCH_KEY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

OVERRIDES = "/api/config/overrides/"
SWITCHES = "/api/switches/"
STORED = {"risk": {"max_trades_per_day": 6}}


@pytest.fixture(autouse=True)
def stored() -> None:
    Setting.put(OVERRIDES_KEY, STORED)


def settings_rows() -> dict[str, object]:
    return dict(Setting.objects.values_list("key", "value"))


def send(api, path: str, raw: bytes | str) -> object:
    extra = {"HTTP_IF_MATCH": f'"{overrides_version(Setting.get(OVERRIDES_KEY))}"'}
    method = "PUT" if path == OVERRIDES else "PATCH"
    return api.generic(method, path, raw, content_type="application/json", **extra)


def refused(api, path: str, raw: bytes | str, *parts: str) -> None:
    before = settings_rows()
    response = send(api, path, raw)
    assert response.status_code == 400, response.content
    text = response.content.decode()
    for part in parts:
        assert part in text, text
    assert settings_rows() == before


NESTED = '{"a":' * 800 + "1" + "}" * 800


@pytest.mark.parametrize("path", [OVERRIDES, SWITCHES])
@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ('{"\\ud800": 1}', ["lone surrogate", "\\\\ud800"]),
        ('{"kill_switch": {"active": true, "reason": "\\udfff x"}}', ["lone surrogate"]),
        ('{"kill_switch": {"active": true, "reason": "a\\u0000b"}}', ["NUL character"]),
        (NESTED, ["nested deeper than", str(MAX_DEPTH)]),
        ("[" * 100_000 + "]" * 100_000, ["larger than"]),
        ("[" * 20_000 + "]" * 20_000, ["nested deeper than"]),
        (b'{"a": "\xff\xfe"}', ["not valid UTF-8"]),
        ('{"a": NaN}', ["NaN"]),
        ('{"a": 1e999}', ["out of range"]),
        ('{"a": 1, "a": 2}', ["duplicate key", "'a'"]),
        ('{"a": ' + "9" * 5000 + "}", ["an integer of 5,000 digits", "at most 30"]),
        ('{"a": -' + "9" * 31 + "}", ["an integer of 31 digits"]),
        ("{", ["JSON parse error"]),
    ],
    ids=[
        "lone surrogate key",
        "lone surrogate value",
        "NUL",
        "800 levels",
        "too large",
        "20000 levels",
        "not UTF-8",
        "NaN",
        "1e999",
        "duplicate key",
        "5000 digits",
        "31 digits",
        "truncated",
    ],
)
def test_a_body_json_cannot_carry_safely_is_a_400_naming_it(admin_api, path, raw, parts):
    refused(admin_api, path, raw, *parts)


def test_the_limits_leave_room_for_any_real_override():
    assert MAX_DEPTH >= 16  # algo.yml nests 5 levels deep
    assert MAX_BODY_BYTES >= 64 * 1024  # the whole of algo.yml is under 10 KB


def test_a_seed_cash_beyond_what_a_decimal_holds_is_a_400(admin_api):
    # The config validation raised decimal.Overflow (a 500); its bounds now name the key.
    refused(
        admin_api,
        OVERRIDES,
        '{"paper": {"seed_cash": "1e999999999"}}',
        "paper.seed_cash: expected an amount in rupees, to the paisa, above 0 and at most",
    )
    assert Setting.get(TRADING_SWITCH_KEY) is None and Setting.get(KILL_SWITCH_KEY) is None


@pytest.mark.parametrize(
    "query",
    [
        "date=9999-12-31",
        "date=0001-01-01",
        "date=1899-12-31",
        "offset=99999999999999999999",
        "offset=" + "9" * 5000,
        "limit=" + "9" * 5000,
    ],
)
def test_dates_and_numbers_outside_what_the_database_holds_are_a_400(admin_api, query):
    make_signal()
    response = admin_api.get(f"/api/signals/?{query}")
    assert response.status_code == 400, response.content
    name = query.partition("=")[0]
    assert list(response.json()) == [name]


def test_the_date_filter_still_finds_a_real_day(admin_api):
    make_signal()
    assert admin_api.get("/api/signals/?date=2026-11-23").json()["count"] == 1
    assert admin_api.get("/api/signals/?date=2099-12-31").json()["count"] == 0


@pytest.mark.parametrize("path", ["/api/signals/", "/api/positions/"])
def test_an_id_beyond_the_databases_integers_is_a_404(admin_api, path):
    assert admin_api.get(f"{path}99999999999999999999/").status_code == 404
    assert admin_api.get(f"{path}9223372036854775807/").status_code == 404


def test_an_index_override_that_is_not_a_mapping_is_a_400(admin_api):
    # Found by the fuzz (test_fuzz_api.py): the config's merge raised AttributeError (a 500).
    for body in ('{"indices": {"BANKNIFTY": []}}', '{"indices": {"BANKNIFTY": 5}}'):
        refused(admin_api, OVERRIDES, body, "indices[1]: expected a mapping")
