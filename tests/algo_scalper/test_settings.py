"""algo_scalper.settings: zero-config defaults, loud failures naming the variable, no secrets out.

Each test loads the settings in a fresh interpreter with a controlled environment (see
conftest.py): the settings pytest-django loaded once cannot show how they react to the environment.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.algo_scalper.conftest import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
KEY = {"DJANGO_SECRET_KEY": TEST_SECRET_KEY}


def assert_fails_naming(loaded, *parts: str) -> None:
    assert loaded.returncode != 0, f"settings loaded but should have failed:\n{loaded.stdout}"
    assert "ImproperlyConfigured" in loaded.stderr, loaded.stderr
    last_line = loaded.stderr.strip().splitlines()[-1]
    for part in parts:
        assert part in last_line, f"{part!r} missing from {last_line!r}"


# --- required and malformed values fail at start, naming the variable --------------------------


@pytest.mark.parametrize("debug", [{"DJANGO_DEBUG": "false"}, {}])
def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(load_settings, debug):
    assert_fails_naming(load_settings(debug, "SECRET_KEY"), "DJANGO_SECRET_KEY")


def test_it_uses_a_development_key_only_when_debug_is_on(load_settings):
    values = load_settings({"DJANGO_DEBUG": "true"}, "DEBUG", "SECRET_KEY").json()
    assert values["DEBUG"] is True
    assert values["SECRET_KEY"]


def test_a_secret_key_from_the_environment_is_used(load_settings):
    assert load_settings(KEY, "SECRET_KEY").json() == {"SECRET_KEY": TEST_SECRET_KEY}


def test_a_bad_paper_mode_fails_naming_paper_mode_and_the_value(load_settings):
    loaded = load_settings({**KEY, "PAPER_MODE": "maybe"}, "PAPER_MODE")
    assert_fails_naming(loaded, "PAPER_MODE", "'maybe'")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_DEBUG", "sometimes"),
        ("ENABLE_ORDER", "please"),
        ("DB_CONN_MAX_AGE", "forever"),
        ("DB_CONN_MAX_AGE", "-5"),
        ("PAPER_SEED_CASH", "a lot"),
        ("PAPER_SEED_CASH", "-1"),
        ("PAPER_SEED_CASH", "1e20"),
        ("PAPER_SEED_CASH", "100000000.01"),
        ("PAPER_CHARGES_PER_ORDER", "twenty"),
        ("PAPER_CHARGES_PER_ORDER", "-20"),
        ("PAPER_CHARGES_PER_ORDER", "10001"),
        ("DB_CONN_MAX_AGE", "86401"),
        ("DJANGO_SECURE_HSTS_SECONDS", "63072001"),
        ("DHANHQ_CONNECT_TIMEOUT", "121"),
        ("DHANHQ_READ_TIMEOUT", "1e9"),
        ("DHANHQ_ORDER_READ_TIMEOUT", "Infinity"),
        ("DHANHQ_LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", "TRACE"),
        ("DHANHQ_READ_TIMEOUT", "soon"),
        ("DHANHQ_ORDER_READ_TIMEOUT", "0"),
        ("DHANHQ_REST_MAX_ATTEMPTS", "0"),
    ],
)
def test_every_malformed_value_fails_naming_its_variable(load_settings, name, value):
    assert_fails_naming(load_settings({**KEY, name: value}, "DEBUG"), name)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://algo:Hunter2-Secret@db.internal:notaport/algo",
        "postgres://algo:Hunter2-Secret@db.internal:99999/algo",
        "postgress://algo:Hunter2-Secret@db.internal:5432/algo",
        "algo:Hunter2-Secret@db.internal/algo",
    ],
)
def test_a_malformed_database_url_fails_naming_it_without_printing_the_password(load_settings, url):
    loaded = load_settings({**KEY, "DATABASE_URL": url}, "DATABASES")
    assert_fails_naming(loaded, "DATABASE_URL")
    assert "Hunter2-Secret" not in loaded.output


def test_ws_mode_fast_is_rejected_naming_dhanhq_ws_mode(load_settings):
    loaded = load_settings({**KEY, "DHANHQ_WS_MODE": "fast"}, "DHANHQ_WS_MODE")
    assert_fails_naming(loaded, "DHANHQ_WS_MODE", "'fast'")


@pytest.mark.parametrize(("raw", "mode"), [("ticker", "ticker"), ("FULL", "full"), ("", "quote")])
def test_ws_mode_accepts_the_three_dhan_modes_in_any_case(load_settings, raw, mode):
    loaded = load_settings({**KEY, "DHANHQ_WS_MODE": raw}, "DHANHQ_WS_MODE")
    assert loaded.json() == {"DHANHQ_WS_MODE": mode}


# --- zero-configuration defaults ---------------------------------------------------------------


def test_the_defaults_need_no_configuration(load_settings):
    values = load_settings(
        KEY,
        "DEBUG",
        "DATABASES",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "TIME_ZONE",
        "USE_TZ",
        "CELERY_TIMEZONE",
        "PAPER_MODE",
        "ENABLE_ORDER",
        "PAPER_SEED_CASH",
        "PAPER_CHARGES_PER_ORDER",
        "DHANHQ_CLIENT_ID",
        "DHANHQ_ACCESS_TOKEN",
        "DHANHQ_WS_MODE",
        "DHANHQ_WS_WATCHLIST",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "CONFIG_DIR",
        "LOG_LEVEL",
    ).json()
    db = values["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(db["NAME"]) == ROOT / "db.sqlite3"
    assert db["OPTIONS"]["timeout"] == 30
    assert values["REDIS_URL"] is None
    assert values["CELERY_BROKER_URL"] == "memory://"
    assert values["TIME_ZONE"] == "Asia/Kolkata"
    assert values["CELERY_TIMEZONE"] == "Asia/Kolkata"
    assert values["USE_TZ"] is True
    assert values["DEBUG"] is False
    assert values["PAPER_MODE"] is True
    assert values["ENABLE_ORDER"] is False
    assert values["PAPER_SEED_CASH"] is None  # unset: config/algo.yml paper.seed_cash applies
    assert values["PAPER_CHARGES_PER_ORDER"] is None
    assert values["DHANHQ_CLIENT_ID"] is None
    assert values["DHANHQ_ACCESS_TOKEN"] is None
    assert values["DHANHQ_WS_MODE"] == "quote"
    assert values["DHANHQ_WS_WATCHLIST"] == []
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert values["CSRF_TRUSTED_ORIGINS"] == []
    assert Path(values["CONFIG_DIR"]) == ROOT / "config"
    assert values["LOG_LEVEL"] == "INFO"


def test_redis_url_becomes_the_celery_broker(load_settings):
    env = {**KEY, "REDIS_URL": "redis://127.0.0.1:6399/2"}
    values = load_settings(env, "REDIS_URL", "CELERY_BROKER_URL").json()
    assert values == {
        "REDIS_URL": "redis://127.0.0.1:6399/2",
        "CELERY_BROKER_URL": values["REDIS_URL"],
    }


def test_a_postgres_database_url_selects_postgres(load_settings):
    env = {**KEY, "DATABASE_URL": "postgres://algo:pw-123@db.internal:5433/algo_db"}
    db = load_settings(env, "DATABASES").json()["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == (
        "db.internal",
        5433,
        "algo_db",
        "algo",
    )
    assert "timeout" not in db.get("OPTIONS", {})  # the SQLite lock timeout is SQLite-only


def test_a_flat_paper_charge_is_read_as_a_decimal(load_settings):
    loaded = load_settings({**KEY, "PAPER_CHARGES_PER_ORDER": "20.50"}, "PAPER_CHARGES_PER_ORDER")
    assert Decimal(loaded.json()["PAPER_CHARGES_PER_ORDER"]) == Decimal("20.50")


def test_list_settings_split_on_commas_and_semicolons(load_settings):
    env = {
        **KEY,
        "ALLOWED_HOSTS": "algo.example.com, healthcheck.railway.app",
        "DHANHQ_WS_WATCHLIST": "IDX_I:13;IDX_I:25",
    }
    values = load_settings(env, "ALLOWED_HOSTS", "DHANHQ_WS_WATCHLIST").json()
    assert values["ALLOWED_HOSTS"] == ["algo.example.com", "healthcheck.railway.app"]
    assert values["DHANHQ_WS_WATCHLIST"] == ["IDX_I:13", "IDX_I:25"]


# --- Dhan credentials: seed-README names as fallbacks; the token is a secret --------------------


def test_client_id_and_access_token_fall_back_to_the_seed_readme_names(load_settings):
    env = {**KEY, "CLIENT_ID": "1000000001", "ACCESS_TOKEN": "legacy-token-value"}
    values = load_settings(env, "DHANHQ_CLIENT_ID", "DHANHQ_ACCESS_TOKEN").json()
    assert values == {"DHANHQ_CLIENT_ID": "1000000001", "DHANHQ_ACCESS_TOKEN": "legacy-token-value"}


def test_the_dhanhq_names_win_over_the_fallbacks(load_settings):
    env = {
        **KEY,
        "CLIENT_ID": "1000000001",
        "ACCESS_TOKEN": "legacy-token-value",
        "DHANHQ_CLIENT_ID": "2000000002",
        "DHANHQ_ACCESS_TOKEN": "current-token-value",
    }
    values = load_settings(env, "DHANHQ_CLIENT_ID", "DHANHQ_ACCESS_TOKEN").json()
    assert values == {
        "DHANHQ_CLIENT_ID": "2000000002",
        "DHANHQ_ACCESS_TOKEN": "current-token-value",
    }


def test_secret_values_are_registered_for_redaction(load_settings):
    env = {
        **KEY,
        "ACCESS_TOKEN": "legacy-token-value",
        "DATABASE_URL": "postgres://algo:db-password-value@db.internal/algo",
    }
    sensitive = load_settings(env, "SENSITIVE_VALUES").json()["SENSITIVE_VALUES"]
    assert "legacy-token-value" in sensitive
    assert "db-password-value" in sensitive
    assert TEST_SECRET_KEY in sensitive


def test_the_redis_password_is_registered_for_redaction(load_settings):
    env = {**KEY, "REDIS_URL": "redis://default:redis-password-value@redis.internal:6379/0"}
    sensitive = load_settings(env, "SENSITIVE_VALUES").json()["SENSITIVE_VALUES"]
    assert "redis-password-value" in sensitive


def test_the_access_token_never_reaches_the_configured_log_stream(run_settings_code):
    code = (
        "import django, logging\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "logging.getLogger('trading.dhan').warning('using %s', settings.DHANHQ_ACCESS_TOKEN)\n"
    )
    loaded = run_settings_code({**KEY, "DHANHQ_ACCESS_TOKEN": "opaque-dhan-token"}, code)
    assert loaded.returncode == 0, loaded.stderr
    assert "trading.dhan: using ***" in loaded.stdout
    assert "opaque-dhan-token" not in loaded.output


# --- Production security: HTTPS, HSTS, secure cookies, a real secret key -----------------------

SECURE = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")


def test_https_hsts_and_secure_cookies_are_on_by_default_when_debug_is_off(load_settings):
    values = load_settings(KEY, *SECURE, "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS")
    values = values.json()
    assert all(values[name] is True for name in SECURE), values
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True


def test_a_plain_http_loopback_run_switches_https_off(load_settings):
    env = {**KEY, "DJANGO_HTTPS": "false"}
    values = load_settings(env, *SECURE, "SECURE_HSTS_SECONDS").json()
    assert values == {name: False for name in SECURE} | {"SECURE_HSTS_SECONDS": 0}


def test_development_mode_needs_no_https(load_settings):
    values = load_settings({"DJANGO_DEBUG": "true"}, *SECURE, "SECURE_HSTS_SECONDS").json()
    assert values == {name: False for name in SECURE} | {"SECURE_HSTS_SECONDS": 0}


def test_hsts_length_and_subdomains_come_from_the_environment(load_settings):
    env = {
        **KEY,
        "DJANGO_SECURE_HSTS_SECONDS": "3600",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "0",
    }
    names = ("SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD")
    assert load_settings(env, *names).json() == dict(zip(names, [3600, False, False], strict=True))
    assert_fails_naming(
        load_settings({**KEY, "DJANGO_SECURE_HSTS_SECONDS": "-1"}, "DEBUG"),
        "DJANGO_SECURE_HSTS_SECONDS",
    )


def test_behind_railways_proxy_the_forwarded_proto_header_is_trusted(load_settings):
    env = {**KEY, "DJANGO_BEHIND_PROXY": "true"}
    header = load_settings(env, "SECURE_PROXY_SSL_HEADER").json()["SECURE_PROXY_SSL_HEADER"]
    assert header == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_the_probes_answer_over_plain_http_while_everything_else_is_redirected(run_settings_code):
    # Railway's healthcheck and the image's HEALTHCHECK call /healthz over plain HTTP.
    code = (
        "import django, json\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "c = Client()\n"
        "r = {p: c.get(p).status_code for p in ('/healthz', '/admin/login/')}\n"
        "r['https'] = c.get('/admin/login/', secure=True).status_code\n"
        "print(json.dumps(r))\n"
    )
    loaded = run_settings_code({**KEY, "ALLOWED_HOSTS": "testserver"}, code)
    assert loaded.json() == {"/healthz": 200, "/admin/login/": 301, "https": 200}


@pytest.mark.parametrize(
    "key",
    [
        "short-but-not-empty-key",
        "x" * 49 + "yzw",  # long enough, 4 distinct characters
        "django-insecure-" + "abcdefghijklmnopqrstuvwxyz0123456789",
    ],
    ids=["short", "too few distinct characters", "django-insecure prefix"],
)
def test_a_weak_secret_key_is_refused_when_debug_is_off(load_settings, key):
    loaded = load_settings({"DJANGO_SECRET_KEY": key}, "SECRET_KEY")
    assert_fails_naming(loaded, "DJANGO_SECRET_KEY", "50")
    assert key not in loaded.output  # the secret itself is never echoed


def test_a_short_key_is_fine_in_development_mode(load_settings):
    env = {"DJANGO_DEBUG": "true", "DJANGO_SECRET_KEY": "dev"}
    assert load_settings(env, "SECRET_KEY").json() == {"SECRET_KEY": "dev"}


def run_check_deploy(run_settings_code, env: dict[str, str]):
    code = (
        "import sys\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])\n"
    )
    return run_settings_code(env, code)


def test_check_deploy_runs_clean_with_production_settings(run_settings_code):
    loaded = run_check_deploy(run_settings_code, {**KEY, "DJANGO_BEHIND_PROXY": "true"})
    assert loaded.returncode == 0, loaded.output
    assert "System check identified no issues" in loaded.output


def test_check_deploy_names_what_a_plain_http_run_gives_up(run_settings_code):
    loaded = run_check_deploy(run_settings_code, {**KEY, "DJANGO_HTTPS": "false"})
    assert loaded.returncode != 0
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in loaded.output


def test_the_environment_bounds_the_seed_cash_as_the_config_file_does(load_settings):
    from trading.config.load import MAX_SEED_CASH_RUPEES

    top = load_settings({**KEY, "PAPER_SEED_CASH": str(MAX_SEED_CASH_RUPEES)}, "PAPER_SEED_CASH")
    assert Decimal(top.json()["PAPER_SEED_CASH"]) == MAX_SEED_CASH_RUPEES
    over = load_settings({**KEY, "PAPER_SEED_CASH": f"{MAX_SEED_CASH_RUPEES}.01"}, "DEBUG")
    assert_fails_naming(over, "PAPER_SEED_CASH", "at most")
