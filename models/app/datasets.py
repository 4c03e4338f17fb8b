"""The datasets the commands know, with what a model needs to know about each: one registry.

Imports neither torch nor timm, so that the command line answers names and errors at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.app.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # timm's
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # models.zoo's
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
HELD_OUT_SPLITS = ("val", "validation")
DEFAULT_BAND = (0.5, 1.0)
"""The radial band of dataset ``bands`` (see :mod:`models.app.bands`), Nyquist = 1."""
STATISTICS_SAMPLE = 256
"""Pictures of a grey folder its mean and std are computed from (seeded, every class)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Classes, input channels and normalisation of a dataset; ``events``: clips of event
    frames ``[T, 2, H, W]`` instead of images; ``img_size``: its images' side (None: the
    model's); ``folder``: an image folder, whose classes, channels and size are found in it."""

    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    events: bool = False
    img_size: int | None = None
    folder: bool = False


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, 1, (0.5,), (0.5,), img_size=8),
    "cifar10": DatasetInfo(10, 3, CIFAR_MEAN, CIFAR_STD, img_size=32),
    "cifar100": DatasetInfo(100, 3, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                            img_size=32),
    "imagenet": DatasetInfo(1000, 3, IMAGENET_MEAN, IMAGENET_STD, folder=True),
    "folder": DatasetInfo(0, 3, IMAGENET_MEAN, IMAGENET_STD, folder=True),
    "torch/mnist": DatasetInfo(10, 1, (0.1307,), (0.3081,), img_size=28),
    "torch/fashion_mnist": DatasetInfo(10, 1, (0.2860,), (0.3530,), img_size=28),
    "torch/kmnist": DatasetInfo(10, 1, (0.1918,), (0.3483,), img_size=28),
    "torch/cifar10": DatasetInfo(10, 3, CIFAR_MEAN, CIFAR_STD, img_size=32),
    "torch/cifar100": DatasetInfo(100, 3, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                                  img_size=32),
    "cifar10dvs": DatasetInfo(10, 2, (0.0, 0.0), (1.0, 1.0), events=True),
    "dvsgesture": DatasetInfo(11, 2, (0.0, 0.0), (1.0, 1.0), events=True),
    "fake": DatasetInfo(10, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "bands": DatasetInfo(10, 1, (0.0,), (1.0,)),
}
"""Every dataset name of the ``dataset`` config key (``torch/...``: torchvision's datasets as
timm names them; ``folder``, or timm's empty name, any image folder)."""

EVENT_DATASETS = tuple(name for name, info in DATASETS.items() if info.events)
FOLDER_NAMES = ("folder", "")
"""The names of an image folder (timm's empty name included)."""


def unknown_dataset(name: str) -> str:
    """The one-line error of an unknown dataset name: the names, and how to use a folder."""
    return (f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}; for your own "
            "pictures: --dataset folder --data-dir DIR (DIR holds train/ and val/ or "
            "validation/, or is one of them, with one sub-folder of pictures per class)")


def pictures_in(folder: Path) -> list[Path]:
    """The pictures under ``folder`` (any depth), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def class_folders(folder: Path) -> list[str]:
    """The sub-folders of ``folder`` that hold pictures (its classes), sorted."""
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and pictures_in(d))


def folder_splits(root: Path, origin: str = "--data-dir") -> dict[str, Path | None]:
    """The ``train`` and ``val`` folders of an image folder ``root``: ``root/train`` and
    ``root/val`` (or ``root/validation``); a ``root`` that holds class folders itself is its
    own held-out split. Refuses a missing folder, naming ``origin`` (where the path came from)."""
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root} ({origin}; give --data-dir DIR)")
    val = next((root / s for s in HELD_OUT_SPLITS if class_folders(root / s)), None)
    train = root / "train" if class_folders(root / "train") else None
    if train is None and val is None and class_folders(root):
        return {"train": root, "val": root}
    if train is None and val is None:
        raise FileNotFoundError(
            f"no image folder at {root} ({origin}): expected {root}/train/<class>/<picture> "
            f"and {root}/val/<class>/<picture> (or validation/, or <class>/<picture> in "
            f"{root} itself; pictures: {', '.join(IMAGE_EXTENSIONS)})")
    return {"train": train, "val": val}


@dataclass(frozen=True)
class FolderFacts:
    """What an image folder brings: its classes, channels (1 when every sampled picture is
    grey), picture side, and a mean and std for grey pictures (None: ImageNet's)."""

    classes: list[str]
    in_chans: int
    img_size: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


@contextmanager
def opened_picture(path: Path | str) -> Iterator[Image.Image]:
    """The picture at ``path``, opened lazily (its header read, its pixels when used).

    A file that is not a picture, one truncated (found when its pixels are decoded inside the
    ``with``) and one whose header declares more pixels than PIL's ``Image.MAX_IMAGE_PIXELS``
    (a decompression bomb, refused before decoding) raise a :class:`UserError` naming the file.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                yield picture
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise UserError(f"picture {path} declares too many pixels for PIL "
                        f"(a decompression bomb?): {err}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read picture {path}: {err}") from err


def read_picture(path: Path | str, mode: str) -> Image.Image:
    """The picture at ``path`` decoded in ``mode`` (``L`` grey, ``RGB``); errors as
    :func:`opened_picture`'s."""
    with opened_picture(path) as picture:
        return picture.convert(mode)


def inspect_folder(root: Path, origin: str = "--data-dir") -> FolderFacts:
    """The facts of image folder ``root`` from a seeded sample of its pictures (every class)."""
    import numpy as np

    splits = folder_splits(root, origin)
    split = splits["train"] or splits["val"]
    classes = class_folders(split)
    files = [pictures_in(split / name) for name in classes]
    rng = random.Random(0)
    sample = [path for group in files for path in rng.sample(group, min(
        len(group), max(1, STATISTICS_SAMPLE // len(classes))))]
    grey, sides, pixels = True, [], []
    for path in sample:
        with opened_picture(path) as picture:
            grey &= picture.mode in ("1", "L", "I", "I;16", "F")
            sides.append(min(picture.size))
            if grey:
                pixels.append(np.asarray(picture.convert("L"), dtype=np.float64) / 255.0)
    side = max(set(sides), key=sides.count)  # the commonest
    if not grey:
        return FolderFacts(classes, 3, side, None, None)
    values = np.concatenate([p.ravel() for p in pixels])
    std = float(values.std()) or 1.0
    return FolderFacts(classes, 1, side, (round(float(values.mean()), 4),), (round(std, 4),))
