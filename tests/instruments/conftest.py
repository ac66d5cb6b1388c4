"""Fixtures for the instrument-catalog tests: small Dhan-format files, a loopback HTTP server,
catalog snapshots, and the corrupted-file cases shared by the importer and command tests.

Nothing here may reach the internet: every test runs with Dhan's URL pointed at a closed
loopback port and the download cache in the test's own tmp directory.
"""

from __future__ import annotations

import csv
import gzip
import io
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Same place as the `shared_dhan` fixture in tests/conftest.py; needed at collection time to
# parametrize over the real samples that exist (CI has them, a user's clone may not).
SHARED_DHAN = Path(__file__).resolve().parents[3] / "shared" / "dhan"

COMPACT = FIXTURES / "compact_catalog.csv"
DETAILED_2025_07 = FIXTURES / "detailed_2025_07.csv"
DETAILED_2026_04 = FIXTURES / "detailed_2026_04.csv"

# compact_catalog.csv: 22 data rows (3 indices, 3 equities, 15 NSE/BSE derivatives, 1 MCX
# future). The default config drops the 011NSETEST equity and the MCX row: 20 rows import, 5
# instruments and 15 derivatives; its first expiry is 9 Oct 2024. The test modules state the
# numbers they assert (conftest.py is not importable under --import-mode=importlib).


@dataclass(frozen=True)
class RealSample:
    name: str
    rows: int
    by_segment: dict[str, int]


