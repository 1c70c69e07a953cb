"""YAML loading that reports the file and line of a syntax error instead of a parser traceback.

Configuration can come from people other than the operator (a shared repository, a ConfigMap), so a document is
bounded before anything walks it: its size with every alias expanded (a "billion laughs" alias bomb is a few
hundred bytes that expand to billions of nodes, which the validators would then walk), its nesting depth (the
composer and the validators recurse, so deep nesting would end in RecursionError) and self-referencing aliases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from connector.core.errors import ConfigError

MAX_NODES = 100_000  # with aliases expanded; the largest shipped mapping has about 500
MAX_DEPTH = 64  # the deepest shipped file nests 9 levels


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing, and reports bad values with their position."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # int() past 4300 digits, a date like 2024-13-45
            problem = str(exc).split(";")[0]  # drop Python's advice to call sys.set_int_max_str_digits()
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return _load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path}: invalid YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def _load(text: str) -> Any:
    loader = _BoundedLoader(text)  # the reader refuses control characters here already
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _measure(node: yaml.Node, depth: int, seen: dict[int, tuple[int, int]], open_nodes: set[int]) -> tuple[int, int]:
    """(nodes, height) of ``node`` with aliases expanded; raises as soon as a bound is crossed.

    Each distinct node is measured once, so an alias bomb costs the size of its text, not of its expansion.
    """
    key = id(node)
    if key in seen:
        size, height = seen[key]
    else:
        if key in open_nodes:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a node that contains it",
                                              node.start_mark)
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep once aliases "
                                              "are expanded", node.start_mark)
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        size, height = 1, 1
        for child in children:
            child_size, child_height = _measure(child, depth + 1, seen, open_nodes)
            size, height = size + child_size, max(height, child_height + 1)
            if size > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)",
                    node.start_mark)
        open_nodes.discard(key)
        seen[key] = (size, height)
    if depth - 1 + height > MAX_DEPTH:
        raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep once aliases "
                                          "are expanded", node.start_mark)
    return size, height
