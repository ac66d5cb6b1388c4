"""What a probe of the API as an attacker and a careless operator found, each a 4xx naming the
problem with nothing stored: reasons that forge audit lines, a number as a reason, a reason on
an inactive kill switch, a version that did not match what was stored, a client's header
echoed whole, Python's advice on huge integers, ``?format=``, HTML 404s for bad ids, chunked
bodies read as empty, unlimited password guessing over HTTP Basic, and an override renaming an
index."""

from __future__ import annotations

import base64

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.support.rows import make_position
from trading.api.auth import MAX_FAILURES
from trading.api.overrides import overrides_version
from trading.config.load import OVERRIDES_KEY
from trading.models import PositionTracker, Setting
from trading.switches import KILL_SWITCH_KEY, switches_state

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

FORGED = "ok\n2026-12-06 06:12:00,000 WARNING trading.switches: Switches changed by admin"


def current_version() -> str:
    return overrides_version(Setting.get(OVERRIDES_KEY))


def put_overrides(api: APIClient, body: str, version: str | None = None) -> object:
    return api.generic(
        "PUT",
        "/api/config/overrides/",
        body,
        content_type="application/json",
        HTTP_IF_MATCH=f'"{version or current_version()}"',
    )


# -- reasons: one line of printable text ---------------------------------------------------------


@pytest.mark.parametrize("reason", [FORGED, "red \x1b[31m", "\u202egnp.exe", "tab\there"])
def test_an_exit_reason_that_could_forge_or_disguise_a_log_line_is_a_400(admin_api, reason):
    position = make_position()
    answer = admin_api.post(f"/api/positions/{position.pk}/exit/", {"reason": reason}, "json")
    assert answer.status_code == 400, answer.content
    assert "one line of printable text" in answer.json()["reason"][0]
    position.refresh_from_db()
    assert position.status == "active" and position.exit_reason == ""


@pytest.mark.parametrize(
    ("kill", "field", "said"),
    [
        ({"active": True, "reason": FORGED}, "reason", "a control character (U+000A)"),
        ({"active": True, "reason": "x\u2028y"}, "reason", "a line separator"),
        ({"active": True, "reason": 5}, "reason", "Must be a JSON string."),
        ({"active": False, "reason": "left on"}, "reason", "Only with active true"),
    ],
)
def test_a_kill_switch_reason_is_one_line_of_text_and_only_on(admin_api, kill, field, said):
    answer = admin_api.patch("/api/switches/", {"kill_switch": kill}, "json")
    assert answer.status_code == 400, answer.content
    assert said in str(answer.json()["kill_switch"][field])
    assert Setting.get(KILL_SWITCH_KEY) is None  # nothing stored


def test_turning_the_kill_switch_off_with_no_reason_clears_the_reason(admin_api):
    on = {"kill_switch": {"active": True, "reason": "RBI policy"}}
    assert admin_api.patch("/api/switches/", on, "json").status_code == 200
    off = {"kill_switch": {"active": False}}
    assert admin_api.patch("/api/switches/", off, "json").status_code == 200
    assert switches_state()["kill_switch"] == {"active": False, "reason": ""}


# -- the overrides' version ----------------------------------------------------------------------


def test_the_version_answered_is_the_stored_values_so_the_next_put_is_not_refused(admin_api):
    # PostgreSQL's jsonb stores -0.0 as 0.0: a version of the body would not be the version of
    # what the next GET (and the next PUT's check) reads.
    body = '{"exits": {"peak_giveback": {"giveback_to_pct": -0.0}}}'
    answer = put_overrides(admin_api, body)
    assert answer.status_code == 200, answer.content
    etag = answer.headers["ETag"].strip('"')
    assert etag == current_version() == answer.json()["overrides_version"]
    again = put_overrides(admin_api, "{}", version=etag)
    assert again.status_code == 200, again.content


def test_a_stale_version_answer_does_not_echo_a_huge_if_match(admin_api):
    answer = put_overrides(admin_api, "{}", version="f" * 100_000)
    assert answer.status_code == 412
    assert len(answer.content) < 2_000


# -- what a script gets back ---------------------------------------------------------------------


def test_a_huge_integer_is_named_without_pythons_advice(admin_api):
    answer = put_overrides(admin_api, '{"risk": {"max_trades_per_day": ' + "9" * 5000 + "}}")
    assert answer.status_code == 400
    text = answer.content.decode()
    assert "an integer of 5,000 digits" in text and "set_int_max_str_digits" not in text


@pytest.mark.parametrize("value", ["xml", "api", "json"])
def test_format_is_not_a_parameter_of_the_json_only_api(admin_api, value):
    answer = admin_api.get(f"/api/positions/?format={value}")
    assert answer.status_code == 400
    assert "format" in answer.json()


def test_no_browsable_html_is_served(admin_api):
    answer = admin_api.get("/api/positions/", HTTP_ACCEPT="text/html")
    assert "text/html" not in answer.headers.get("Content-Type", "")


@pytest.mark.parametrize("path", ["/api/positions/abc/exit/", "/api/positions/-1/", "/api/nope/"])
def test_an_unknown_api_path_is_a_json_404(admin_api, path):
    answer = admin_api.post(path, {}, "json")
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["detail"].startswith("no such resource: /api/")


def test_a_chunked_body_is_a_411_not_an_empty_body(admin_api):
    answer = admin_api.generic(
        "PUT",
        "/api/config/overrides/",
        "",
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_IF_MATCH=f'"{current_version()}"',
    )
    assert answer.status_code == 411
    assert "Content-Length" in answer.json()["detail"]


# -- HTTP Basic: wrong passwords are throttled ----------------------------------------------------


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def test_wrong_passwords_over_basic_are_throttled_per_user_and_address(django_user_model):
    cache.clear()
    django_user_model.objects.create_superuser("ops", "o@example.com", "right-password-1")
    django_user_model.objects.create_superuser("desk", "d@example.com", "right-password-2")
    client = APIClient()
    assert client.get("/api/switches/", **basic("ops", "right-password-1")).status_code == 200
    for _ in range(MAX_FAILURES):
        assert client.get("/api/switches/", **basic("ops", "guess")).status_code == 403
    # The allowance is spent: even the right password waits, and says why and for how long.
    locked = client.get("/api/switches/", **basic("ops", "right-password-1"))
    assert locked.status_code == 429
    assert "wrong passwords" in locked.json()["detail"] and locked.headers["Retry-After"]
    # Another user from the same address, and the same user from another address, are not.
    assert client.get("/api/switches/", **basic("desk", "right-password-2")).status_code == 200
    elsewhere = client.get(
        "/api/switches/", REMOTE_ADDR="10.0.0.9", **basic("ops", "right-password-1")
    )
    assert elsewhere.status_code == 200
    cache.clear()


# -- overrides cannot rename an index -------------------------------------------------------------


def test_an_override_cannot_rename_an_index(admin_api):
    before = Setting.get(OVERRIDES_KEY)
    answer = put_overrides(admin_api, '{"indices": {"NIFTY": {"key": "FOO"}}}')
    assert answer.status_code == 400, answer.content
    (problem,) = answer.json()["errors"]
    assert "indices.NIFTY.key: expected 'NIFTY' (an override cannot rename" in problem
    assert Setting.get(OVERRIDES_KEY) == before
    assert PositionTracker.objects.count() == 0
