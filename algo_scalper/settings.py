"""algo-scalper settings: everything comes from the environment (and an optional ``.env``).

Embedded defaults need no configuration: SQLite in the project folder, no Redis, paper mode.
Split mode sets ``DATABASE_URL`` and ``REDIS_URL``. Every reader raises ImproperlyConfigured
naming the variable when a value is malformed. See ``.env.example`` for the full list.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from algo_scalper.dotenv import load_dotenv
from algo_scalper.env import envbool, envchoice, envdecimal, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")

DEBUG = envbool("DJANGO_DEBUG", False)
SECRET_KEY = envstr("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is false "
            "(set DJANGO_DEBUG=true for local development)"
        )
    SECRET_KEY = "insecure-development-only-key"  # noqa: S105 - only ever used with DEBUG on
elif not DEBUG and (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    # Django's own rule (check --deploy's W009): sessions, CSRF tokens and password resets
    # are signed with it. Refused at start, not merely warned about in a check nobody runs.
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is too weak: use at least {SECRET_KEY_MIN_LENGTH} characters with "
        f"at least {SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones, not starting with "
        f"{SECRET_KEY_INSECURE_PREFIX!r}; e.g. the output of "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "instruments",
    "trading",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "algo_scalper.middleware.ChunkedBodyMiddleware",  # a 411, not a body read as empty
    # Serves the admin's static files when DEBUG is off (one process, no separate web server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "algo_scalper.urls"
WSGI_APPLICATION = "algo_scalper.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database: SQLite in the project by default, Postgres by setting DATABASE_URL -------------
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
_conn_max_age = envint("DB_CONN_MAX_AGE", 60, minimum=0, maximum=86_400)  # seconds, a day at most
# The exit's claim as a prepared statement on PostgreSQL (trading/orders/journal_sql.py): off
# behind a pooler that cannot carry prepared statements (PgBouncer < 1.21, transaction mode);
# left on there, each process turns them off itself at the first lost one (an ERROR line).
DB_PREPARED_STATEMENTS = envbool("DB_PREPARED_STATEMENTS", True)
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=_conn_max_age)
except ValueError as exc:
    # Never echo the URL: it usually carries the password.
    raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3" and _db.get("NAME") in ("", ":memory:", None):
    # dj_database_url reads sqlite:/// (no path) as an in-memory database: migrate succeeds,
    # every command runs, and every row is gone when the process exits.
    raise ImproperlyConfigured(
        "DATABASE_URL names no SQLite file (sqlite:/// with no path, or :memory:, is a database "
        "that is thrown away when the process exits): give a path, e.g. "
        "sqlite:///var/algo.sqlite3 or sqlite:////abs/path/algo.sqlite3"
    )
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (embedded mode) share one SQLite file: wait for locks instead of failing.
    # IMMEDIATE: a transaction takes the write lock when it begins. With SQLite's default
    # (DEFERRED) a transaction that reads and then writes fails at once with "database is
    # locked" when another thread writes meanwhile; the timeout never applies to that upgrade.
    # WAL: readers never block the writer (the API and the admin read while run_trader writes)
    # and a commit is one fsync of the log instead of the rollback journal's two or three;
    # synchronous FULL keeps every commit durable through a power cut (the journal's writes
    # before a send must be). journal_mode is stored in the file; an in-memory database (the
    # SQLite test run) stays "memory".
    _db.setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
    )
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Time: the market's clock ------------------------------------------------------------------
TIME_ZONE = "Asia/Kolkata"
USE_TZ = True
LANGUAGE_CODE = "en-in"
USE_I18N = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves the static files straight from the installed apps (the finders), listed
# once at start: the admin has its CSS however the web process was started (gunicorn,
# runserver, the image) and whether or not collectstatic ever ran, and never an old copy
# left in STATIC_ROOT by an earlier version. The cost: no precompressed variants, nothing
# for an admin a few operators use.
WHITENOISE_USE_FINDERS = True
# STATIC_ROOT is optional then; WhiteNoise's warning that it is missing would only be noise.
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest variant: that one answers 500 for every admin page until collectstatic
    # has run, which a laptop user running the web process never did.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# --- HTTPS: on by default whenever DEBUG is off (check --deploy runs clean) -------------------
# DJANGO_HTTPS=false is for a plain-HTTP run on loopback (docker compose on a laptop): no
# redirect to https://, cookies sent over HTTP, no HSTS.
HTTPS = envbool("DJANGO_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# The probes answer over plain HTTP: Railway's healthcheck and the image's HEALTHCHECK call
# http://.../healthz from inside the platform, and a redirect is a failed probe.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^ready$"]
# At most two years (the HSTS preload list asks for one).
SECURE_HSTS_SECONDS = envint(
    "DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0, maximum=63_072_000
)
# Off when another site under the same domain still serves plain HTTP. The preload directive
# needs includeSubDomains, and only matters once the domain is submitted to hstspreload.org.
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = SECURE_HSTS_INCLUDE_SUBDOMAINS
# Behind a TLS-terminating proxy (Railway) that sets X-Forwarded-Proto: trust it, so Django
# knows requests arrived over HTTPS (else the redirect above loops forever). Only enable behind
# such a proxy: clients could forge it.
if envbool("DJANGO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Redis and Celery --------------------------------------------------------------------------
# Unset REDIS_URL = embedded mode: in-memory bus and caches, no Redis anywhere.
REDIS_URL = envstr("REDIS_URL")


def _check_redis_url(url: str) -> None:
    """REDIS_URL's form, checked here so every process stops with one line (the password is
    never echoed). That Redis accepts the password and the DB index is checked at connect."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ImproperlyConfigured(
            "REDIS_URL is not a usable Redis URL: its port must be a number from 0 to 65535 "
            "(redis://[:password@]host:6379/0)"
        ) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(
            "REDIS_URL is not a usable Redis URL: it must start with redis://, rediss:// or "
            "unix:// (redis://[:password@]host:6379/0)"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured("REDIS_URL is not a usable Redis URL: unix:// needs a path")
        return
    if not parts.hostname:
        raise ImproperlyConfigured(
            "REDIS_URL is not a usable Redis URL: it names no host (redis://[:password@]host:6379/0)"
        )
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit() and int(db) <= 1_000_000):
        raise ImproperlyConfigured(
            "REDIS_URL is not a usable Redis URL: the database after the host must be a number "
            "such as /0"
        )


