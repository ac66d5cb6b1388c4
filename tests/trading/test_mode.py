"""Paper unless every live gate is open, with the reason."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trading.mode import trading_mode


def settings(**overrides: object) -> SimpleNamespace:
    values = {
        "PAPER_MODE": False,
        "ENABLE_ORDER": True,
        "DHANHQ_CLIENT_ID": "1000000001",
        "DHANHQ_ACCESS_TOKEN": "token",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"PAPER_MODE": True}, "PAPER_MODE is true"),
        ({"ENABLE_ORDER": False}, "ENABLE_ORDER is not true"),
        ({"DHANHQ_ACCESS_TOKEN": None}, "DHANHQ_ACCESS_TOKEN not set"),
        ({"DHANHQ_CLIENT_ID": "", "DHANHQ_ACCESS_TOKEN": ""}, "DHANHQ_CLIENT_ID and DHANHQ_ACC"),
    ],
)
def test_anything_less_than_every_gate_is_paper_with_the_reason(overrides, reason):
    mode = trading_mode(settings(**overrides))
    assert not mode.live and mode.name == "paper"
    assert reason in mode.reason


def test_live_needs_paper_off_orders_on_and_credentials():
    mode = trading_mode(settings())
    assert mode.live and mode.name == "live"


def test_the_default_settings_are_paper():
    assert not trading_mode().live
