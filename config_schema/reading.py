"""Read a YAML configuration file: UTF-8 text, one document, no duplicated key.

Three ways PyYAML's ``safe_load`` fails an operator, each turned into one ConfigError line that
names the file (and the line and key path where they are known):

* a duplicated key is accepted and the LAST one wins, silently (``risk.daily_loss_limit``
  written twice in a long file: the second, maybe the wrong one, is the one traded with);
  here every duplicate is refused, naming both lines;
* an unquoted date that does not exist (``- 2026-02-30``) makes the timestamp constructor
  raise ValueError from inside ``safe_load``, a traceback; here dates are not resolved by YAML
  at all (they stay strings) and the schema of each file parses them, so the problem is named
  with its key path like any other bad value;
* a file that is not UTF-8 raises UnicodeDecodeError; here it is named with the line of the
  first bad byte.

A syntax error is one line too (the file, the line and column, the problem; a tab named as
one), where PyYAML's own message spans several lines and names "<unicode string>". Numbers
are decimal digits: YAML 1.1's hex, octal, binary and ``_``-grouped forms are refused named
(``0x186a0`` is no amount anyone means), and an unquoted ``1:40:00``, which YAML 1.1 reads in
base 60 (6000), is kept as a :class:`Sexagesimal` int that the schemas refuse as an amount and
show as written.

A value that YAML cannot turn into Python (an integer of more than 4300 digits, an explicit
``!!timestamp`` that is no date) is named with its line and key path. libyaml's C parser is
used when PyYAML was built with it (several times faster); the checks are the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from config_schema.errors import ConfigError
from config_schema.text import join

_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class _ValueProblem(Exception):
    """A scalar YAML could not construct (not a YAMLError: PyYAML raised ValueError or the
    like); carries the node so the message can name its line and key path."""

    def __init__(self, node: yaml.Node, reason: str) -> None:
        super().__init__(reason)
        self.node = node


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader without implicit timestamps, failing constructions tied to their node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _ValueProblem(node, str(exc)) from None


# Dates stay strings: the schemas parse them and name a bad one by its key path.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}

_DECIMAL_INT = re.compile(r"[-+]?[0-9]+", re.ASCII)
_DECIMAL_FLOAT = re.compile(
    r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)",
    re.ASCII,
)
_NOT_DECIMAL = (
    "write numbers in decimal digits (YAML 1.1 reads 0x.., 0o.., 0b.., a leading 0 and "
    "digits with _ as other numbers)"
)


class Sexagesimal(int):
    """An integer YAML 1.1 read in base 60 from an unquoted ``15:30`` (930) or ``1:40:00``
    (6000): kept as the int YAML makes of it (the time rules name an unquoted time with that
    hint), shown as it was written, and refused as an amount."""

    text: str

    def __new__(cls, value: int, text: str) -> Sexagesimal:
        made = super().__new__(cls, value)
        made.text = text
        return made

    def __repr__(self) -> str:
        return repr(self.text)


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    text = str(node.value)
    if _DECIMAL_INT.fullmatch(text):
        return int(text)  # "010" is ten, not YAML 1.1's octal eight
    if ":" in text and "_" not in text:
        return Sexagesimal(yaml.SafeLoader.construct_yaml_int(loader, node), text)
    raise ValueError(_NOT_DECIMAL)


def _construct_float(loader: Any, node: yaml.ScalarNode) -> float:
    if not _DECIMAL_FLOAT.fullmatch(str(node.value)):
        raise ValueError(_NOT_DECIMAL)  # 1_000.5, 1:30.5 (base 60)
    return float(yaml.SafeLoader.construct_yaml_float(loader, node))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _yaml_problem(name: str, exc: yaml.YAMLError, text: str) -> str:
    """One line for a YAML syntax error: the file, the line and column, the problem (PyYAML's
    own text spans 3-4 lines and names "<unicode string>" instead of the file)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    said = f"{problem} ({context})" if context else str(problem)
    if mark is not None:
        lines = text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        if line[mark.column : mark.column + 1] == "\t":
            said += "; YAML indents with spaces, not tabs"
    return f"{name}: not valid YAML{where}: {said}"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _key_paths(root: yaml.Node, name: str) -> tuple[dict[int, str], list[str]]:
    """The key path of every node (by id) and one problem line per duplicated key.

    Walks the composed tree without recursion (a deep file must not overflow the stack) and
    visits an aliased node once (anchors may share a node many times over)."""
    paths: dict[int, str] = {}
    problems: list[tuple[int, str]] = []
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in paths:
            continue
        paths[id(node)] = path
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:  # "<<: *defaults" merges; later keys override it
                    stack.append((value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    stack.append((value_node, join(path, "(complex key)")))
                    continue
                child = join(path, key_node.value)
                ident = (key_node.tag, key_node.value)
                if ident in first_seen:
                    problems.append(
                        (
                            _line(key_node),
                            f"{name}: line {_line(key_node)}: {child}: duplicate key (first "
                            f"at line {first_seen[ident]}); YAML would keep only the last one, "
                            "silently: remove one",
                        )
                    )
                else:
                    first_seen[ident] = _line(key_node)
                stack.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, join(path, i)) for i, item in enumerate(node.value))
    return paths, [line for _, line in sorted(problems)]


def parse_yaml(text: str, name: str) -> Any:
    """The one YAML document in ``text`` (any type; the caller's schema judges it), or
    ConfigError naming ``name``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        paths, duplicates = _key_paths(node, name)
        if duplicates:
            raise ConfigError.of(duplicates)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(name, exc, text)) from None
    except _ValueProblem as exc:
        where = paths.get(id(exc.node)) or "(top level)"
        raise ConfigError(
            f"{name}: line {_line(exc.node)}: {where}: YAML cannot read this value "
            f"({exc}), got {exc.node.value[:80]!r}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{name}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path | str) -> Any:
    """The YAML document in ``path`` (any type: the caller's schema judges it), or ConfigError:
    the path when it cannot be read, the file name (with line and key path where known) when
    it is not UTF-8 or not YAML or repeats a key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            f"{path.name}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
            f"{column}); save the file as UTF-8"
        ) from None
    return parse_yaml(text, path.name)
