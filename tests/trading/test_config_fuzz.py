"""Property: whatever JSON an operator (or an attacker) sends as algo overrides, validation
answers with the config or a ConfigError whose lines print, never another exception.

The API turns ConfigError into a 400 and anything else into a 500; the overrides come from a
request body, the admin or the database, so every JSON value is possible: huge integers, NaN,
lone surrogates, long strings, deep nesting, any key anywhere. Hypothesis generates them,
both as whole documents and planted at the real key paths of algo.yml, where they reach the
validators of money, times, flags and the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config_schema import ConfigError
from config_schema.reading import read_yaml_file
from trading.config.load import load_algo_file
from trading.config.types import AlgoConfig

ALGO_YML = Path(__file__).resolve().parents[2] / "config" / "algo.yml"


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of the shipped file (indices by their key, as overrides address them)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list) and prefix == ("indices",):
        for item in value:
            found += _paths(item, (*prefix, item["key"]))
    return found


PATHS = _paths(read_yaml_file(ALGO_YML))

NUMBERS_AS_TEXT = st.sampled_from(
    [
        "1e30",
        "1e999999",
        "1e999999999",
        "-1e999999999",
        "NaN",
        "Infinity",
        "-0",
        "0.001",
        "\u0661\u0660\u0660",
        "\uff11\uff10",
        "12:30",
        "2026-02-30",
        "1_000",
        " 5 ",
        "",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    # Beyond any bound, yet under the 4,300 digits past which hypothesis itself cannot show a
    # number while shrinking (a CI run died in its shrinker on 10**6000).
    | st.integers(min_value=-(10**4000), max_value=10**4000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=30)  # surrogates too
    | st.text(min_size=1, max_size=5).map(lambda text: text * 20_000)  # long strings
    | NUMBERS_AS_TEXT
)
KEYS = st.sampled_from([path[-1] for path in PATHS]) | st.text(
    st.characters(codec=None, exclude_categories=()), max_size=10
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


def planted(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


OVERRIDES = (
    JSON
    | st.builds(planted, st.sampled_from(PATHS), JSON)
    | st.builds(nested, st.integers(1, 3000), JSON)
)


def assert_only_config_errors(overrides: Any) -> None:
    try:
        config = load_algo_file(ALGO_YML, overrides)
    except ConfigError as exc:
        assert exc.problems
        for line in exc.problems:
            assert line.startswith(("Setting algo.overrides: ", "algo.yml: "))
            line.encode("utf-8")  # prints and serialises: no lone surrogate
            assert len(line) < 2000
    else:
        assert isinstance(config, AlgoConfig)


@settings(
    max_examples=200,
    deadline=None,  # a shared CI machine's pauses are no finding; no timing assertions here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(OVERRIDES)
def test_any_json_overrides_give_the_config_or_a_config_error(overrides):
    assert_only_config_errors(overrides)
