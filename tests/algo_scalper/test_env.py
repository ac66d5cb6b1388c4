"""algo_scalper.env: typed readers; blank means unset; bad values fail naming variable and value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from algo_scalper.env import envbool, envchoice, envdecimal, envint, envlist, envstr


def assert_names(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(excinfo.value)
    for part in parts:
        assert part in message, f"{part!r} missing from {message!r}"


# --- envstr -------------------------------------------------------------------------------------


def test_envstr_returns_the_value_stripped():
    assert envstr("NAME", env={"NAME": "  value \n"}) == "value"


def test_envstr_returns_the_default_when_unset():
    assert envstr("NAME", "fallback-default", env={}) == "fallback-default"
    assert envstr("NAME", env={}) is None


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_envstr_treats_a_blank_value_as_unset(blank):
    assert envstr("NAME", "default", env={"NAME": blank}) == "default"


def test_envstr_uses_the_first_set_fallback_when_the_name_is_unset():
    env = {"SECOND": "second", "THIRD": "third"}
    assert envstr("NAME", fallbacks=["FIRST", "SECOND", "THIRD"], env=env) == "second"


def test_envstr_prefers_the_name_over_its_fallbacks():
    env = {"NAME": "primary", "OLD_NAME": "legacy"}
    assert envstr("NAME", fallbacks=["OLD_NAME"], env=env) == "primary"


def test_envstr_skips_a_blank_name_and_a_blank_fallback():
    env = {"NAME": " ", "FIRST": "", "SECOND": "second"}
    assert envstr("NAME", fallbacks=["FIRST", "SECOND"], env=env) == "second"


def test_envstr_returns_the_default_when_neither_name_nor_fallbacks_are_set():
    assert envstr("NAME", "default", fallbacks=["OLD"], env={}) == "default"


def test_envstr_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("ALGO_TEST_ENVSTR", "from-os-environ")
    assert envstr("ALGO_TEST_ENVSTR") == "from-os-environ"


def test_an_explicit_env_mapping_hides_the_process_environment(monkeypatch):
    monkeypatch.setenv("ALGO_TEST_ENVSTR", "from-os-environ")
    assert envstr("ALGO_TEST_ENVSTR", "default", env={}) == "default"


# --- envbool ------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["1", "true", "TRUE", "True", "yes", "YES", "on", " On "])
def test_envbool_reads_true_words_in_any_case(word):
    assert envbool("FLAG", False, env={"FLAG": word}) is True


@pytest.mark.parametrize("word", ["0", "false", "FALSE", "no", "No", "off", " OFF "])
def test_envbool_reads_false_words_in_any_case(word):
    assert envbool("FLAG", True, env={"FLAG": word}) is False


@pytest.mark.parametrize("default", [True, False])
def test_envbool_returns_the_default_when_unset_or_blank(default):
    assert envbool("FLAG", default, env={}) is default
    assert envbool("FLAG", default, env={"FLAG": "  "}) is default


@pytest.mark.parametrize("bad", ["yes please", "2", "enabled", "t", "nope"])
def test_envbool_rejects_other_words_naming_the_variable_and_the_value(bad):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envbool("PAPER_MODE", True, env={"PAPER_MODE": bad})
    assert_names(excinfo, "PAPER_MODE", repr(bad))


# --- envint -------------------------------------------------------------------------------------


def test_envint_reads_a_whole_number():
    assert envint("N", 0, env={"N": " 42 "}) == 42
    assert envint("N", 0, env={"N": "-7"}) == -7


def test_envint_returns_the_default_when_unset_or_blank():
    assert envint("N", 60, env={}) == 60
    assert envint("N", 60, env={"N": ""}) == 60


@pytest.mark.parametrize("bad", ["sixty", "1.5", "12abc", "0x10"])
def test_envint_rejects_a_non_integer_naming_the_variable_and_the_value(bad):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envint("DB_CONN_MAX_AGE", 60, env={"DB_CONN_MAX_AGE": bad})
    assert_names(excinfo, "DB_CONN_MAX_AGE", repr(bad))


def test_envint_accepts_the_bounds_themselves():
    assert envint("N", 5, minimum=0, maximum=10, env={"N": "0"}) == 0
    assert envint("N", 5, minimum=0, maximum=10, env={"N": "10"}) == 10


def test_envint_rejects_a_value_below_the_minimum_naming_the_variable_and_the_value():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envint("DB_CONN_MAX_AGE", 60, minimum=0, env={"DB_CONN_MAX_AGE": "-1"})
    assert_names(excinfo, "DB_CONN_MAX_AGE", "at least 0", "-1")


def test_envint_rejects_a_value_above_the_maximum_naming_the_variable_and_the_value():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envint("WORKERS", 2, maximum=8, env={"WORKERS": "9"})
    assert_names(excinfo, "WORKERS", "at most 8", "9")


# --- envdecimal ---------------------------------------------------------------------------------


def test_envdecimal_reads_an_exact_decimal():
    value = envdecimal("CASH", "0", env={"CASH": "100000.10"})
    assert value == Decimal("100000.10")
    assert isinstance(value, Decimal)


def test_envdecimal_returns_the_default_as_a_decimal_when_unset_or_blank():
    assert envdecimal("CASH", "100000", env={}) == Decimal("100000")
    assert envdecimal("CASH", "100000", env={"CASH": " "}) == Decimal("100000")


@pytest.mark.parametrize("bad", ["lots", "1,00,000", "12.3.4", "₹1000"])
def test_envdecimal_rejects_a_non_number_naming_the_variable_and_the_value(bad):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envdecimal("PAPER_SEED_CASH", "100000", env={"PAPER_SEED_CASH": bad})
    assert_names(excinfo, "PAPER_SEED_CASH", repr(bad))


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-inf", "sNaN"])
def test_envdecimal_rejects_non_finite_numbers(bad):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envdecimal("PAPER_SEED_CASH", "100000", env={"PAPER_SEED_CASH": bad})
    assert_names(excinfo, "PAPER_SEED_CASH", repr(bad))


def test_envdecimal_rejects_a_value_below_the_minimum():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envdecimal("PAPER_SEED_CASH", "1", minimum=Decimal(0), env={"PAPER_SEED_CASH": "-0.01"})
    assert_names(excinfo, "PAPER_SEED_CASH", "at least 0", "-0.01")


def test_envdecimal_rejects_a_value_above_the_maximum():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envdecimal("RISK", "1", maximum=Decimal("0.5"), env={"RISK": "0.75"})
    assert_names(excinfo, "RISK", "at most 0.5", "0.75")


def test_envdecimal_accepts_the_minimum_itself():
    assert envdecimal("CASH", "1", minimum=Decimal(0), env={"CASH": "0"}) == Decimal(0)


# --- envchoice ----------------------------------------------------------------------------------

MODES = ("ticker", "quote", "full")


@pytest.mark.parametrize(
    ("raw", "expected"), [("full", "full"), ("FULL", "full"), (" Quote ", "quote")]
)
def test_envchoice_matches_in_any_case_and_returns_the_canonical_spelling(raw, expected):
    assert envchoice("DHANHQ_WS_MODE", "quote", MODES, env={"DHANHQ_WS_MODE": raw}) == expected


def test_envchoice_keeps_the_canonical_spelling_of_upper_case_choices():
    levels = ("DEBUG", "INFO", "WARNING")
    assert envchoice("LOG_LEVEL", "INFO", levels, env={"LOG_LEVEL": "debug"}) == "DEBUG"


def test_envchoice_returns_the_default_when_unset_or_blank():
    assert envchoice("DHANHQ_WS_MODE", "quote", MODES, env={}) == "quote"
    assert envchoice("DHANHQ_WS_MODE", "quote", MODES, env={"DHANHQ_WS_MODE": ""}) == "quote"


def test_envchoice_rejects_an_unknown_value_naming_the_variable_value_and_choices():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envchoice("DHANHQ_WS_MODE", "quote", MODES, env={"DHANHQ_WS_MODE": "fast"})
    assert_names(excinfo, "DHANHQ_WS_MODE", "'fast'", "ticker, quote, full")


def test_envchoice_accepts_any_iterable_of_choices():
    choices = (mode for mode in MODES)  # a generator is consumed once; it must still work
    assert envchoice("M", "quote", choices, env={"M": "ticker"}) == "ticker"


# --- envlist ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "a.example,b.example,c.example",
        "a.example;b.example;c.example",
        "a.example\nb.example\nc.example",
        "a.example\r\nb.example\r\nc.example",
        "a.example, b.example ;\n c.example",
    ],
)
def test_envlist_splits_on_commas_semicolons_and_newlines(raw):
    assert envlist("HOSTS", env={"HOSTS": raw}) == ["a.example", "b.example", "c.example"]


def test_envlist_drops_blank_items():
    assert envlist("HOSTS", env={"HOSTS": ",a,, ;b;\n\n"}) == ["a", "b"]


def test_envlist_returns_a_copy_of_the_default_when_unset_or_blank():
    default = ("localhost", "127.0.0.1")
    assert envlist("HOSTS", default, env={}) == ["localhost", "127.0.0.1"]
    assert envlist("HOSTS", default, env={"HOSTS": "  "}) == ["localhost", "127.0.0.1"]
    assert envlist("HOSTS", env={}) == []


def test_envlist_never_shares_its_default_list_with_the_caller():
    default = ["localhost"]
    first = envlist("HOSTS", default, env={})
    first.append("mutated")
    assert default == ["localhost"]
    assert envlist("HOSTS", default, env={}) == ["localhost"]


def test_envlist_keeps_a_single_item():
    assert envlist("HOSTS", env={"HOSTS": "only.example"}) == ["only.example"]


# --- ASCII digits only; money to the paisa (a probe found these accepted) ---------------------


@pytest.mark.parametrize("bad", ["\u0661\u0660", "\uff11", "1_0", "+1_000", "\u0663"])
def test_envint_takes_ascii_digits_only(bad):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envint("DHANHQ_REST_MAX_ATTEMPTS", 4, env={"DHANHQ_REST_MAX_ATTEMPTS": bad})
    assert_names(excinfo, "DHANHQ_REST_MAX_ATTEMPTS", "ASCII digits", repr(bad))


@pytest.mark.parametrize("bad", ["\u0661\u0660\u0660", "1_000", "1e3", "\uff11\uff10"])
def test_envdecimal_takes_ascii_digits_only(bad):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envdecimal("PAPER_SEED_CASH", "1", env={"PAPER_SEED_CASH": bad})
    assert_names(excinfo, "PAPER_SEED_CASH", repr(bad))


def test_envdecimal_money_is_to_the_paisa_and_above_zero():
    money = {"above": Decimal(0), "maximum": Decimal(100_000_000), "places": 2}
    assert envdecimal("CASH", "1", env={"CASH": "0.01"}, **money) == Decimal("0.01")
    assert envdecimal("CASH", "1", env={"CASH": "100.50"}, **money) == Decimal("100.50")
    assert envdecimal("CASH", "1", env={"CASH": "100.500"}, **money) == Decimal("100.500")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        envdecimal("CASH", "1", env={"CASH": "0.0000001"}, **money)
    assert_names(excinfo, "CASH", "to the paisa", "'0.0000001'")
    for zero in ("0", "0.00", "-0"):
        with pytest.raises(ImproperlyConfigured) as excinfo:
            envdecimal("CASH", "1", env={"CASH": zero}, **money)
        assert_names(excinfo, "CASH", "above 0")


@pytest.mark.parametrize("bad", ["0", "0.0000001", "\u0661\u0660\u0660", "1_000"])
def test_the_seed_cash_variable_is_refused_where_paper_seed_cash_is(load_settings, bad):
    loaded = load_settings({"DJANGO_DEBUG": "true", "PAPER_SEED_CASH": bad}, "PAPER_SEED_CASH")
    assert loaded.returncode != 0
    assert "PAPER_SEED_CASH must" in loaded.stderr.strip().splitlines()[-1]
