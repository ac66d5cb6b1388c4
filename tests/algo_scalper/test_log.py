"""algo_scalper.log: secrets never reach the log stream, wherever in a record they hide."""

from __future__ import annotations

import base64
import json
import logging
import sys

import pytest

from algo_scalper.log import MASK, RedactingFormatter, redact, sensitive_values


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


# A made-up token with the shape of Dhan's access tokens (a JWT): header.payload.signature.
FAKE_JWT = ".".join(
    [
        b64url({"typ": "JWT", "alg": "HS512"}),
        b64url({"iss": "example", "dhanClientId": "1000000001", "exp": 1700000000}),
        "c2lnbmF0dXJlLW5vdC1yZWFs-c2lnbmF0dXJl_c2ln",
    ]
)


# --- redact() -----------------------------------------------------------------------------------


def test_it_masks_a_jwt_looking_token_anywhere_in_the_text():
    text = f"auth failed for token {FAKE_JWT} (DH-901)"
    assert redact(text) == f"auth failed for token {MASK} (DH-901)"


def test_it_masks_a_jwt_inside_json():
    text = json.dumps({"LoginReq": {"MsgCode": 42, "ClientId": "1000", "Token": FAKE_JWT}})
    out = redact(text)
    assert FAKE_JWT not in out
    assert '"ClientId": "1000"' in out


def test_it_masks_the_token_query_parameter_and_keeps_the_others():
    url = "wss://api-feed.dhan.co?version=2&token=opaque-secret-123&clientId=1000&authType=2"
    assert redact(url) == f"wss://api-feed.dhan.co?version=2&token={MASK}&clientId=1000&authType=2"


@pytest.mark.parametrize("name", ["token", "access_token", "TOKEN", "accessToken"])
def test_it_masks_any_parameter_ending_in_token(name):
    out = redact(f"GET /x?{name}=opaque-secret-123&page=2")
    assert "opaque-secret-123" not in out
    assert "page=2" in out


@pytest.mark.parametrize(
    "text",
    [
        "access-token: opaque-secret-123",
        "Access-Token: opaque-secret-123",
        "access-token=opaque-secret-123",
        "{'access-token': 'opaque-secret-123', 'client-id': '1000'}",
        '{"access-token": "opaque-secret-123", "client-id": "1000"}',
        '{"access-token":"opaque-secret-123","client-id":"1000"}',
    ],
)
def test_it_masks_the_access_token_header_in_header_lines_dicts_and_json(text):
    out = redact(text)
    assert "opaque-secret-123" not in out
    assert MASK in out
    if "client-id" in text:
        assert "1000" in out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://algo:hunter2-pw@db.internal:5432/algo",
            f"postgres://algo:{MASK}@db.internal:5432/algo",
        ),
        (
            "postgresql://user:p%40ss%2Fword@localhost/db?sslmode=require",
            f"postgresql://user:{MASK}@localhost/db?sslmode=require",
        ),
        (
            "redis://default:hunter2-pw@redis.railway.internal:6379/0",
            f"redis://default:{MASK}@redis.railway.internal:6379/0",
        ),
    ],
)
def test_it_masks_the_password_in_database_and_redis_urls(url, expected):
    assert redact(f"could not connect to {url}") == f"could not connect to {expected}"


def test_it_masks_the_password_in_a_url_with_an_empty_user_name():
    # redis-py and Celery both accept redis://:password@host (no user name), the usual way to
    # write a password-only Redis URL.
    out = redact("broker redis://:hunter2-pw@redis:6379/0 unreachable")
    assert "hunter2-pw" not in out


def test_it_leaves_urls_without_a_password_alone():
    text = "postgres://postgres@127.0.0.1:5432/algo and http://localhost:8000/healthz"
    assert redact(text) == text


def test_it_masks_explicit_secret_values_that_match_no_pattern():
    text = "login with client secret PlainSecretValue and again PlainSecretValue"
    assert (
        redact(text, ("PlainSecretValue",)) == f"login with client secret {MASK} and again {MASK}"
    )


def test_it_treats_secret_values_as_literal_text_not_patterns():
    assert redact("pw is a.b*c+", ("a.b*c+",)) == f"pw is {MASK}"
    assert redact("pw is aXbbbc+", ("a.b*c+",)) == "pw is aXbbbc+"


def test_it_ignores_empty_and_very_short_secrets_so_ordinary_text_survives():
    text = "order 1 filled at 101.5"
    assert redact(text, ("", "1", "01")) == text


def test_it_leaves_text_without_secrets_unchanged():
    text = "NIFTY 24500 CE bought 75 @ 101.50, correlationId AS-EN-42-1-0"
    assert redact(text, ("PlainSecretValue",)) == text


def test_redacting_twice_changes_nothing_more():
    text = f"token={FAKE_JWT} postgres://u:pw12@h/db"
    once = redact(text)
    assert redact(once) == once


# --- RedactingFormatter -------------------------------------------------------------------------


def make_record(msg: str, args: tuple = (), exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord(
        name="trading.dhan",
        level=logging.ERROR,
        pathname=__file__,
        lineno=1,
        msg=msg,
        args=args,
        exc_info=exc_info,
    )


def test_the_formatter_masks_a_secret_in_the_message():
    formatter = RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    out = formatter.format(make_record(f"feed url wss://api-feed.dhan.co?token={FAKE_JWT}"))
    assert out == f"ERROR trading.dhan: feed url wss://api-feed.dhan.co?token={MASK}"


def test_the_formatter_masks_a_secret_passed_as_an_argument():
    formatter = RedactingFormatter("%(message)s")
    record = make_record("headers %r url %s", ({"access-token": FAKE_JWT}, "postgres://u:pw12@h/d"))
    out = formatter.format(record)
    assert FAKE_JWT not in out
    assert "pw12" not in out
    assert out.startswith("headers {'access-token': ")


def test_the_formatter_masks_a_secret_inside_an_exception_traceback():
    def connect() -> None:
        raise ConnectionError(f"handshake failed for wss://api-feed.dhan.co?token={FAKE_JWT}")

    try:
        connect()
    except ConnectionError:
        exc_info = sys.exc_info()
    formatter = RedactingFormatter("%(message)s")
    out = formatter.format(make_record("feed connection lost", exc_info=exc_info))
    assert "Traceback (most recent call last)" in out
    assert "ConnectionError: handshake failed" in out
    assert FAKE_JWT not in out
    assert f"token={MASK}" in out


def test_the_formatter_masks_the_secret_values_from_settings(settings):
    settings.SENSITIVE_VALUES = ("PlainSecretValue",)
    assert sensitive_values() == ("PlainSecretValue",)
    out = RedactingFormatter("%(message)s").format(make_record("secret=%s", ("PlainSecretValue",)))
    assert out == f"secret={MASK}"


def test_sensitive_values_skips_empty_entries(settings):
    settings.SENSITIVE_VALUES = ("", None, "PlainSecretValue")
    assert sensitive_values() == ("PlainSecretValue",)


def test_the_settings_logging_config_formats_with_the_redacting_formatter(settings):
    formatter = settings.LOGGING["formatters"]["plain"]
    assert formatter["()"] == "algo_scalper.log.RedactingFormatter"
    assert settings.LOGGING["handlers"]["stdout"]["formatter"] == "plain"
    assert settings.LOGGING["root"]["handlers"] == ["stdout"]
