"""The purity guard: trading/rules (and trading.config.types, which the rules import) stay pure.

Pure rules take values and return decisions; they never reach Django, Redis, the network, the
broker client or the workers (../shared/ARCHITECTURE.md, contract of issue 5). Two checks:

* at run time, each module is imported in a FRESH interpreter (this test process already has
  Django loaded) and no denied module may appear in ``sys.modules``; an import hook records
  which module imported the first denied one and from which line;
* statically, every import statement of trading/rules/*.py, including the ones inside
  functions and under ``if TYPE_CHECKING:`` that the run-time check cannot see, must name the
  standard library, trading.config.types or trading.rules, and nothing on the deny list.

The last tests feed the checkers a bad module, so the guard is proven able to fail.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import trading.rules

PROJECT = Path(trading.rules.__file__).resolve().parents[2]
RULES_DIR = Path(trading.rules.__file__).resolve().parent

# A name is denied when it is one of these or a submodule of one.
DENIED = (
    "django",
    "rest_framework",
    "redis",
    "requests",
    "websocket",  # websocket-client
    "websockets",
    "urllib3",
    "httpx",
    "aiohttp",
    "http.client",
    "urllib.request",
    "socket",  # whatever pulled it in, a rule has no business with sockets
    "ssl",
    "celery",
    "kombu",
    "psycopg",
    "psycopg2",
    "workers",
    "instruments",
    "trading.dhan",
    "trading.models",
    # The config's loading and store: YAML, pydantic, the database. Rules take the plain types.
    "trading.config.load",
    "trading.config.store",
    "config_schema",
    "yaml",
    "pydantic",
    "pydantic_core",
)
# Statically, rules may import only these (besides the standard library).
ALLOWED_PROJECT = ("trading.config.types", "trading.rules", "__future__")


def is_denied(name: str) -> bool:
    return any(name == entry or name.startswith(entry + ".") for entry in DENIED)


def rules_modules(directory: Path = RULES_DIR, prefix: str = "trading.rules.") -> list[str]:
    """Every module under trading/rules, subpackages included, found without importing them."""
    found = [prefix.rstrip(".")] if prefix == "trading.rules." else []
    for info in pkgutil.iter_modules([str(directory)]):
        name = prefix + info.name
        found.append(name)
        if info.ispkg:
            found.extend(rules_modules(directory / info.name, name + "."))
    return found


# -- the run-time check ---------------------------------------------------------------------------

# Runs in a fresh interpreter: argv[1] the deny list (JSON), argv[2] the module to import.
# The hook only watches (find_spec returns None, so the import itself goes on normally).
_PROBE = r"""
import importlib, json, sys

DENIED = tuple(json.loads(sys.argv[1]))
TARGET = sys.argv[2]

def denied(name):
    return any(name == entry or name.startswith(entry + ".") for entry in DENIED)

first_import = {}

class Watch:
    def find_spec(self, name, path=None, target=None):
        if denied(name):
            frame = sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__") or ""
                if module != "__main__" and not module.startswith(
                    ("importlib", "_frozen_importlib")
                ):
                    break
                frame = frame.f_back
            if frame is not None and not denied(module):
                where = f"{module} ({frame.f_code.co_filename}:{frame.f_lineno})"
                first_import.setdefault(name, where)
        return None

sys.meta_path.insert(0, Watch())
importlib.import_module(TARGET)
loaded = sorted(name for name in sys.modules if denied(name))
print(json.dumps({"loaded": loaded, "imported_by": first_import}))
"""


def runtime_violations(module: str, extra_path: Path | None = None) -> str | None:
    """Import ``module`` in a fresh interpreter; None when it loaded nothing denied, else a
    message naming the denied modules and who imported them."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    paths = [str(PROJECT)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(DENIED), module],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return f"importing {module} in a fresh interpreter failed:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["loaded"]:
        return None
    culprits = "; ".join(
        f"{name} imported by {where}" for name, where in sorted(report["imported_by"].items())
    )
    return (
        f"importing {module} loaded denied modules {', '.join(report['loaded'])}"
        f" (first imports: {culprits or 'unknown'})"
    )


def test_discovery_finds_the_rules_modules_without_importing_them():
    modules = rules_modules()
    assert {"trading.rules", "trading.rules.pnl", "trading.rules.charges"} <= set(modules)
    assert len(_rules_files()) == len(modules)  # one file per module, __init__ for the package


@pytest.mark.parametrize("module", [*rules_modules(), "trading.config", "trading.config.types"])
def test_importing_the_module_in_a_fresh_interpreter_loads_nothing_denied(module):
    problem = runtime_violations(module)
    assert problem is None, problem


