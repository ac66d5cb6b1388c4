"""A minimal ``.env`` reader: ``KEY=value`` lines, ``#`` comments, optional quotes, ``export``.

Values already in the environment win, so a deploy's real variables are never overridden by a
stray file. Deliberately tiny: no interpolation, no multi-line values.

A line that is not ``KEY=value`` (a bare name, ``=value``) is ignored and said on stderr, once
per line at each start, by its line number (never its text, which may be a pasted secret): the
variable it meant to set keeps its default. A file that is not UTF-8 stops the process with
one line naming the file and the line (ImproperlyConfigured).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def parse_dotenv(text: str, ignored: list[int] | None = None) -> dict[str, str]:
    """The ``KEY=value`` pairs of ``text``; the numbers (1-based) of lines that are not
    comments, blank or ``KEY=value`` are appended to ``ignored``."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            if ignored is not None:
                ignored.append(number)
            continue
        value = value.strip()
        quote = value[:1]
        if quote in ("'", '"') and quote in value[1:]:
            value = value[
                1 : value.index(quote, 1)
            ]  # anything after the closing quote is a comment
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def load_dotenv(path: Path) -> None:
    if not path.is_file():
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImproperlyConfigured(
            f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}): save the file "
            "as UTF-8"
        ) from None
    ignored: list[int] = []
    for key, value in parse_dotenv(text, ignored).items():
        os.environ.setdefault(key, value)
    for line in ignored:
        sys.stderr.write(
            f"algo-scalper: warning: {path}: line {line} ignored: not KEY=value (a variable it "
            "meant to set keeps its default)\n"
        )
