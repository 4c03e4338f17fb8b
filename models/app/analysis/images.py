"""The images ``maxformer spectra`` feeds a network: a dataset's held-out images, or any folder
of pictures, resized to the network's input size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from timm.data import create_transform
from torch.utils.data import Dataset, Subset

from models.app.config import build_config, read_recipe, recipe_names
from models.app.data import build_datasets
from models.app.datasets import IMAGE_EXTENSIONS, opened_picture, read_picture
from models.app.errors import UserError
from models.app.samples import dataset_labels, stratified_order

NO_LABEL = -1
"""The label of a picture from a folder."""


@dataclass(frozen=True)
class ImageSet:
    """Images ``[C, H, W]`` (or event frames ``[T, C, H, W]``) with labels (``NO_LABEL`` for
    pictures), and where they came from."""

    items: Dataset
    source: str


class PictureFolder(Dataset):
    """Pictures as normalised tensors ``[C, size, size]``: the shorter side resized to ``size``
    (bicubic), then the centre cropped; grey (``in_chans`` 1) or RGB (3)."""

    def __init__(self, files: list[Path], size: int, in_chans: int,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.files = files
        self.mode = {1: "L", 3: "RGB"}[in_chans]
        self.transform = create_transform(
            input_size=(in_chans, size, size), is_training=False, interpolation="bicubic",
            crop_pct=1.0, mean=mean, std=std,
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_picture(self.files[i], self.mode)), NO_LABEL


def picture_folder(
    folder: Path, samples: int, size: int, in_chans: int, mean: tuple[float, ...],
    std: tuple[float, ...], min_side: int, seed: int = 0,
) -> ImageSet:
    """``samples`` pictures under ``folder`` (any depth), drawn by ``seed`` and stratified by
    the folder that holds them (:func:`models.app.samples.stratified_order`).

    Refuses a folder without pictures, unreadable pictures, a network that does not take
    1 or 3 channels, and pictures whose shorter side is below ``min_side`` pixels (the
    network's patch grid: upsampled, they would show the resize filter's spectrum).
    """
    if not folder.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    if in_chans not in (1, 3):
        raise UserError(f"pictures are grey or RGB; this network takes {in_chans} channels")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(
            f"--images {folder} holds no pictures (looked for {', '.join(IMAGE_EXTENSIONS)})")
    files = [files[i] for i in stratified_order([p.parent for p in files], samples, seed)]
    for path in files:
        with opened_picture(path) as picture:
            width, height = picture.size
        if min(width, height) < min_side:
            raise UserError(
                f"picture {path} is {width}x{height} px, smaller than the network's "
                f"{min_side}x{min_side} patch grid; use pictures of {min_side} px or more")
    return ImageSet(PictureFolder(files, size, in_chans, mean, std),
                    f"{len(files)} pictures from {folder} (stratified by folder, seed {seed})")


def held_out_images(
    dataset: str, samples: int, size: int, data_dir: str | None, T: int | None,
    base: dict | None = None, seed: int = 0,
) -> ImageSet:
    """``samples`` held-out images of ``dataset`` at ``size`` px, drawn by ``seed`` and
    stratified by class (:func:`models.app.samples.stratified_order`: the first ones one per
    class), through the eval transform of ``base`` (a training config: the network's own) or
    of the dataset's recipe; ``data_dir`` and ``T`` replace theirs when given."""
    if base is None:
        base = read_recipe(dataset) if dataset in recipe_names() else {}
    overrides = {"dataset": dataset, "img_size": size}
    if data_dir is not None:
        overrides["data_dir"] = str(Path(data_dir).expanduser().resolve())
    if T is not None:
        overrides["T"] = T
    _, val_set, _ = build_datasets(build_config(base, overrides), need_train=False)
    order = stratified_order(dataset_labels(val_set), samples, seed)
    return ImageSet(Subset(val_set, order), f"{len(order)} held-out images of {dataset} "
                    f"(class-stratified, seed {seed})")
