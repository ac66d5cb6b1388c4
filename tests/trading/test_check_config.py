"""manage.py check_config: effective algo config + charges; every problem on stderr, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from trading.config import store as algo
from trading.config.load import OVERRIDES_KEY, config_as_dict
from trading.config.store import load_algo_config

ROOT = Path(__file__).resolve().parents[2]
ALGO_YML = ROOT / "config" / "algo.yml"
CHARGES_YML = ROOT / "config" / "charges.yml"


@pytest.fixture(autouse=True)
def _fresh_cache():
    algo.clear_algo_config_cache()
    yield
    algo.clear_algo_config_cache()


@pytest.fixture
def bad_algo(tmp_path) -> Path:
    path = tmp_path / "bad-algo.yml"
    text = ALGO_YML.read_text(encoding="utf-8")
    text = text.replace("max_trades_per_day: 8", "max_trades_per_day: eight")
    path.write_text(text.replace("slippage_bps: 25", "slippage_bps: -1"), encoding="utf-8")
    return path


@pytest.fixture
def bad_charges(tmp_path) -> Path:
    path = tmp_path / "bad-charges.yml"
    path.write_text("rates: nothing\n", encoding="utf-8")
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("check_config", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_valid_config_prints_the_effective_values_and_both_versions():
    out, err = run("--no-overrides", "--file", str(ALGO_YML), "--charges", str(CHARGES_YML))
    config = load_algo_config(ALGO_YML)
    assert err == ""
    assert yaml.safe_load(out) == config_as_dict(config)  # the output is itself a valid algo.yml
    assert f"# algo config version: {config.version}" in out.splitlines()
    assert f"# charges: {CHARGES_YML}, version " in out


@pytest.mark.django_db
def test_by_default_the_stored_overrides_are_applied(settings):
    from trading.models import Setting

    settings.ALGO_CONFIG_FILE = ALGO_YML
    Setting.put(OVERRIDES_KEY, {"signals": {"adx_min": 24}})
    out, _ = run()
    assert yaml.safe_load(out)["signals"]["adx_min"] == 24
    assert out.startswith(f"# effective algo config: {ALGO_YML} + Setting algo.overrides")
    version = load_algo_config(ALGO_YML, {"signals": {"adx_min": 24}}).version
    assert f"# algo config version: {version}" in out


@pytest.mark.django_db
def test_a_bad_stored_override_fails_the_check_naming_the_setting(settings):
    from trading.models import Setting

    settings.ALGO_CONFIG_FILE = ALGO_YML
    Setting.put(OVERRIDES_KEY, {"feed": {"index_stale_seconds": 0}})  # bypassing validation
    err = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("check_config", stdout=StringIO(), stderr=err)
    assert excinfo.value.returncode == 1
    assert err.getvalue().splitlines() == [
        "Setting algo.overrides: feed.index_stale_seconds: "
        "expected a number above 0 and at most 600, got 0"
    ]


def test_every_problem_of_both_files_goes_to_stderr(bad_algo, bad_charges):
    err = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "check_config",
            "--no-overrides",
            "--file",
            str(bad_algo),
            "--charges",
            str(bad_charges),
            stdout=StringIO(),
            stderr=err,
        )
    lines = err.getvalue().splitlines()
    assert lines[:2] == [
        "bad-algo.yml: risk.max_trades_per_day: expected a whole number between 1 and 100, "
        "got 'eight'",
        "bad-algo.yml: paper.slippage_bps: expected a whole number between 0 and 1000, got -1",
    ]
    assert len(lines) > 2
    assert all(line.startswith("bad-charges.yml: rates") for line in lines[2:])
    assert excinfo.value.returncode == 1
    assert str(excinfo.value) == f"invalid configuration: {len(lines)} problem(s)"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DJANGO_DEBUG"] = "true"
    command = [sys.executable, "manage.py", "check_config", "--no-overrides", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("use_bad_file", "code"), [(False, 0), (True, 1)], ids=["valid exits 0", "invalid exits 1"]
)
def test_the_exit_code_says_whether_the_config_is_valid(bad_algo, use_bad_file, code):
    done = cli("--file", str(bad_algo if use_bad_file else ALGO_YML))
    assert done.returncode == code, done.stderr
    if use_bad_file:
        assert "bad-algo.yml: risk.max_trades_per_day: expected a whole number" in done.stderr
        assert done.stdout == ""
    else:
        assert "# algo config version: " in done.stdout


def test_the_output_is_the_config_as_valid_yaml_with_no_exits_warning_now_they_run():
    # Exits are active (the exit engine runs them); the groundwork's warning went with it.
    out, _ = run("--no-overrides", "--file", str(ALGO_YML), "--charges", str(CHARGES_YML))
    assert "NOT active" not in out and "WARNING" not in out
    assert yaml.safe_load(out)["exits"]["stop_loss"]["enabled"] is True


def line_of(text: str, part: str) -> tuple[int, int]:
    """(line, column), both from 1, of the first occurrence of ``part`` in ``text``."""
    for number, line in enumerate(text.splitlines(), 1):
        if part in line:
            return number, line.index(part) + 1
    raise AssertionError(f"{part!r} is not in config/algo.yml any more")


def bad_holiday(text: str) -> tuple[bytes, str]:
    spoilt = text.replace("- 2026-03-03", "- 2026-02-30")
    return spoilt.encode(), (
        "bad.yml: market.holidays[1]: expected an ISO date YYYY-MM-DD from 2000-01-01 to "
        "2099-12-31, got '2026-02-30'"
    )


def not_utf8(text: str) -> tuple[bytes, str]:
    line, column = line_of(text, "Republic Day")
    spoilt = text.encode().replace(b"Republic Day", b"R\xe9public Day")
    return spoilt, (
        f"bad.yml: line {line}: not UTF-8 text (byte 0xe9 at column {column + 1}); "
        "save the file as UTF-8"
    )


def huge_seed_cash(text: str) -> tuple[bytes, str]:
    spoilt = text.replace("seed_cash: 100000 ", "seed_cash: 1e999999999 ")
    return spoilt.encode(), (
        "bad.yml: paper.seed_cash: expected an amount in rupees, to the paisa, above 0 and at "
        "most 100000000, got '1e999999999'"
    )


def duplicated_key(text: str) -> tuple[bytes, str]:
    line, _ = line_of(text, "  max_concurrent: 3 ")
    spoilt = text.replace("  max_concurrent: 3 ", "  max_concurrent: 3\n  max_concurrent: 30 ")
    return spoilt.encode(), (
        f"bad.yml: line {line + 1}: risk.max_concurrent: duplicate key (first at line {line}); "
        "YAML would keep only the last one, silently: remove one"
    )


@pytest.mark.parametrize("spoil", [bad_holiday, not_utf8, huge_seed_cash, duplicated_key])
def test_a_broken_file_is_one_clear_line_and_exit_code_1_not_a_traceback(tmp_path, spoil):
    content, message = spoil(ALGO_YML.read_text(encoding="utf-8"))
    path = tmp_path / "bad.yml"
    path.write_bytes(content)
    done = cli("--file", str(path))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        message,
        "CommandError: invalid configuration: 1 problem(s)",
    ]
    assert done.stdout == ""


@pytest.mark.django_db
def test_safety_exits_switched_off_are_valid_but_said_on_stderr_and_at_every_start(
    settings, caplog
):
    from trading.config.store import config_at_start
    from trading.models import Setting

    settings.ALGO_CONFIG_FILE = ALGO_YML
    off = {"enabled": False}
    Setting.put(OVERRIDES_KEY, {"exits": {"stop_loss": off, "kill_switch": off}})
    out, err = run("--charges", str(CHARGES_YML))
    assert yaml.safe_load(out)["exits"]["stop_loss"]["enabled"] is False  # valid: exit code 0
    assert err.splitlines() == [
        "warning: exits.stop_loss is off: no initial stop under a position",
        "warning: exits.kill_switch is off: the kill switch halts entries but does not flatten",
        "warning: catalog: it lists no index (import it: manage.py import_instruments); the "
        "index keys were not checked",
    ]
    with caplog.at_level("WARNING", logger="trading.config.store"):
        config_at_start()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all("is off:" in line for line in said)


def test_with_every_safety_exit_on_nothing_is_said():
    assert load_algo_config(ALGO_YML).exits.safety_off() == []


# -- the indices against the instrument catalog (read with the overrides) ----------------------


def index_row(symbol: str, security_id: int, *, active: bool = True) -> None:
    from tests.support.rows import make_index

    make_index(symbol, security_id, display_name=symbol.title(), active=active)


def config_indices() -> list[tuple[str, bool]]:
    return [(index.key, index.enabled) for index in load_algo_config(ALGO_YML).indices]


@pytest.mark.django_db
def test_every_index_of_the_config_in_the_catalog_says_nothing_more():
    for n, (key, _) in enumerate(config_indices()):
        index_row(key, 13 + n)
    out, err = run("--file", str(ALGO_YML), "--charges", str(CHARGES_YML))
    assert "catalog" not in err and "# algo config version: " in out


@pytest.mark.django_db
def test_an_enabled_index_the_catalog_does_not_list_fails_the_check_naming_it():
    """The signal engine would skip it all day (and say so only in its log)."""
    keys = [key for key, enabled in config_indices() if enabled]
    assert len(keys) >= 2
    for n, key in enumerate(keys[1:]):
        index_row(key, 20 + n)
    index_row(keys[0], 19, active=False)  # removed from the scrip master: not listed
    err = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("check_config", "--file", str(ALGO_YML), stdout=StringIO(), stderr=err)
    assert err.getvalue().splitlines() == [
        f"catalog: indices.{keys[0]}: no index named {keys[0]!r} in the catalog; the signal "
        "engine would skip it (fix the key)"
    ]
    assert excinfo.value.returncode == 1


@pytest.mark.django_db
def test_a_disabled_index_missing_and_an_empty_catalog_are_warnings():
    keys = [key for key, _ in config_indices()]
    out, err = run("--file", str(ALGO_YML), "--charges", str(CHARGES_YML))  # empty catalog
    assert err.splitlines() == [
        "warning: catalog: it lists no index (import it: manage.py import_instruments); the "
        "index keys were not checked"
    ]
    assert "# algo config version: " in out
    for n, key in enumerate(keys[1:]):
        index_row(key, 20 + n)
    algo.save_overrides({"indices": {keys[0]: {"enabled": False}}})
    out, err = run("--file", str(ALGO_YML), "--charges", str(CHARGES_YML))
    assert err.splitlines() == [
        f"warning: catalog: indices.{keys[0]}: no index named {keys[0]!r} in the catalog "
        "(the index is disabled)"
    ]


def test_checking_the_file_alone_reads_no_catalog():
    """--no-overrides reads no database (this test may not): the catalog is not consulted."""
    out, err = run("--no-overrides", "--file", str(ALGO_YML), "--charges", str(CHARGES_YML))
    assert err == "" and "# algo config version: " in out
