"""A ``.env`` that is not UTF-8 stops the process with one line naming the file and the line; a
line that is not ``KEY=value`` is said on stderr by its number (never its text) and ignored.

Found by a probe: a latin-1 ``.env`` gave a 33-line traceback in every command, and a bare
``PAPER_MODE`` line was skipped without a word.
"""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from algo_scalper.dotenv import load_dotenv, parse_dotenv

NAME = "ALGO_TEST_DOTENV_ERRORS"


@pytest.fixture
def unset(monkeypatch):
    monkeypatch.setenv(NAME, "placeholder")
    monkeypatch.delenv(NAME)


def test_a_file_that_is_not_utf8_is_one_line_naming_the_file_and_the_line(tmp_path, unset):
    path = tmp_path / ".env"
    path.write_bytes(b"# comment\nA_OK=1\nPAPER_MODE=caf\xe9\n")
    with pytest.raises(ImproperlyConfigured) as caught:
        load_dotenv(path)
    assert str(caught.value) == f"{path}: line 3 is not UTF-8 (byte 0xe9): save the file as UTF-8"
    assert NAME not in os.environ


def test_a_line_without_an_equals_sign_is_said_by_its_number(tmp_path, unset, capsys):
    path = tmp_path / ".env"
    path.write_text(f"PAPER_MODE\n{NAME}=set\nsecret-token-pasted-alone\n", encoding="utf-8")
    load_dotenv(path)
    assert os.environ[NAME] == "set"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"algo-scalper: warning: {path}: line {n} ignored: not KEY=value (a variable it meant "
        "to set keeps its default)"
        for n in (1, 3)
    ]


def test_parse_dotenv_reports_the_ignored_lines():
    ignored: list[int] = []
    assert parse_dotenv("# c\n\nA=1\nB\n=x\n", ignored) == {"A": "1"}
    assert ignored == [4, 5]
