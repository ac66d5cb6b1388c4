"""config_schema.reading: a YAML config file is UTF-8, one document, and repeats no key."""

from __future__ import annotations

import pytest

from config_schema import ConfigError
from config_schema.reading import parse_yaml, read_yaml_file
from config_schema.schema import adapter, money, validate


def problems(text: str, name: str = "algo.yml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, name)
    return caught.value.problems


def test_a_duplicated_key_is_refused_naming_both_lines_and_the_key_path():
    text = "risk:\n  daily_loss_limit:\n    rupees: 5000\n    rupees: 50000000\n"
    assert problems(text) == [
        "algo.yml: line 4: risk.daily_loss_limit.rupees: duplicate key (first at line 3); "
        "YAML would keep only the last one, silently: remove one"
    ]


def test_every_duplicated_key_is_reported_at_once_in_file_order():
    text = "a: 1\nb:\n  - {key: NIFTY, x: 1, x: 2}\na: 3\n"
    assert problems(text) == [
        "algo.yml: line 3: b[0].x: duplicate key (first at line 3); "
        "YAML would keep only the last one, silently: remove one",
        "algo.yml: line 4: a: duplicate key (first at line 1); "
        "YAML would keep only the last one, silently: remove one",
    ]


def test_a_merge_key_overridden_by_a_later_key_is_not_a_duplicate():
    text = "base: &base {x: 1, y: 2}\nitem:\n  <<: *base\n  x: 3\n"
    assert parse_yaml(text, "algo.yml") == {"base": {"x": 1, "y": 2}, "item": {"x": 3, "y": 2}}


def test_dates_stay_text_so_an_impossible_one_is_named_by_the_schema_not_a_traceback():
    # PyYAML's own timestamp constructor raises ValueError on 2026-02-30 inside safe_load.
    assert parse_yaml("holidays:\n  - 2026-02-30\n  - 2026-01-26\n", "algo.yml") == {
        "holidays": ["2026-02-30", "2026-01-26"]
    }


def test_a_value_yaml_cannot_construct_is_named_with_its_line_and_key_path():
    lines = problems("paper:\n  seed_cash: " + "9" * 5000 + "\n")
    assert len(lines) == 1
    assert lines[0].startswith("algo.yml: line 2: paper.seed_cash: YAML cannot read this value (")


def test_an_explicit_timestamp_that_is_no_date_is_named_too():
    (line,) = problems("when: !!timestamp 2026-02-30\n")
    assert line.startswith("algo.yml: line 1: when: YAML cannot read this value (")
    assert line.endswith("got '2026-02-30'")


@pytest.mark.parametrize(
    "text", ["market: [unclosed\n", "a: 1\n---\nb: 2\n", "[" * 5000], ids=str.strip
)
def test_text_that_is_not_one_yaml_document_is_named(text):
    (line,) = problems(text)
    assert line.startswith("algo.yml: not valid YAML ")


def test_a_file_that_is_not_utf8_is_named_with_the_line_of_the_bad_byte(tmp_path):
    path = tmp_path / "algo.yml"
    path.write_bytes(b'market:\n  session_open: "09:15"\n' + b"  x: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml_file(path)
    assert caught.value.problems == [
        "algo.yml: line 3: not UTF-8 text (byte 0xe9 at column 9); save the file as UTF-8"
    ]


def test_a_missing_file_is_named_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yml: cannot read: No such file"):
        read_yaml_file(tmp_path / "nope.yml")


def test_an_empty_file_is_none_for_the_schema_to_judge(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("# nothing\n", encoding="utf-8")
    assert read_yaml_file(path) is None


def test_config_schema_imports_nothing_of_the_project_nor_django():
    # The catalog validates instruments.yml with it, and the catalog must not import trading
    # (import contract "catalog-independent"); config_schema is outside the contracts' root
    # packages, so this fresh-interpreter check stands guard instead.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json, sys; import config_schema.reading, config_schema.schema; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    project = ("algo_scalper", "instruments", "trading", "workers", "django")
    assert [name for name in loaded if name.split(".")[0] in project] == []


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("market:\n\tsession_open: '09:15'\n", "at line 2, column 1: found character that cannot"),
        ("market: [unclosed\n", "at line 2, column 1: did not find expected ',' or ']'"),
    ],
    ids=["tab", "unclosed"],
)
def test_a_yaml_syntax_error_is_one_line_with_the_file_line_and_column(text, said):
    (line,) = problems(text)
    assert "\n" not in line and "<unicode string>" not in line
    assert line.startswith("algo.yml: not valid YAML ") and said in line


def test_a_tab_is_named_as_one():
    (line,) = problems("market:\n\tsession_open: '09:15'\n")
    assert line.endswith("YAML indents with spaces, not tabs")


@pytest.mark.parametrize("written", ["0x186a0", "0b101", "100_000", "1_000.5"])
def test_numbers_in_other_bases_or_grouped_are_refused_named(written):
    (line,) = problems(f"paper:\n  seed_cash: {written}\n")
    assert line.startswith("algo.yml: line 2: paper.seed_cash: YAML cannot read this value")
    assert "write numbers in decimal digits" in line and line.endswith(f"got {written!r}")


def test_decimal_numbers_read_as_written():
    assert parse_yaml("a: 010\nb: -3\nc: 2.50\nd: +5\n", "x.yml") == {
        "a": 10,  # YAML 1.1 would read octal 8
        "b": -3,
        "c": 2.5,
        "d": 5,
    }


def test_an_unquoted_base_60_number_is_kept_shown_as_written_and_no_amount():
    value = parse_yaml("seed_cash: 1:40:00\n", "x.yml")["seed_cash"]
    assert value == 6000 and repr(value) == "'1:40:00'"
    with pytest.raises(ConfigError) as caught:
        validate(adapter(money(100_000_000)), value, "algo.yml")
    assert str(caught.value).endswith("got '1:40:00'")
