"""The datasets the commands know, with what a model needs to know about each: one registry."""

from __future__ import annotations

from dataclasses import dataclass

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from models.zoo.build import CIFAR_MEAN, CIFAR_STD


@dataclass(frozen=True)
class DatasetInfo:
    """Classes, input channels and normalisation of a dataset; ``events``: clips of event
    frames ``[T, 2, H, W]`` instead of images."""

    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    events: bool = False


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, 1, (0.5,), (0.5,)),
    "cifar10": DatasetInfo(10, 3, CIFAR_MEAN, CIFAR_STD),
    "cifar100": DatasetInfo(100, 3, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": DatasetInfo(1000, 3, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    "cifar10dvs": DatasetInfo(10, 2, (0.0, 0.0), (1.0, 1.0), events=True),
    "dvsgesture": DatasetInfo(11, 2, (0.0, 0.0), (1.0, 1.0), events=True),
    "fake": DatasetInfo(10, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "bands": DatasetInfo(10, 1, (0.0,), (1.0,)),
}
"""Every dataset name of the ``dataset`` config key."""

EVENT_DATASETS = tuple(name for name, info in DATASETS.items() if info.events)
