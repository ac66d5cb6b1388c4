"""Helpers for the project-shell tests: which variables settings.py reads, and loading the
settings module in a fresh interpreter with an environment the test controls.

pytest-django imports ``algo_scalper.settings`` once, with the runner's environment, so any test
about *how settings react to the environment* must load them in a subprocess.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = ROOT / "algo_scalper" / "settings.py"
ENV_READERS = {"envstr", "envbool", "envint", "envdecimal", "envchoice", "envlist"}

# A key the settings accept with DJANGO_DEBUG off (Django's own rule: 50+ characters, 5+ distinct).
TEST_SECRET_KEY = "test-only-settings-key-long-enough-for-the-deploy-check-0123456789"

# Never inherited by a settings subprocess, whatever the runner's environment holds.
SCRUBBED_PREFIXES = ("DJANGO_", "DHANHQ_", "PAPER_", "INSTRUMENTS_", "ALGO_")
SCRUBBED_NAMES = {"DATABASE_URL", "REDIS_URL", "ENABLE_ORDER", "CLIENT_ID", "ACCESS_TOKEN"}

# Runs before anything imports the settings: a developer's own .env in the project folder must
# not leak into these tests (settings.py loads BASE_DIR/.env), so the loader is switched off.
PRELUDE = """
import algo_scalper.dotenv
algo_scalper.dotenv.load_dotenv = lambda path: None
"""


def env_names_read_by_settings() -> set[str]:
    """Every variable name settings.py passes to an env* reader, fallbacks included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(SETTINGS_FILE.read_text(encoding="utf-8"))):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ENV_READERS
        ):
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        for keyword in node.keywords:
            if keyword.arg == "fallbacks" and isinstance(keyword.value, ast.List | ast.Tuple):
                names.update(
                    elt.value
                    for elt in keyword.value.elts
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
                )
    return names


def clean_environ() -> dict[str, str]:
    """The runner's environment minus everything settings.py could read."""
    read = env_names_read_by_settings()
    return {
        key: value
        for key, value in os.environ.items()
        if key not in read and key not in SCRUBBED_NAMES and not key.startswith(SCRUBBED_PREFIXES)
    }


@dataclass(frozen=True)
class Loaded:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> dict:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout.strip().splitlines()[-1])


LoadSettings = Callable[..., Loaded]


def run_with_settings(env: dict[str, str], code: str) -> Loaded:
    """Run ``code`` after PRELUDE in a fresh interpreter at the repo root with exactly ``env``
    added to a clean environment. The code usually ends by printing one JSON line."""
    full_env = {
        **clean_environ(),
        "DJANGO_SETTINGS_MODULE": "algo_scalper.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Loaded(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def load_settings() -> LoadSettings:
    """``load_settings(env, *names)``: load the settings under ``env`` and return a Loaded whose
    ``json()`` maps each requested setting name to its value (str() for non-JSON values)."""

    def load(env: dict[str, str], *names: str) -> Loaded:
        code = (
            "import json\n"
            "from django.conf import settings\n"
            f"names = {list(names)!r}\n"
            "print(json.dumps({n: getattr(settings, n) for n in names}, default=str))\n"
        )
        return run_with_settings(env, code)

    return load


@pytest.fixture
def run_settings_code() -> Callable[[dict[str, str], str], Loaded]:
    """``run_settings_code(env, code)``: like ``load_settings``, running any code."""
    return run_with_settings


@pytest.fixture
def settings_env_names() -> set[str]:
    return env_names_read_by_settings()
