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

A value that YAML cannot turn into Python (an integer of more than 4300 digits, an explicit
``!!timestamp`` that is no date) is named with its line and key path. libyaml's C parser is
used when PyYAML was built with it (several times faster); the checks are the same.
"""

from __future__ import annotations

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
        raise ConfigError(f"{name}: not valid YAML: {exc}") from None
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
