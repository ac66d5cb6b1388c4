"""`make test`: ruff, the import contracts, then the whole suite on a throwaway Postgres + Redis,
then the catalog tests again on SQLite (the embedded default). Servers are stopped even when a
step fails.

Extra arguments go to both pytest runs (e.g. ``make test ARGS="-k importer -x"``).
pytest's exit code 5 ("no tests collected") is a failure here, never a silent pass.

A broken import contract (``lint-imports``, ``[tool.importlinter]`` in pyproject.toml) fails the
run, but the tests still run: a wrong arrow does not make the tests' results worthless, and one
run then shows both. Its report is printed before the tests and named again at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The console script beside this interpreter (the venv's bin/), as `make venv` installs it.
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# lint-imports' summary line for each contract: "<name> KEPT" or "<name> BROKEN", either
# followed by " (N ignored imports)" when the contract ignores some.
BROKEN_LINE = re.compile(r"^(?P<name>.+) BROKEN(?: \(\d+ ignored imports?\))?$", re.MULTILINE)
sys.path.insert(0, str(ROOT))

from scripts import services  # noqa: E402


def run(argv: list[str], env: dict[str, str]) -> int:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT, env=env).returncode


def main(args: list[str]) -> int:
    py = sys.executable
    base_env = {
        **os.environ,
        # Long enough for the settings' check (50+ characters), like a real key.
        "DJANGO_SECRET_KEY": "test-only-insecure-key-never-used-outside-the-test-suite-0123456789",
        "DJANGO_DEBUG": "false",
        # The suite talks plain HTTP to loopback (test client, servers it starts): no redirect
        # to https://. The tests of the HTTPS settings load them with their own environment.
        "DJANGO_HTTPS": "false",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        base_env.pop(name, None)

    if run([py, "-m", "ruff", "check", "."], base_env) != 0:
        print("ruff found problems (see above); fix them first", file=sys.stderr)
        return 1

    broken = check_import_contracts(base_env)
    if broken:
        print(f"{len(broken)} import contract(s) BROKEN (chains above); the tests run anyway")

    code = run_suites(py, args, base_env)
    if broken:
        print("import contracts BROKEN, so the run fails:", file=sys.stderr)
        for name in broken:
            print(f"  - {name}", file=sys.stderr)
        return 1
    return code


def check_import_contracts(env: dict[str, str]) -> list[str]:
    """Run lint-imports and show its report; returns the names of the broken contracts.

    A failure with no contract named (a bad configuration, a module that does not exist) is
    reported as such: it is never mistaken for a pass.
    """
    argv = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    print("+", " ".join(argv), flush=True)
    # Wide enough that no contract name wraps in the summary lines parsed below.
    done = subprocess.run(
        argv, cwd=ROOT, env={**env, "COLUMNS": "400"}, capture_output=True, text=True
    )
    print(done.stdout, end="", flush=True)
    print(done.stderr, end="", file=sys.stderr, flush=True)
    if done.returncode == 0:
        return []
    names = [m["name"].strip() for m in BROKEN_LINE.finditer(done.stdout)]
    return names or [f"lint-imports exited {done.returncode} without a report (see above)"]


def run_suites(py: str, args: list[str], base_env: dict[str, str]) -> int:
    with services.postgres() as database_url, services.redis() as redis_url:
        env = {**base_env, "DATABASE_URL": database_url, "TEST_REDIS_URL": redis_url}
        code = run([py, "-m", "pytest", "-p", "no:cacheprovider", *args], env)
        if code != 0:
            return code or 1

    sqlite_env = {**base_env, "DATABASE_URL": "sqlite:///" + str(ROOT / "var" / "test.sqlite3")}
    marked = ["-m", "catalog or embedded"]
    return run([py, "-m", "pytest", "-p", "no:cacheprovider", *marked, *args], sqlite_env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