# -- the static check -----------------------------------------------------------------------------


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of a ``from ... import``; relative levels count from ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imported_names(tree: ast.AST, package: str) -> list[tuple[int, str, str, str | None]]:
    """(line, the statement as written, module, submodule candidate) for every import in the
    tree: statements anywhere (functions, classes, TYPE_CHECKING blocks) and
    importlib.import_module("...") / __import__("...") calls with a literal name. For
    ``from X import Y`` the candidate is ``X.Y``: Y may be a submodule (``from trading import
    dhan`` imports trading.dhan)."""
    found: list[tuple[int, str, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, f"import {alias.name}", alias.name, None))
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            written = f"from {'.' * node.level}{node.module or ''} import"
            for alias in node.names:
                candidate = None if alias.name == "*" else f"{module}.{alias.name}"
                found.append((node.lineno, f"{written} {alias.name}", module, candidate))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            first = node.args[0]
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if name in ("import_module", "__import__") and literal:
                found.append((node.lineno, f"{name}({first.value!r})", first.value, None))
    return sorted(found, key=lambda item: item[0])


def _allowed(module: str) -> bool:
    if any(module == entry or module.startswith(entry + ".") for entry in ALLOWED_PROJECT):
        return True
    return module.split(".")[0] in sys.stdlib_module_names


def _judge(module: str, candidate: str | None) -> str | None:
    """Why this import is not pure, or None."""
    for name in (module, candidate):
        if name and is_denied(name):
            return f"{name} is denied in pure rules"
    # `from trading import X` is as allowed as trading.X; elsewhere the module decides.
    judged = candidate if module == "trading" and candidate else module
    if not _allowed(judged):
        return f"{judged} is not the standard library, trading.config.types or trading.rules"
    return None


def static_violations(source: str, filename: str, package: str = "trading.rules") -> list[str]:
    """One line per offending import: ``file:line: statement: why``."""
    problems = []
    for line, written, module, candidate in _imported_names(ast.parse(source, filename), package):
        why = _judge(module, candidate)
        if why:
            problems.append(f"{filename}:{line}: {written}: {why}")
    return problems


def _rules_files() -> list[Path]:
    return sorted(RULES_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", _rules_files(), ids=lambda path: str(path.relative_to(RULES_DIR)))
def test_every_import_statement_of_a_rules_module_is_pure(path):
    package = ".".join(("trading", *path.relative_to(RULES_DIR.parent).parent.parts))
    # A module's relative imports count from its package; so do a package __init__'s.
    problems = static_violations(path.read_text(encoding="utf-8"), str(path), package)
    assert problems == [], "\n".join(problems)


# -- the guard can fail ---------------------------------------------------------------------------

BAD_SOURCE = """
from __future__ import annotations
import math
from typing import TYPE_CHECKING
from trading.config.types import AlgoConfig
from . import pnl
from .pnl import unrealized
if TYPE_CHECKING:
    from trading.models import PositionTracker
def fetch() -> None:
    import requests
    from trading import dhan
    from .. import models
    import numpy
    importlib.import_module("redis")
    from trading import orders, config
    from trading.config.load import parse_algo_config
"""


def test_the_static_check_catches_denied_imports_anywhere_and_names_each():
    problems = static_violations(BAD_SOURCE, "trading/rules/bad.py")
    assert problems == [
        "trading/rules/bad.py:9: from trading.models import PositionTracker: "
        "trading.models is denied in pure rules",
        "trading/rules/bad.py:11: import requests: requests is denied in pure rules",
        "trading/rules/bad.py:12: from trading import dhan: trading.dhan is denied in pure rules",
        "trading/rules/bad.py:13: from .. import models: trading.models is denied in pure rules",
        "trading/rules/bad.py:14: import numpy: numpy is not the standard library, "
        "trading.config.types or trading.rules",
        "trading/rules/bad.py:15: import_module('redis'): redis is denied in pure rules",
        "trading/rules/bad.py:16: from trading import orders: trading.orders is not the "
        "standard library, trading.config.types or trading.rules",
        "trading/rules/bad.py:16: from trading import config: trading.config is not the "
        "standard library, trading.config.types or trading.rules",
        "trading/rules/bad.py:17: from trading.config.load import parse_algo_config: "
        "trading.config.load is denied in pure rules",
    ]


def test_the_runtime_check_names_the_denied_modules_and_the_importing_module(tmp_path):
    (tmp_path / "purity_probe_bad.py").write_text("import math\nimport http.client\n")
    problem = runtime_violations("purity_probe_bad", extra_path=tmp_path)
    assert problem is not None
    assert "http.client" in problem
    assert "socket" in problem
    assert "http.client imported by purity_probe_bad" in problem
    assert "purity_probe_bad.py:2" in problem


def test_the_runtime_check_passes_a_module_of_the_standard_library_only(tmp_path):
    (tmp_path / "purity_probe_good.py").write_text("import decimal, datetime, zoneinfo\n")
    assert runtime_violations("purity_probe_good", extra_path=tmp_path) is None