if REDIS_URL:
    _check_redis_url(REDIS_URL)
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "refresh-instrument-catalog": {
        "task": "instruments.tasks.refresh_catalog",
        # Dhan publishes the day's scrip master before the open; 08:00 IST leaves an hour spare.
        "schedule": crontab(hour=8, minute=0, day_of_week="mon-fri"),
    },
}

# --- Dhan (names as in the seed README) --------------------------------------------------------
DHANHQ_CLIENT_ID = envstr("DHANHQ_CLIENT_ID", fallbacks=["CLIENT_ID"])
DHANHQ_ACCESS_TOKEN = envstr("DHANHQ_ACCESS_TOKEN", fallbacks=["ACCESS_TOKEN"])
DHANHQ_BASE_URL = envstr("DHANHQ_BASE_URL", "https://api.dhan.co/v2")
DHANHQ_WS_URL = envstr("DHANHQ_WS_URL", "wss://api-feed.dhan.co")
DHANHQ_ORDER_WS_URL = envstr("DHANHQ_ORDER_WS_URL", "wss://api-order-update.dhan.co")
DHANHQ_WS_MODE = envchoice("DHANHQ_WS_MODE", "quote", ("ticker", "quote", "full"))
DHANHQ_WS_WATCHLIST = envlist("DHANHQ_WS_WATCHLIST")
DHANHQ_LOG_LEVEL = envchoice(
    "DHANHQ_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
)
# REST client (trading/dhan/rest.py), seconds. A placement's read timeout is shorter than the
# others: past it the outcome is resolved by correlation id instead of waiting on a slow answer.
# At most two minutes: a request that may hang for longer stalls a worker, it does not wait.
_timeout = {"minimum": Decimal("0.1"), "maximum": Decimal(120)}
DHANHQ_CONNECT_TIMEOUT = float(envdecimal("DHANHQ_CONNECT_TIMEOUT", "3.05", **_timeout))
DHANHQ_READ_TIMEOUT = float(envdecimal("DHANHQ_READ_TIMEOUT", "10", **_timeout))
DHANHQ_ORDER_READ_TIMEOUT = float(envdecimal("DHANHQ_ORDER_READ_TIMEOUT", "5", **_timeout))
DHANHQ_REST_MAX_ATTEMPTS = envint("DHANHQ_REST_MAX_ATTEMPTS", 4, minimum=1, maximum=10)