REAL_SAMPLES = (
    RealSample(
        "scrip_master_sample.csv",
        1963,
        {"BSE_EQ": 285, "BSE_FNO": 250, "IDX_I": 191, "NSE_EQ": 9, "NSE_FNO": 1228},
    ),
    RealSample("scrip_master_detailed_sample.csv", 307, {"IDX_I": 119, "NSE_EQ": 188}),
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `real_sample`: one run per real sample present in ../shared/dhan. When the folder is absent
    # the parameter set is empty and pytest reports it as such (never a silent pass).
    if "real_sample" in metafunc.fixturenames:
        present = [s for s in REAL_SAMPLES if (SHARED_DHAN / s.name).is_file()]
        metafunc.parametrize("real_sample", present, ids=[s.name for s in present])
    if "real_compact_sample" in metafunc.fixturenames:
        present = [s for s in REAL_SAMPLES[:1] if (SHARED_DHAN / s.name).is_file()]
        metafunc.parametrize("real_compact_sample", present, ids=[s.name for s in present])
    if "corruption" in metafunc.fixturenames:
        metafunc.parametrize("corruption", CORRUPTIONS, ids=[c.name for c in CORRUPTIONS])


# -- isolation ----------------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _offline_source(settings, tmp_path: Path) -> None:
    """Dhan's URL points at a closed loopback port; the cache lives in this test's tmp dir."""
    settings.INSTRUMENTS_SCRIP_MASTER_URL = f"http://127.0.0.1:{closed_port()}/api-scrip-master.csv"
    settings.INSTRUMENTS_CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def freeze(time_machine) -> Callable[[datetime], None]:
    """Stop the clock at an aware moment (tick=False: every read in the test sees it)."""

    def to(moment: datetime) -> None:
        time_machine.move_to(moment, tick=False)

    return to


@pytest.fixture
def edit_config(settings, tmp_path: Path) -> Callable[[Callable[[dict], None]], Path]:
    """Point INSTRUMENTS_CONFIG_FILE at a copy of config/instruments.yml changed by ``edit``."""
    import yaml

    def apply(edit: Callable[[dict], None]) -> Path:
        data = yaml.safe_load(Path(settings.INSTRUMENTS_CONFIG_FILE).read_text(encoding="utf-8"))
        edit(data)
        path = tmp_path / "instruments.yml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        settings.INSTRUMENTS_CONFIG_FILE = path
        return path

    return apply


# -- files --------------------------------------------------------------------------------------


@pytest.fixture
def compact_file() -> Path:
    return COMPACT


@pytest.fixture
def detailed_files() -> dict[str, Path]:
    return {"2025-07": DETAILED_2025_07, "2026-04": DETAILED_2026_04}


def compact_records(path: Path = COMPACT) -> list[list[str]]:
    """The fixture's records (header first), raw strings exactly as in the file."""
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def render(records: list[list[str]]) -> str:
    """Records back to Dhan-style CSV text: unquoted fields, LF endings, final newline."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(records)
    return out.getvalue()


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", newline="")
        else:
            path.write_bytes(content)
        return path

    return write


@pytest.fixture
def compact_variant(write_file) -> Callable[..., Path]:
    """The compact fixture with rows dropped, fields changed or rows added, by security id.

    ``variant(drop={44428}, change={2885: {"SEM_LOT_UNITS": "2"}}, add=[[...]])``.
    """
    counter = iter(range(1, 1000))

    def variant(
        drop: set[int] = frozenset(),
        change: dict[int, dict[str, str]] | None = None,
        add: list[list[str]] | None = None,
        keep: set[int] | None = None,
    ) -> Path:
        header, *rows = compact_records()
        out = [header]
        for row in rows:
            security_id = int(row[2])
            if security_id in drop or (keep is not None and security_id not in keep):
                continue
            for column, value in (change or {}).get(security_id, {}).items():
                row[header.index(column)] = value
            out.append(row)
        out.extend(add or [])
        return write_file(f"variant-{next(counter)}.csv", render(out))

    return variant


# -- importing and comparing --------------------------------------------------------------------


@pytest.fixture
def import_file() -> Callable[..., object]:
    from instruments.importer import ImportOptions, import_catalog

    def run(path: Path, config: object = None, **options: object) -> object:
        return import_catalog(ImportOptions(file=str(path), **options), config)

    return run


def catalog_snapshot() -> dict[str, list]:
    """Every catalog row (all columns), every recorded import and every Setting, for "nothing
    changed" assertions. A failed run's own log row is the one write a refusal makes: it is left
    out here, and the tests that refuse a file check it separately."""
    from instruments.models import CatalogImport, Derivative, Instrument
    from trading.models import Setting

    return {
        "instruments": list(Instrument.objects.order_by("id").values()),
        "derivatives": list(Derivative.objects.order_by("id").values()),
        "imports": list(
            CatalogImport.objects.filter(outcome=CatalogImport.Outcome.IMPORTED)
            .order_by("id")
            .values()
        ),
        "settings": list(Setting.objects.order_by("key").values()),
    }


@pytest.fixture
def snapshot() -> Callable[[], dict[str, list]]:
    return catalog_snapshot


# -- a loopback HTTP server ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    # Announce this many bytes but send only ``body`` and close: a download cut off mid-way.
    content_length: int | None = None


@dataclass
class LoopbackServer:
    base_url: str
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def serve(self, path: str, body: bytes, status: int = 200, **kwargs: object) -> str:
        self.replies[path] = Reply(status, body, **kwargs)
        return self.url(path)


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """http.server on 127.0.0.1 (port 0) in a thread; answers from ``replies``, logs paths."""
    state = LoopbackServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            reply = state.replies.get(self.path, Reply(404, b"not found"))
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/csv")
            length = reply.content_length if reply.content_length is not None else len(reply.body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- corrupted files (each must leave the previous catalog untouched) ---------------------------


@dataclass(frozen=True)
class Corruption:
    name: str
    build: Callable[[bytes], bytes]  # the good compact file -> the bad one
    message: tuple[str, ...]  # fragments the error message must contain


def _lines(good: bytes) -> list[bytes]:
    return good.splitlines(keepends=True)


def _truncated(good: bytes) -> bytes:
    # Cut the last line in the middle of its fields: no newline, fewer fields than the header.
    lines = _lines(good)
    last = lines[-1]
    return b"".join(lines[:-1]) + last[: last.index(b",FUTCOM")]


def _nul_bytes(good: bytes) -> bytes:
    lines = _lines(good)
    lines[4] = lines[4].replace(b"Reliance", b"Rel\x00\x00ance")  # line 5
    return b"".join(lines)


def _invalid_utf8(good: bytes) -> bytes:
    lines = _lines(good)
    lines[2] = lines[2].replace(b"Nifty Bank", b"Nifty \xff\xfeBank")  # line 3
    return b"".join(lines)


def _too_many_bad_rows(good: bytes) -> bytes:
    # 3 of 22 rows with a lot size that is not a number: 13.6%, over the 1% default.
    lines = _lines(good)
    for number in (8, 9, 10):
        lines[number - 1] = lines[number - 1].replace(b",25.0,", b",lots,")
    return b"".join(lines)


def _large_removal(good: bytes) -> bytes:
    # Only the header and the index rows: every unexpired derivative would vanish.
    return b"".join(_lines(good)[:4])


CORRUPTIONS = (
    Corruption(
        "bad header",
        lambda good: good.replace(b"SEM_SMST_SECURITY_ID", b"SECURITY", 1).replace(
            b"SEM_EXM_EXCH_ID", b"EXCHANGE", 1
        ),
        ("line 1", "not a Dhan scrip master header"),
    ),
    Corruption(
        "html page",
        lambda good: (
            b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
            b"<body><h1>502 Bad Gateway</h1></body></html>\n"
        ),
        ("line 1", "HTML page"),
    ),
    Corruption("empty file", lambda good: b"", ("the file is empty",)),
    Corruption("header only", lambda good: _lines(good)[0], ("header but no rows",)),
    Corruption("truncated last line", _truncated, ("truncated", "last line (23)")),
    Corruption("nul bytes", _nul_bytes, ("line 5", "NUL bytes")),
    Corruption("invalid utf-8", _invalid_utf8, ("line 3", "not UTF-8", "0xff")),
    Corruption("gzip binary junk", gzip.compress, ("line 1", "binary or corrupt")),
    Corruption(
        "too many bad rows",
        _too_many_bad_rows,
        ("3 of 22 rows are malformed", "line 8: lot_size", "limit is 1.0%"),
    ),
    Corruption(
        "large removal",
        _large_removal,
        ("refusing to remove 17 of 20 contracts", "--allow-large-removal"),
    ),
)
