"""How many values a nested value holds when what it shares is counted at each use, with a
bound: a few kB of YAML aliases or pickle references can name billions of values, which a
message or a copy would walk until memory runs out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def expanded_size(root: Any, children: Callable[[Any], Iterable[Any] | None], bound: int) -> int:
    """The number of nodes under ``root``, itself included, a node reached twice counted twice,
    counted up to just past ``bound`` (a node that holds itself counts as unbounded).

    ``children(node)``: the nodes ``node`` holds, or None for a leaf. Each container is walked
    once: its count is remembered by identity.
    """
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        held = children(node)
        if held is None:
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = bound + 1  # while its children are counted: a cycle is unbounded
        total = 1
        for child in held:
            total += size(child)
            if total > bound:
                break
        sizes[key] = total
        return total

    return size(root)