# --- Trading mode and paper account ------------------------------------------------------------
# Live orders need PAPER_MODE=false AND ENABLE_ORDER=true AND credentials; anything less is paper.
PAPER_MODE = envbool("PAPER_MODE", True)
ENABLE_ORDER = envbool("ENABLE_ORDER", False)
# Unset: the paper ledger opens with config/algo.yml paper.seed_cash; code reads the effective
# figure through trading.config.store.paper_seed_cash(), never this setting directly.
# Bounded as paper.seed_cash is (MAX_SEED_CASH_RUPEES of trading/config/load.py: Rs 10 crore;
# tests/algo_scalper/test_settings.py checks the two agree).
PAPER_SEED_CASH = (
    envdecimal("PAPER_SEED_CASH", "0", above=Decimal(0), maximum=Decimal(100_000_000), places=2)
    if envstr("PAPER_SEED_CASH")
    else None
)
# Unset: paper fills are charged with the full Indian charges model (config/charges.yml).
# Set: a flat amount in rupees per executed order instead (a simple override for experiments).
_flat = envstr("PAPER_CHARGES_PER_ORDER")
PAPER_CHARGES_PER_ORDER = (
    envdecimal(
        "PAPER_CHARGES_PER_ORDER", "0", minimum=Decimal(0), maximum=Decimal(10_000), places=2
    )
    if _flat
    else None
)

# --- Instrument catalog ------------------------------------------------------------------------
CONFIG_DIR = Path(envstr("ALGO_CONFIG_DIR", str(BASE_DIR / "config")))
INSTRUMENTS_CONFIG_FILE = CONFIG_DIR / "instruments.yml"
# The trading rules' knobs (trading/config/) and the dated charge rates (trading/charges.py).
ALGO_CONFIG_FILE = CONFIG_DIR / "algo.yml"
CHARGES_CONFIG_FILE = CONFIG_DIR / "charges.yml"
INSTRUMENTS_SCRIP_MASTER_URL = envstr(
    "INSTRUMENTS_SCRIP_MASTER_URL", "https://images.dhan.co/api-data/api-scrip-master.csv"
)
INSTRUMENTS_CACHE_DIR = Path(envstr("INSTRUMENTS_CACHE_DIR", str(BASE_DIR / "var" / "cache")))

# --- Logging: stdout, secrets masked -----------------------------------------------------------
_redis_password = urlsplit(REDIS_URL).password if REDIS_URL else None
SENSITIVE_VALUES = tuple(
    v for v in (DHANHQ_ACCESS_TOKEN, SECRET_KEY, _db.get("PASSWORD"), _redis_password) if v
)
LOG_LEVEL = envchoice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "algo_scalper.log.RedactingFormatter",
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "trading.dhan": {"level": DHANHQ_LOG_LEVEL},
        "django.db.backends": {"level": "INFO"},
    },
}

REST_FRAMEWORK = {
    # Staff users holding the model permission the admin would require (trading/api).
    "DEFAULT_PERMISSION_CLASSES": ["trading.api.permissions.ModelPermission"],
    # JSON only, decoded strictly: an unsafe body is a 400 naming the problem, never a 500.
    "DEFAULT_PARSER_CLASSES": ["trading.api.parsers.StrictJSONParser"],
    # JSON out too: no browsable HTML forms (they cannot send If-Match, and the API is for
    # scripts; people have the admin), and no ?format= switch (a bad one was a bare 404).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "URL_FORMAT_OVERRIDE": None,
    # The admin's session, or HTTP Basic with wrong passwords throttled (trading/api/auth.py).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "trading.api.auth.SessionAuthentication",
        "trading.api.auth.ThrottledBasicAuthentication",
    ],
}
