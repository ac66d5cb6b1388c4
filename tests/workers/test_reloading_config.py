"""The workers' config (workers/orders.py ReloadingConfig): file + overrides, re-read at most
every interval, either by the caller when due or, in a process that asked for it, only by a
thread off the hot path; an invalid edit keeps the last good config."""

from __future__ import annotations

import time

import pytest

from trading.config.load import OVERRIDES_KEY
from trading.config.store import save_overrides
from trading.models import Setting
from workers.orders import ReloadingConfig

pytestmark = pytest.mark.django_db


def stop_loss(config) -> float:
    return float(config.exits.stop_loss.sl_pct)


def test_a_call_re_reads_the_overrides_when_the_interval_has_passed():
    config = ReloadingConfig(interval=3600)
    before = stop_loss(config())
    save_overrides({"exits": {"stop_loss": {"sl_pct": 0.07}}})
    assert stop_loss(config()) == before  # not due yet: what is held
    config._next = time.monotonic()  # the interval has passed
    assert stop_loss(config()) == 0.07


def test_called_elsewhere_a_call_never_re_reads_and_refresh_does_when_due():
    config = ReloadingConfig(interval=3600)
    config.refresh_elsewhere()
    before = stop_loss(config())
    save_overrides({"exits": {"stop_loss": {"sl_pct": 0.09}}})
    config._next = time.monotonic()
    assert stop_loss(config()) == before  # the hot path only reads what is held
    config.refresh()
    assert stop_loss(config()) == 0.09
    save_overrides({"exits": {"stop_loss": {"sl_pct": 0.11}}})
    config.refresh()  # not due again for an interval
    assert stop_loss(config()) == 0.09
    config.refresh_elsewhere(False)
    config._next = time.monotonic()
    assert stop_loss(config()) == 0.11  # the caller re-reads again


def test_an_invalid_stored_edit_keeps_the_last_good_config():
    config = ReloadingConfig(interval=3600)
    good = stop_loss(config())
    # Stored around the validation (as a hand edit of the row would be): not a number.
    Setting.put(OVERRIDES_KEY, {"exits": {"stop_loss": {"sl_pct": "lots"}}})
    config._next = time.monotonic()
    assert stop_loss(config()) == good
    Setting.put(OVERRIDES_KEY, {"exits": {"stop_loss": {"sl_pct": 0.05}}})  # fixed
    config._next = time.monotonic()
    assert stop_loss(config()) == 0.05
