""".env.example documents every variable settings.py reads, with values the settings accept and
no secrets in it."""

from __future__ import annotations

import re
from pathlib import Path

from algo_scalper.dotenv import parse_dotenv
from tests.algo_scalper.conftest import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
# `NAME=value` or, for optional variables, the commented-out `# NAME=value`.
ASSIGNMENT = re.compile(r"^\s*(?:#\s*)?(?:export\s+)?([A-Z][A-Z0-9_]*)=(.*)$")
SECRET_NAMES = {"DJANGO_SECRET_KEY", "DHANHQ_ACCESS_TOKEN", "ACCESS_TOKEN", "POSTGRES_PASSWORD"}


def documented() -> dict[str, str]:
    """Every NAME=value line of the example, commented out or not (the last one wins)."""
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            found.update(parse_dotenv(f"{match.group(1)}={match.group(2)}"))
    return found


def test_the_parser_finds_every_settings_variable_including_fallbacks(settings_env_names):
    # Guards the test below: a parser that found nothing would let any example pass.
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "PAPER_MODE", "LOG_LEVEL"} <= settings_env_names
    assert {"CLIENT_ID", "ACCESS_TOKEN"} <= settings_env_names  # fallbacks=[...]
    assert len(settings_env_names) >= 25


def test_every_variable_settings_reads_is_in_the_example(settings_env_names):
    missing = sorted(settings_env_names - documented().keys())
    assert not missing, f"add these to .env.example: {missing}"


def test_the_example_only_sets_secrets_to_empty_values():
    values = parse_dotenv(EXAMPLE.read_text(encoding="utf-8"))
    for name in SECRET_NAMES & values.keys():
        assert values[name] == "", f"{name} must stay empty in .env.example"
    for name in SECRET_NAMES & documented().keys():
        assert documented()[name] == "", f"{name} must stay empty in .env.example"


def test_the_example_contains_nothing_shaped_like_a_dhan_token():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"eyJ[A-Za-z0-9_-]{8,}\.", text)


def test_every_example_value_is_accepted_by_the_settings(load_settings):
    # Uncomment everything: each documented value, example or default, must load cleanly.
    env = {**documented(), "DJANGO_SECRET_KEY": TEST_SECRET_KEY}
    loaded = load_settings(env, "PAPER_MODE", "DHANHQ_WS_MODE", "DHANHQ_WS_WATCHLIST")
    values = loaded.json()
    assert values["PAPER_MODE"] is True
    assert values["DHANHQ_WS_WATCHLIST"] == ["IDX_I:13", "IDX_I:25"]
