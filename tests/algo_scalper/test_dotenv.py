"""algo_scalper.dotenv: the tiny .env reader, and a deploy's real variables always win."""

from __future__ import annotations

import os

import pytest

from algo_scalper.dotenv import load_dotenv, parse_dotenv


def test_it_reads_key_value_lines():
    assert parse_dotenv("PAPER_MODE=true\nLOG_LEVEL=DEBUG\n") == {
        "PAPER_MODE": "true",
        "LOG_LEVEL": "DEBUG",
    }


def test_it_skips_comments_and_blank_lines():
    text = "# a comment\n\n   # an indented comment\nA=1\n   \n"
    assert parse_dotenv(text) == {"A": "1"}


def test_it_accepts_an_export_prefix():
    assert parse_dotenv("export A=1\nexport   B=2\n") == {"A": "1", "B": "2"}


def test_it_trims_spaces_around_key_and_value():
    assert parse_dotenv("  A  =  spaced value  ") == {"A": "spaced value"}


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('A="double quoted"', "double quoted"),
        ("A='single quoted'", "single quoted"),
        ('A="  keeps inner spaces  "', "  keeps inner spaces  "),
        ('A="has # hash"', "has # hash"),
        ("A='it has = signs'", "it has = signs"),
        ('A=""', ""),
    ],
)
def test_it_strips_one_pair_of_matching_quotes(line, value):
    assert parse_dotenv(line) == {"A": value}


@pytest.mark.parametrize("line", ["A=\"mismatched'", "A='unterminated", 'A="'])
def test_it_keeps_unmatched_quotes_as_they_are(line):
    assert parse_dotenv(line) == {"A": line[2:]}


def test_it_drops_an_inline_comment_after_whitespace():
    assert parse_dotenv("LOG_LEVEL=INFO # or DEBUG") == {"LOG_LEVEL": "INFO"}


def test_it_keeps_a_hash_that_is_not_preceded_by_whitespace():
    # Passwords and URL fragments contain '#'.
    assert parse_dotenv("PASSWORD=ab#cd") == {"PASSWORD": "ab#cd"}


def test_it_strips_quotes_from_a_quoted_value_followed_by_an_inline_comment():
    # KEY="value" # comment is common in hand-written .env files (python-dotenv, docker compose
    # and shells all read the value as `value`, without quotes).
    assert parse_dotenv('ALLOWED_HOSTS="a.example,b.example" # production hosts') == {
        "ALLOWED_HOSTS": "a.example,b.example"
    }


def test_it_keeps_equals_signs_inside_the_value():
    line = "DATABASE_URL=postgres://u@h/db?sslmode=require&options=-c%20x=y"
    assert parse_dotenv(line) == {
        "DATABASE_URL": "postgres://u@h/db?sslmode=require&options=-c%20x=y"
    }


def test_it_reads_an_empty_value_as_empty():
    assert parse_dotenv("REDIS_URL=") == {"REDIS_URL": ""}


def test_it_ignores_lines_without_a_key_or_an_equals_sign():
    assert parse_dotenv("just words\n=no-key\n  = also-no-key\nA=1") == {"A": "1"}


def test_the_last_of_repeated_keys_wins():
    assert parse_dotenv("A=1\nA=2") == {"A": "2"}


def test_it_reads_windows_line_endings():
    assert parse_dotenv("A=1\r\nB=2\r\n") == {"A": "1", "B": "2"}


# --- load_dotenv --------------------------------------------------------------------------------

NAMES = ("ALGO_TEST_DOTENV_NEW", "ALGO_TEST_DOTENV_SET", "ALGO_TEST_DOTENV_EMPTY")


@pytest.fixture
def unset_names(monkeypatch):
    """Make NAMES unset for the test and removed again afterwards, even if the test sets them."""
    for name in NAMES:
        monkeypatch.setenv(name, "placeholder")  # records "was unset" so teardown deletes it
        monkeypatch.delenv(name)


def test_load_dotenv_sets_variables_that_are_unset(tmp_path, unset_names):
    path = tmp_path / ".env"
    path.write_text("ALGO_TEST_DOTENV_NEW=from-file\n", encoding="utf-8")
    load_dotenv(path)
    assert os.environ["ALGO_TEST_DOTENV_NEW"] == "from-file"


def test_load_dotenv_never_overrides_a_variable_already_in_the_environment(
    tmp_path, unset_names, monkeypatch
):
    monkeypatch.setenv("ALGO_TEST_DOTENV_SET", "from-deploy")
    monkeypatch.setenv("ALGO_TEST_DOTENV_EMPTY", "")
    path = tmp_path / ".env"
    path.write_text(
        "ALGO_TEST_DOTENV_SET=from-file\nALGO_TEST_DOTENV_EMPTY=from-file\n", encoding="utf-8"
    )
    load_dotenv(path)
    assert os.environ["ALGO_TEST_DOTENV_SET"] == "from-deploy"
    # Set-but-empty is still set: the file does not fill it in.
    assert os.environ["ALGO_TEST_DOTENV_EMPTY"] == ""


def test_load_dotenv_does_nothing_when_the_file_is_missing(tmp_path, unset_names):
    before = dict(os.environ)
    load_dotenv(tmp_path / "missing.env")
    assert dict(os.environ) == before


def test_load_dotenv_ignores_a_directory_named_like_the_file(tmp_path, unset_names):
    (tmp_path / ".env").mkdir()
    before = dict(os.environ)
    load_dotenv(tmp_path / ".env")
    assert dict(os.environ) == before


def test_load_dotenv_reads_the_file_as_utf8(tmp_path, unset_names):
    path = tmp_path / ".env"
    path.write_bytes("ALGO_TEST_DOTENV_NEW=₹ seed\n".encode())
    load_dotenv(path)
    assert os.environ["ALGO_TEST_DOTENV_NEW"] == "₹ seed"
