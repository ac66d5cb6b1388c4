"""`make test`: ruff, then the whole suite on a throwaway Postgres + Redis, then the catalog
tests again on SQLite (the embedded default). Servers are stopped even when a step fails.

Extra arguments go to both pytest runs (e.g. ``make test ARGS="-k importer -x"``).
pytest's exit code 5 ("no tests collected") is a failure here, never a silent pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import services  # noqa: E402


def run(argv: list[str], env: dict[str, str]) -> int:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT, env=env).returncode


def main(args: list[str]) -> int:
    py = sys.executable
    base_env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "test-only-insecure-key",
        "DJANGO_DEBUG": "false",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        base_env.pop(name, None)

    if run([py, "-m", "ruff", "check", "."], base_env) != 0:
        print("ruff found problems (see above); fix them first", file=sys.stderr)
        return 1

    with services.postgres() as database_url, services.redis() as redis_url:
        env = {**base_env, "DATABASE_URL": database_url, "TEST_REDIS_URL": redis_url}
        code = run([py, "-m", "pytest", "-p", "no:cacheprovider", *args], env)
        if code != 0:
            return code or 1

    sqlite_env = {**base_env, "DATABASE_URL": "sqlite:///" + str(ROOT / "var" / "test.sqlite3")}
    code = run([py, "-m", "pytest", "-p", "no:cacheprovider", "-m", "catalog", *args], sqlite_env)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
