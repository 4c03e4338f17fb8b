"""Representative samples for the analysis commands: seeded and stratified by class."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def stratified_order(labels: Sequence[Any], count: int, seed: int) -> list[int]:
    """``count`` indices of ``labels`` drawn by class: each class's indices shuffled by
    ``seed``, then taken one per class in turn (classes in sorted order), so the first
    ``k`` indices show ``k`` classes when there are that many, and every class holds
    ``count // classes`` or one more where it has them."""
    rng = random.Random(seed)
    by_class: dict[Any, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    groups = [rng.sample(by_class[label], len(by_class[label])) for label in sorted(by_class)]
    order = [group[r] for r in range(max(map(len, groups), default=0))
             for group in groups if r < len(group)]
    return order[:count]


def dataset_labels(dataset: Any) -> list[Any]:
    """The label of every item of a dataset: its ``targets`` (torchvision's, the app's),
    through a ``Subset``'s indices, else each item's second element."""
    indices = getattr(dataset, "indices", None)
    base = getattr(dataset, "dataset", None)
    if indices is not None and base is not None:
        labels = dataset_labels(base)
        return [labels[i] for i in indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [dataset[i][1] for i in range(len(dataset))]
