"""The import contracts of pyproject.toml ([tool.importlinter]) have teeth.

Each test writes a small project of the same shape as this one into a temporary directory and
runs `lint-imports` on it, in a subprocess, with the contracts read from the real
pyproject.toml. The clean project keeps every contract; each planted arrow (a lazy import
inside a function, a TYPE_CHECKING import, an import two hops away) breaks exactly the
contracts it should, and the report names the chain with its line numbers. Nothing here reads
the real tree, so these tests pass or fail on the contracts alone, whatever the tree's state.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PYPROJECT = ROOT / "pyproject.toml"
CONTRACTS = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
IDS = {c["id"] for c in CONTRACTS["contracts"]}
NAMES = {c["name"]: c["id"] for c in CONTRACTS["contracts"]}

# The project in miniature, keeping every rule, and using each arrow the contracts allow (so an
# exemption that stopped matching would break it): the rules and the config types import each
# other, the config loader reaches the models lazily, the simulator reaches the catalog and (an
# exemption of the adapter rule) a model, commands and the demo start the simulator.
CLEAN = {
    "algo_scalper/__init__.py": "from algo_scalper.celery import app\n",
    "algo_scalper/celery.py": "import celery\n\napp = celery.Celery()\n",
    "algo_scalper/views.py": "from workers import heartbeat\n",
    "instruments/__init__.py": "",
    "instruments/models.py": "from django.db import models\n",
    "instruments/synthetic.py": "import random\n",
    "instruments/importer.py": (
        "from django.db import transaction\n\nfrom instruments import models\n"
    ),
    "instruments/management/__init__.py": "",
    "instruments/management/commands/__init__.py": "",
    "instruments/management/commands/import_instruments.py": "from instruments import importer\n",
    "trading/__init__.py": "",
    "trading/config/__init__.py": "from trading.config.types import SizingConfig\n",
    "trading/config/types.py": (
        "from dataclasses import dataclass\n\nfrom trading.rules.enums import Direction\n"
    ),
    "trading/config/loading.py": (
        "import yaml\n\nfrom trading.config.types import SizingConfig\n\n\n"
        "def overrides():\n    from django.conf import settings\n\n"
        "    from trading.models import Setting\n"
    ),
    "trading/rules/__init__.py": "",
    "trading/rules/enums.py": "from enum import StrEnum\n",
    "trading/rules/sizing.py": (
        "from decimal import Decimal\n\nfrom trading.config.types import SizingConfig\n"
    ),
    "trading/models.py": (
        "from django.db import models\n\nfrom instruments.models import models as catalog\n"
        "from trading.dhan import feed_codec\nfrom trading.rules.enums import Direction\n"
    ),
    "trading/dhan/__init__.py": "",
    "trading/dhan/feed_codec.py": "import struct\n",
    "trading/dhan/rest.py": (
        "import requests\n\nfrom trading.dhan import feed_codec\n\n\n"
        "def from_settings():\n    from django.conf import settings\n"
    ),
    "trading/dhan/sim/__init__.py": "",
    "trading/dhan/sim/server.py": (
        "import socket\n\nfrom instruments import synthetic\nfrom trading.dhan import feed_codec\n"
    ),
    "trading/dhan/sim/broker.py": "def journal():\n    from trading.models import Order\n",
    "trading/management/__init__.py": "",
    "trading/management/commands/__init__.py": "",
    "trading/management/commands/dhan_sim.py": "from trading.dhan.sim import server\n",
    "workers/__init__.py": "",
    "workers/heartbeat.py": "import redis\n",
    "workers/feed_hub.py": (
        "import redis\n\nfrom trading import models\nfrom trading.dhan import rest\n"
    ),
    "workers/supervisor.py": "from workers import feed_hub, heartbeat\n",
    "workers/management/__init__.py": "",
    "workers/management/commands/__init__.py": "",
    "workers/management/commands/run_trader.py": (
        "from workers import supervisor\n\n\ndef sim():\n    from trading.dhan.sim import server\n"
    ),
    "scripts/__init__.py": "",
    "scripts/demo.py": "from trading.dhan.sim import server\nfrom workers import supervisor\n",
}


@dataclass(frozen=True)
class Report:
    code: int
    text: str

    @property
    def broken(self) -> set[str]:
        """Ids of the contracts the summary lists as BROKEN."""
        lines = re.findall(r"^(.+) BROKEN(?: \(\d+ ignored imports?\))?$", self.text, re.MULTILINE)
        return {NAMES[line.strip()] for line in lines}


def lint(tmp_path: Path, planted: dict[str, str]) -> Report:
    """lint-imports on CLEAN plus ``planted`` (text appended to a file, or a new file)."""
    files = dict(CLEAN)
    for name, text in planted.items():
        files[name] = files.get(name, "") + text
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(PYPROJECT)],
        cwd=tmp_path,
        # Only the temporary tree: never the project's own packages. Wide: no line wraps.
        env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Report(done.returncode, done.stdout + done.stderr)


def test_every_contract_is_checked_by_these_tests():
    covered = {contract for case in VIOLATIONS for contract in case.breaks}
    assert covered == IDS


def test_the_clean_project_keeps_every_contract(tmp_path):
    report = lint(tmp_path, {})
    assert report.code == 0, report.text
    assert f"Contracts: {len(IDS)} kept, 0 broken." in report.text


TYPE_CHECKING_REDIS = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import redis\n"


@dataclass(frozen=True)
class Violation:
    name: str
    planted: dict[str, str]
    breaks: set[str]  # contract ids
    chain: tuple[str, ...]  # lines the report must show, in this order


VIOLATIONS = (
    Violation(
        "a rule imports django inside a function",
        {"trading/rules/sizing.py": "\n\ndef limit():\n    from django.conf import settings\n"},
        {"rules-are-pure"},
        ("trading.rules is not allowed to import django:", "trading.rules.sizing -> django (l.7)"),
    ),
    Violation(
        "a rule imports redis for type checking only",
        {"trading/rules/enums.py": TYPE_CHECKING_REDIS},
        # The config types import the enums, so the config package's init reaches redis too.
        {"rules-are-pure", "rules-import-path"},
        ("trading.rules is not allowed to import redis:", "trading.rules.enums -> redis (l.5)"),
    ),
    Violation(
        "a rule reaches a model through the config loader",
        {"trading/rules/sizing.py": "from trading.config.loading import overrides\n"},
        {"rules-are-pure"},
        (
            "trading.rules is not allowed to import trading.models:",
            "trading.rules.sizing -> trading.config.loading (l.4)",
            "trading.config.loading -> trading.models (l.9)",
        ),
    ),
    Violation(
        "a rule imports a socket",
        {"trading/rules/enums.py": "import socket\n"},
        {"rules-are-pure", "rules-import-path"},
        ("trading.rules is not allowed to import socket:", "trading.rules.enums -> socket (l.2)"),
    ),
    Violation(
        "a config type reads Django settings",
        {"trading/config/types.py": "from django.conf import settings\n"},
        {"rules-are-pure", "rules-import-path"},
        (
            "trading.config.types is not allowed to import django:",
            "trading.config.types -> django (l.4)",
            "trading.config is not allowed to import django:",
            "trading.config -> trading.config.types (l.1)",
            "trading.config.types -> django (l.4)",
        ),
    ),
    Violation(
        "the config package's init re-exports the Django-backed loader",
        {"trading/config/__init__.py": "from trading.config.loading import overrides\n"},
        {"rules-import-path"},
        (
            "trading.config is not allowed to import django:",
            "trading.config -> trading.config.loading (l.2)",
            "trading.config.loading -> django (l.7)",
        ),
    ),
    Violation(
        "the REST client imports a model inside a function",
        {"trading/dhan/rest.py": "\n\ndef journal():\n    from trading.models import Order\n"},
        {"dhan-adapter"},
        (
            "trading.dhan is not allowed to import trading.models:",
            "trading.dhan.rest -> trading.models (l.11)",
        ),
    ),
    Violation(
        "the feed codec imports a worker",
        {"trading/dhan/feed_codec.py": "from workers import heartbeat\n"},
        {"dhan-adapter", "layers"},
        ("trading.dhan is not allowed to import workers:",),
    ),
    Violation(
        "a worker imports the simulator",
        {"workers/feed_hub.py": "from trading.dhan.sim.server import Simulator\n"},
        {"simulator-at-the-edges"},
        (
            "Illegal imports of protected package trading.dhan.sim:",
            "workers.feed_hub -> trading.dhan.sim.server (l.5)",
        ),
    ),
    Violation(
        "the catalog imports the trading app inside a function",
        {"instruments/importer.py": "\n\ndef stats():\n    from trading.models import Setting\n"},
        {"catalog-independent", "layers"},
        (
            "instruments is not allowed to import trading:",
            "instruments.importer -> trading.models (l.7)",
        ),
    ),
    Violation(
        "a worker imports the Celery app",
        {"workers/supervisor.py": "from algo_scalper.celery import app\n"},
        {"workers-below-the-project", "layers"},
        (
            "workers is not allowed to import algo_scalper:",
            "workers.supervisor -> algo_scalper.celery (l.2)",
        ),
    ),
    Violation(
        "a model imports a worker",
        {"trading/models.py": "from workers import heartbeat\n"},
        {"layers"},
        ("trading is not allowed to import workers:", "trading.models -> workers.heartbeat (l.6)"),
    ),
    Violation(
        "a worker imports a management command",
        {"workers/supervisor.py": "from workers.management.commands import run_trader\n"},
        {"commands-on-top"},
        ("workers.supervisor -> workers.management.commands.run_trader (l.2)",),
    ),
)


@pytest.mark.parametrize("case", VIOLATIONS, ids=[v.name for v in VIOLATIONS])
def test_a_planted_arrow_breaks_its_contract_and_the_report_names_the_chain(tmp_path, case):
    report = lint(tmp_path, case.planted)

    assert report.code == 1, report.text
    assert report.broken == case.breaks, report.text
    lines = [line.strip(" -") for line in report.text.splitlines()]
    position = 0
    for expected in case.chain:
        assert expected in lines[position:], f"{expected!r} not in order in:\n{report.text}"
        position = lines.index(expected, position) + 1
