"""Scrip-master import benchmark (issue 2). Not a test: prints figures and comparisons.

    .venv/bin/python bench/import_bench.py [--rows 250000] [--repeat 3]

1. Generates a synthetic compact scrip master (instruments.synthetic: equities, index options
   and futures, stock F&O) in Dhan's exact format.
2. Starts a throwaway PostgreSQL (scripts/services.py) and migrates it.
3. Times, on the same file and server:
   - COPY: a plain ``COPY ... FROM STDIN (FORMAT csv)`` into a bare 16-column text table with one
     unique index: the floor for getting these bytes into PostgreSQL;
   - full import: ``import_catalog()`` into an empty catalog, wall clock including the commit;
   - unchanged re-import: the same file again (fingerprint match, nothing written);
   - forced re-import: ``--force`` on identical content (every row compared, none rewritten);
   - seed-style import: the seed's approach (batches of 1,000 multi-row upserts, as Rails'
     ``upsert_all``) of the same normalised rows into the same tables.
4. Peak RSS of this process (ru_maxrss) after the imports.

Targets (issue 2): full import within 6x COPY and under 10 s; unchanged re-import under 1 s;
peak memory under 300 MB; beat the seed's 1,000-row batches by a wide margin.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import services  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_time(label: str, runs: list[float]) -> float:
    value = statistics.median(runs)
    shown = ", ".join(f"{r:.2f}" for r in runs)
    print(f"  {label:<34} median {value:6.2f} s   (runs: {shown})", flush=True)
    return value


def bare_copy(url: str, path: Path, header: list[str]) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_bare")
        conn.execute("CREATE TABLE bench_bare (" + ", ".join(f"{c} text" for c in header) + ")")
        conn.execute(
            "CREATE UNIQUE INDEX ON bench_bare (sem_exm_exch_id, sem_segment, sem_smst_security_id)"
        )
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_bare FROM STDIN (FORMAT csv, HEADER)") as cp,
        ):
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_bare")
        conn.commit()
    return elapsed


def empty_catalog() -> None:
    from django.db import connection

    from instruments.models import Derivative, Instrument
    from trading.models import PositionTracker, Setting

    # The bench database holds no positions, orders or signals; the tables that refer to the
    # catalog (positions, and what refers to them) are emptied with it (CASCADE) only because
    # their foreign keys demand it.
    tables = [m._meta.db_table for m in (PositionTracker, Derivative, Instrument)]
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    Setting.objects.all().delete()


def seed_style(path: Path, batch: int = 1000) -> float:
    """The seed importer's shape: normalised rows upserted 1,000 at a time (multi-row VALUES
    with ON CONFLICT DO UPDATE, as Rails' upsert_all sends), one statement per batch."""
    from django.db import connection, transaction

    from instruments.importer import COMMON_COLUMNS, DERIVATIVE_COLUMNS
    from instruments.models import Derivative, Instrument
    from instruments.scrip_master import ScripMasterParser

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        parser = ScripMasterParser(format_datetime=lambda dt: dt.isoformat(sep=" "))
        pending: dict[str, list[tuple]] = {"I": [], "D": []}

        def flush(kind: str) -> None:
            rows = pending[kind]
            if not rows:
                return
            model, columns = (
                (Instrument, COMMON_COLUMNS) if kind == "I" else (Derivative, DERIVATIVE_COLUMNS)
            )
            names = (*columns, "is_active", "created_at", "updated_at")
            one = "(" + ", ".join(["%s"] * len(columns)) + ", TRUE, now(), now())"
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "security_id")
            sql = (
                f"INSERT INTO {model._meta.db_table} ({', '.join(names)}) VALUES "
                + ", ".join([one] * len(rows))
                + f" ON CONFLICT (exchange_segment, security_id) DO UPDATE SET {updates}"
            )
            params: list = []
            for row in rows:
                params.extend(row[1:17] if kind == "I" else row[1:23])
            cur.execute(sql, params)
            rows.clear()

        with path.open("rb") as fh:
            for row in parser.rows(fh):
                pending[row[0]].append(row)
                if len(pending[row[0]]) >= batch:
                    flush(row[0])
        flush("I")
        flush("D")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="import-bench-"))
    csv_path = workdir / "api-scrip-master.csv"
    today = date.today().isoformat()
    print(f"generating {args.rows:,} rows -> {csv_path}", flush=True)
    with csv_path.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "instruments.synthetic", "--rows", str(args.rows),
             "--today", today],
            cwd=ROOT, stdout=out, check=True,
        )  # fmt: skip
    size_mb = csv_path.stat().st_size / 1e6
    header = csv_path.open().readline().strip().lower().split(",")

    with services.postgres(dbname="bench") as url:
        os.environ.update(
            # A throwaway database's key: random, as long as settings ask for.
            DATABASE_URL=url, DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_DEBUG="false",
            INSTRUMENTS_CACHE_DIR=str(workdir / "cache"),
        )  # fmt: skip
        os.environ.pop("REDIS_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "algo_scalper.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from instruments.importer import ImportOptions, import_catalog

        call_command("migrate", verbosity=0)
        print(
            f"\nmachine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}"
        )
        print(f"file: {args.rows:,} rows, {size_mb:.1f} MB\n")

        copy_s = median_time(
            "COPY into bare table", [bare_copy(url, csv_path, header) for _ in range(args.repeat)]
        )

        full_runs, stats = [], {}
        for _ in range(args.repeat):
            empty_catalog()
            started = time.perf_counter()
            result = import_catalog(ImportOptions(file=csv_path, force=True))
            full_runs.append(time.perf_counter() - started)
            stats = result.stats
        full_s = median_time("full import (empty catalog)", full_runs)
        print(f"    last run phases: {stats['phases_seconds']}")
        print(f"    inserted {stats['inserted']:,}, rejected {stats['rejected']}")

        unchanged_runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = import_catalog(ImportOptions(file=csv_path))
            unchanged_runs.append(time.perf_counter() - started)
            assert result.status == "unchanged", result.status
        unchanged_s = median_time("unchanged re-import", unchanged_runs)

        forced_runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = import_catalog(ImportOptions(file=csv_path, force=True))
            forced_runs.append(time.perf_counter() - started)
        forced_s = median_time("forced re-import (same content)", forced_runs)
        print(f"    updated {result.stats['updated']:,}, unchanged {result.stats['unchanged']:,}")

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        empty_catalog()
        seed_s = median_time("seed-style 1,000-row upserts", [seed_style(csv_path)])

    ratio = full_s / copy_s
    print("\nresults")
    print(f"  full import / COPY          {ratio:5.2f}x   (target <= 6x)   "
          f"{'MET' if ratio <= 6 else 'NOT MET'}")  # fmt: skip
    print(f"  full import                 {full_s:5.2f} s  (target < 10 s)  "
          f"{'MET' if full_s < 10 else 'NOT MET'}")  # fmt: skip
    print(f"  unchanged re-import         {unchanged_s:5.2f} s  (target < 1 s)   "
          f"{'MET' if unchanged_s < 1 else 'NOT MET'}")  # fmt: skip
    print(f"  peak RSS (imports)          {peak_mb:5.0f} MB (target < 300)  "
          f"{'MET' if peak_mb < 300 else 'NOT MET'}")  # fmt: skip
    print(f"  seed-style / full import    {seed_s / full_s:5.2f}x slower")
    print(f"  forced re-import            {forced_s:5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
