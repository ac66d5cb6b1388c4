"""instruments.catalog: the queries trading code uses, over the imported compact fixture."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import yaml

from instruments import catalog
from instruments.catalog import CatalogError
from instruments.config import catalog_config
from instruments.models import Derivative, Instrument

pytestmark = [pytest.mark.catalog, pytest.mark.django_db]

OCT_10, OCT_17 = date(2024, 10, 10), date(2024, 10, 17)


@pytest.fixture(autouse=True)
def imported(import_file, compact_file) -> None:
    import_file(compact_file)


def deactivate(**lookup: object) -> None:
    """As a re-import does for a contract that left the file but is still referenced."""
    Derivative.objects.filter(**lookup).update(is_active=False)


# -- indices ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["NIFTY", "nifty", " Nifty ", "Nifty 50", "NIFTY 50"])
def test_index_by_name_finds_nifty_as_idx_i_13(name):
    nifty = catalog.index_by_name(name)
    assert (nifty.exchange_segment, nifty.security_id, nifty.trading_symbol) == (
        "IDX_I",
        13,
        "NIFTY",
    )


def test_index_by_name_finds_a_bse_index():
    assert catalog.index_by_name("sensex").security_id == 51


def test_an_unknown_index_raises_a_catalog_error_naming_it():
    with pytest.raises(CatalogError, match="no index named 'NIFTYX'"):
        catalog.index_by_name("NIFTYX")


def test_an_equity_is_not_an_index():
    with pytest.raises(CatalogError):
        catalog.index_by_name("RELIANCE")


def test_an_inactive_index_is_not_found():
    Instrument.objects.filter(security_id=13).update(is_active=False)
    with pytest.raises(CatalogError):
        catalog.index_by_name("NIFTY")


# -- expiries -----------------------------------------------------------------------------------


def test_option_expiries_on_or_after_a_date_nearest_first():
    assert catalog.expiries("NIFTY", date(2024, 10, 1)) == [OCT_10, OCT_17]
    assert catalog.expiries("NIFTY", OCT_10) == [OCT_10, OCT_17]  # on the day counts
    assert catalog.expiries("NIFTY", date(2024, 10, 11)) == [OCT_17]
    assert catalog.expiries("NIFTY", date(2024, 10, 18)) == []


def test_future_expiries_are_separate_from_option_expiries():
    assert catalog.expiries("NIFTY", date(2024, 10, 1), kind="futures") == [
        date(2024, 10, 31),
        date(2024, 11, 28),
    ]
    assert catalog.expiries("NIFTY", date(2024, 11, 1), kind="futures") == [date(2024, 11, 28)]
    assert catalog.expiries("SENSEX", date(2024, 10, 1), kind="futures") == []


def test_expiries_accept_the_underlying_instrument():
    sensex = Instrument.objects.get(exchange_segment="IDX_I", security_id=51)
    assert catalog.expiries(sensex, date(2024, 10, 1)) == [date(2024, 10, 11)]


def test_expiries_reject_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be 'options' or 'futures'"):
        catalog.expiries("NIFTY", date(2024, 10, 1), kind="swaps")


def test_an_expiry_with_only_inactive_contracts_is_not_listed():
    deactivate(underlying__security_id=13, expiry_date=OCT_17)
    assert catalog.expiries("NIFTY", date(2024, 10, 1)) == [OCT_10]


# -- contracts and strikes ----------------------------------------------------------------------


@pytest.mark.parametrize("strike", [25800, "25800", Decimal("25800.00"), "25800.0"])
def test_option_contract_finds_the_contract(strike):
    call = catalog.option_contract("NIFTY", OCT_10, strike, "CE")
    assert (call.exchange_segment, call.security_id) == ("NSE_FNO", 44430)
    put = catalog.option_contract("nifty", OCT_10, strike, "pe")
    assert put.security_id == 44431


def test_option_contract_tells_expiries_apart():
    assert catalog.option_contract("NIFTY", OCT_17, 25800, "CE").security_id == 44501


def test_option_contract_on_a_bse_index():
    put = catalog.option_contract("SENSEX", date(2024, 10, 11), 81800, "PE")
    assert (put.exchange_segment, put.security_id, put.tick_size) == (
        "BSE_FNO",
        1123772,
        Decimal("0.05"),
    )


def test_a_missing_option_contract_raises_a_catalog_error():
    with pytest.raises(CatalogError, match="no NIFTY 2024-10-10 26000 CE contract"):
        catalog.option_contract("NIFTY", OCT_10, 26000, "CE")


def test_an_option_type_other_than_ce_or_pe_is_refused():
    with pytest.raises(ValueError, match="CE or PE"):
        catalog.option_contract("NIFTY", OCT_10, 25800, "XX")


def test_an_inactive_option_contract_is_not_returned():
    deactivate(security_id=44430)
    with pytest.raises(CatalogError):
        catalog.option_contract("NIFTY", OCT_10, 25800, "CE")


def test_strikes_of_an_expiry_ascending_without_duplicates():
    assert catalog.strikes("NIFTY", OCT_10) == [Decimal(25700), Decimal(25800), Decimal(25900)]
    assert catalog.strikes("NIFTY", OCT_17) == [Decimal(25800)]
    assert catalog.strikes("NIFTY", date(2024, 10, 31)) == []  # only a future expires then


def test_strikes_leave_out_inactive_contracts():
    deactivate(security_id__in=[44432, 44433])  # both 25900 legs
    assert catalog.strikes("NIFTY", OCT_10) == [Decimal(25700), Decimal(25800)]
    deactivate(security_id=44428)  # one 25700 leg: the other still lists the strike
    assert catalog.strikes("NIFTY", OCT_10) == [Decimal(25700), Decimal(25800)]


@pytest.mark.parametrize(
    ("spot", "strike"),
    [
        (25810, 25800),
        (25849.95, 25800),
        (25850.05, 25900),
        (Decimal("25612.35"), 25700),  # below the lowest listed strike
        (26500, 25900),  # above the highest
    ],
)
def test_nearest_strike(spot, strike):
    assert catalog.nearest_strike("NIFTY", OCT_10, spot) == Decimal(strike)


def test_nearest_strike_on_a_tie_takes_the_lower_strike():
    assert catalog.nearest_strike("NIFTY", OCT_10, 25750) == Decimal(25700)
    assert catalog.nearest_strike("NIFTY", OCT_10, Decimal("25850.00")) == Decimal(25800)


def test_nearest_strike_without_strikes_raises_a_catalog_error():
    with pytest.raises(CatalogError, match="no strikes listed"):
        catalog.nearest_strike("NIFTY", date(2024, 10, 31), 25800)


# -- sizes --------------------------------------------------------------------------------------


def test_lot_size_of_a_contract():
    assert catalog.lot_size("NSE_FNO", 44430) == 25
    assert catalog.lot_size("BSE_FNO", 1123771) == 10
    assert catalog.lot_size("NSE_FNO", 60001) == 250


def test_tick_size_is_in_rupees():
    assert catalog.tick_size("NSE_FNO", 44430) == Decimal("0.05")
    assert catalog.tick_size("NSE_FNO", 35006) == Decimal("0.10")
    assert catalog.tick_size("IDX_I", 13) == Decimal("0.05")
    assert catalog.tick_size("IDX_I", 51) == Decimal("0.01")


def test_sizes_of_an_unknown_contract_raise_a_catalog_error():
    with pytest.raises(CatalogError, match="NSE_FNO:99999 is not in the catalog"):
        catalog.lot_size("NSE_FNO", 99999)
    with pytest.raises(CatalogError):
        catalog.tick_size("BSE_FNO", 44430)  # the id exists, but in another segment


def test_freeze_quantity_comes_from_the_config():
    configured = catalog_config().freeze_quantity
    assert catalog.freeze_quantity("NIFTY") == configured["NIFTY"]
    assert catalog.freeze_quantity("sensex") == configured["SENSEX"]
    nifty = Instrument.objects.get(exchange_segment="IDX_I", security_id=13)
    assert catalog.freeze_quantity(nifty) == configured["NIFTY"]


def test_freeze_quantity_follows_an_edited_config_file(settings, tmp_path):
    data = yaml.safe_load(settings.INSTRUMENTS_CONFIG_FILE.read_text(encoding="utf-8"))
    data["freeze_quantity"]["NIFTY"] = 1234
    data["freeze_quantity"]["RELIANCE"] = 7000
    edited = tmp_path / "instruments.yml"
    edited.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings.INSTRUMENTS_CONFIG_FILE = edited
    assert catalog.freeze_quantity("NIFTY") == 1234
    assert catalog.freeze_quantity("reliance") == 7000


def test_freeze_quantity_of_an_unconfigured_underlying_says_where_to_add_it():
    with pytest.raises(CatalogError) as caught:
        catalog.freeze_quantity("RELIANCE")
    message = str(caught.value)
    assert "no freeze quantity configured for 'RELIANCE'" in message
    assert "freeze_quantity" in message
    assert "config/instruments.yml" in message
