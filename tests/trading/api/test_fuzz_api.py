"""Property-based fuzz of every write and list endpoint, as a user holding every permission the
endpoints need: whatever the body or query string, the answer is never a 5xx, and a 4xx stores
nothing. Bodies are both arbitrary JSON (lone surrogates, NaN, huge numbers, deep structures)
and shaped like the real thing (real config key paths and switch fields with hostile values).

Kept quick and stable for CI: bounded examples, no deadline, derandomized, no example database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from tests.support.rows import make_position, make_signal
from tests.trading.conftest import ALGO_YML
from trading.api.overrides import overrides_version
from trading.config.load import OVERRIDES_KEY, config_as_dict
from trading.config.store import load_algo_config
from trading.models import Setting

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("project_algo_config")]

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

OVERRIDES = "/api/config/overrides/"
SWITCHES = "/api/switches/"
LISTS = {
    "/api/signals/": ["index", "outcome", "direction", "date", "limit", "offset", "format"],
    "/api/positions/": ["status", "underlying", "limit", "offset", "format"],
}

# -- strategies --------------------------------------------------------------------------------

# Every character, lone surrogates (category Cs) and NUL included.
any_char = st.characters(exclude_categories=())
texts = st.text(any_char, max_size=12)
hostile_strings = st.sampled_from(
    [
        "",
        "1e999999999",
        "1e30",
        "-1e30",
        "NaN",
        "Infinity",
        "-0",
        "0.0000000001",
        "\u0661\u0660\u0660",  # Arabic-Indic digits
        "15:20",
        "25:99",
        "2026-02-30",
        "9999-12-31",
        "0001-01-01",
        "\ud800",
        "\x00",
        "x" * 5000,
    ]
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**63, 10**30, 1e308, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts, hostile_strings)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(texts, hostile_strings), children, max_size=4)
    ),
    max_leaves=16,
)


def _config_paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf key path of the effective config, keyed lists (indices) by their key, as an
    override addresses them."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _config_paths(child, (*prefix, key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:
            rest = {k: v for k, v in item.items() if k != "key"}
            yield from _config_paths(rest, (*prefix, str(item.get("key"))))
    else:
        yield prefix


PATHS = sorted(set(_config_paths(config_as_dict(load_algo_config(ALGO_YML)))))


@st.composite
def shaped_overrides(draw: st.DrawFn) -> dict[str, Any]:
    """Real key paths of config/algo.yml (or a prefix of one) with hostile values."""
    body: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=4)):
        cut = draw(st.integers(min_value=1, max_value=len(path)))
        node = body
        for key in path[: cut - 1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[cut - 1]] = draw(json_values)
    return body


shaped_switches = st.fixed_dictionaries(
    {},
    optional={
        "trading_enabled": scalars,
        "kill_switch": st.one_of(
            scalars,
            st.fixed_dictionaries(
                {}, optional={"active": scalars, "reason": st.one_of(texts, hostile_strings)}
            ),
            json_values,
        ),
        "unknown": scalars,
    },
)


def encoded(value: Any) -> bytes:
    # ensure_ascii: a lone surrogate goes over the wire as the escape "\ud800", as an attacker
    # would send it; allow_nan: NaN and Infinity go as the bare words.
    return json.dumps(value, ensure_ascii=True).encode()


bodies_for_overrides = st.one_of(
    shaped_overrides().map(encoded),
    json_values.map(encoded),
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=2000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
)
bodies_for_switches = st.one_of(
    shaped_switches.map(encoded), json_values.map(encoded), st.binary(max_size=64)
)
query_strings = st.one_of(
    # Raw bytes as a WSGI server hands them over (PEP 3333: decoded as latin-1): percent
    # signs, ampersands, invalid UTF-8, garbage.
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")),
    st.text(st.sampled_from("%&=+;#?aZ09.-_ED"), max_size=40),
    st.sampled_from(["date=9999-12-31", "offset=" + "9" * 30, "limit=%00", "date=%ED%A0%80"]),
)

# -- the user and the invariant ----------------------------------------------------------------


@pytest.fixture
def api(django_user_model) -> APIClient:
    """A staff user with exactly the permissions the endpoints need (not a superuser)."""
    user = django_user_model.objects.create_user("fuzz", "f@example.com", is_staff=True)
    codenames = [
        "change_setting",
        "view_setting",
        "view_tradingsignal",
        "view_positiontracker",
        "change_positiontracker",
    ]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.force_authenticate(user)
    return client


def stored() -> dict[str, Any]:
    return dict(Setting.objects.values_list("key", "value"))


def check(response: Any, before: dict[str, Any]) -> None:
    assert response.status_code < 500, response.content[:500]
    if 400 <= response.status_code < 500:
        assert stored() == before, "a refused request changed the stored settings"


# -- the properties ----------------------------------------------------------------------------


@FUZZ
@given(body=bodies_for_overrides, right_version=st.booleans())
def test_the_overrides_endpoint_never_fails_and_stores_nothing_it_refuses(api, body, right_version):
    before = stored()
    version = overrides_version(before.get(OVERRIDES_KEY)) if right_version else "0" * 16
    response = api.generic(
        "PUT", OVERRIDES, body, content_type="application/json", HTTP_IF_MATCH=f'"{version}"'
    )
    check(response, before)
    if response.status_code == 200:
        assert Setting.get(OVERRIDES_KEY) == json.loads(body)


@FUZZ
@given(body=bodies_for_switches, method=st.sampled_from(["PUT", "PATCH"]))
def test_the_switches_endpoint_never_fails_and_stores_nothing_it_refuses(api, body, method):
    before = stored()
    response = api.generic(method, SWITCHES, body, content_type="application/json")
    check(response, before)
    if response.status_code == 200:
        assert api.get(SWITCHES).json() == response.json()


@FUZZ
@given(
    path=st.sampled_from(sorted(LISTS)),
    params=st.dictionaries(
        st.one_of(st.sampled_from(sorted({p for ps in LISTS.values() for p in ps})), texts),
        st.one_of(texts, hostile_strings, numbers.map(str)),
        max_size=4,
    ),
    raw=query_strings,
    use_raw=st.booleans(),
)
def test_the_list_endpoints_never_fail_on_any_query_string(api, path, params, raw, use_raw):
    if not Setting.objects.filter(key="fuzz.rows").exists():
        make_signal()
        make_position()
        Setting.put("fuzz.rows", True)
    if use_raw:
        response = api.get(path, QUERY_STRING=raw)
    else:
        safe = {
            k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
            for k, v in params.items()
        }
        response = api.get(path, QUERY_STRING=urlencode(safe))
    assert response.status_code < 500, response.content[:500]


@FUZZ
@given(
    path=st.sampled_from(["/api/signals/", "/api/positions/"]),
    ident=st.integers(min_value=0, max_value=10**30),
)
def test_the_detail_endpoints_never_fail_on_any_id(api, path, ident):
    assert api.get(f"{path}{ident}/").status_code in (200, 404)


@FUZZ
@given(body=bodies_for_switches, ident=st.integers(min_value=0, max_value=10**30))
def test_the_exit_endpoint_never_fails_and_claims_only_on_a_202(api, body, ident):
    from trading.models import PositionTracker

    position = make_position()
    target = position.pk if ident % 2 else ident
    response = api.generic(
        "POST", f"/api/positions/{target}/exit/", body, content_type="application/json"
    )
    assert response.status_code < 500, response.content[:500]
    position.refresh_from_db()
    claimed = position.status == "exiting"
    assert claimed == (response.status_code == 202 and target == position.pk)
    PositionTracker.objects.filter(pk=position.pk).delete()
