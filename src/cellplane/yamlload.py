"""Reading YAML that may be hostile: PyYAML's safe loader, with aliases bounded.

``yaml.safe_load`` builds an alias as a second reference to the anchored value, so a "billion laughs" document
(ten aliases of ten aliases of ...) loads in microseconds into a few hundred objects, and only blows up when
something walks it as a tree: ``json.dumps`` of it (the body of ``cellplane apply``) grows to gigabytes. A
value that holds an alias of itself (``a: &a [*a]``) loads into a cycle that ``json.dumps`` refuses with a
``ValueError``. ``BoundedLoader`` refuses both while composing, before anything is built:

* an alias of a node that is still being composed (one that contains the alias) is a cycle;
* every node is counted with the size it has once aliases are expanded (a scalar is 1, a collection 1 plus
  its items), and the sizes aliases add up in one document may not exceed ``MAX_ALIASED_NODES``.

The cost is one integer per node while the document is composed. A document without aliases is not limited
(its size is the text's). Nesting too deep for Python's stack, and values PyYAML's constructors fail on with
a ``ValueError`` (a date like 2020-13-45), are refused too. Every refusal is a ``yaml.MarkedYAMLError``, pointing
at the alias (line and column) where there is one, like any YAML syntax error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

# Values that aliases may add to one document once expanded; a generous bound for hand-written anchors (a few
# shared blocks reused a few times), and a million times smaller than a billion laughs.
MAX_ALIASED_NODES = 100_000


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses self-referencing aliases and aliases expanding beyond a bound."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded (composed nodes only)
        self._aliased = 0

    def compose_document(self) -> Node | None:
        self._sizes, self._aliased = {}, 0
        try:
            return super().compose_document()
        finally:
            self._sizes = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise ComposerError(None, None, f"alias *{event.anchor} refers to a value that contains it "
                                    "(a self-referencing alias)", event.start_mark)
            node = super().compose_node(parent, index)
            if node is not None:
                self._aliased += self._sizes[id(node)]
                if self._aliased > MAX_ALIASED_NODES:
                    raise ComposerError(None, None, f"aliases expand to more than {MAX_ALIASED_NODES} values "
                                        "(a YAML alias bomb?)", event.start_mark)
            return node
        node = super().compose_node(parent, index)
        if node is not None:
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load(text: str) -> Any:
    """The one document of ``text``; raises ``yaml.YAMLError`` (marked with line and column where known)."""
    return _read(text, lambda loader: loader.get_single_data())


def load_all(text: str) -> list[Any]:
    """Every document of ``text``, in order; raises ``yaml.YAMLError`` like ``load``."""
    def documents(loader: BoundedLoader) -> list[Any]:
        out = []
        while loader.check_data():
            out.append(loader.get_data())
        return out

    return _read(text, documents)


def _read(text: str, read: Callable[[BoundedLoader], Any]) -> Any:
    loader = BoundedLoader(text)
    try:
        return read(loader)
    except RecursionError:
        raise yaml.MarkedYAMLError(problem="nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # what PyYAML's constructors let escape ('2020-13-45')
        raise yaml.MarkedYAMLError(problem=f"a value cannot be read: {e}") from None
    finally:
        loader.dispose()
