"""Datasets in their real on-disk formats, timm transforms, and (distributed) data loaders.

Images come out as ``[B, C, H, W]`` float tensors, event frames as ``[B, T, 2, H, W]``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import pickle
import random
import sys
import zipfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import (
    CIFAR10,
    CIFAR100,
    KMNIST,
    MNIST,
    DatasetFolder,
    FakeData,
    FashionMNIST,
    ImageFolder,
)

from models.app.bands import BANDS_SEED, TEST_SIZE, TRAIN_SIZE, generate_bands
from models.app.config import TrainConfig, dataset_defaults, dataset_info
from models.app.datasets import (
    DATASETS,
    DEFAULT_BAND,
    EVENT_DATASETS,
    IMAGE_EXTENSIONS,
    DatasetInfo,
    folder_splits,
    read_picture,
)
from models.app.errors import UserError
from models.app.event_augment import augment_clip
from models.app.files import atomic_write
from models.app.rand_augment import with_snn_operations
from models.app.training.distributed import DistContext

DIGITS_SPLIT_SEED = 0  # the fixed stratified 80/20 split of the digits
CIFAR10DVS_TRAIN_SHARE = 0.9  # the paper's per-class 9:1 split
FAKE_TRAIN_SIZE, FAKE_VAL_SIZE = 512, 128
DIGITS_KEYS = ("train_images", "train_targets", "test_images", "test_targets")


def _digits_cache_file() -> Path:
    """Where the digits split is cached: ``$XDG_CACHE_HOME/maxformer`` (``~/.cache``), one file
    per scikit-learn version and split seed."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = f"digits-split{DIGITS_SPLIT_SEED}-scikit-learn{metadata.version('scikit-learn')}.npz"
    return root / "maxformer" / name


@functools.cache
def digits_split() -> dict[str, np.ndarray]:
    """scikit-learn's digits, split: ``train_images [1437, 8, 8]``, ``test_images [360, 8, 8]``
    (uint8, 0..255) and ``train_targets``, ``test_targets``. Read from a cache file written
    on first use, since importing scikit-learn takes about a second; a cache file that cannot
    be read is made again."""
    path = _digits_cache_file()
    try:
        with np.load(path) as saved:
            return {key: saved[key] for key in DIGITS_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # no cache file yet (first use), or a damaged one: made below
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(
        index, test_size=0.2, stratify=digits.target, random_state=DIGITS_SPLIT_SEED
    )
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    split = {"train_images": images[train_idx], "train_targets": digits.target[train_idx],
             "test_images": images[test_idx], "test_targets": digits.target[test_idx]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **split))
    except (OSError, UserError) as err:
        print(f"cannot cache the digits split at {path} ({err}); each run reads scikit-learn "
              "again", file=sys.stderr)
    return split


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (1797 8x8 grey images, values 0..16, 10 classes).

    A fixed stratified 80/20 split (seed ``DIGITS_SPLIT_SEED``): 1437 train, 360 test images
    (`digits_split`). Items are ``(PIL 'L' image, label)`` before ``transform``.
    """

    def __init__(self, train: bool, transform=None) -> None:
        part = "train" if train else "test"
        split = digits_split()
        self.images = split[f"{part}_images"]
        self.targets = split[f"{part}_targets"].tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i], mode="L")
        return (self.transform(image) if self.transform else image), self.targets[i]


class BandsDataset(Dataset):
    """The `bands` dataset: `TRAIN_SIZE` train or `TEST_SIZE` test images of side `size` for
    `band`, from fixed seeds (train and test are disjoint draws). Items are
    `(image [1, S, S] normalised as (x - mean) / std, label)`."""

    def __init__(
        self,
        train: bool,
        band: Sequence[float] = DEFAULT_BAND,
        size: int = 32,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        count, seed = (TRAIN_SIZE, BANDS_SEED) if train else (TEST_SIZE, BANDS_SEED + 1)
        images, labels = generate_bands(count, band, size, seed)
        self.images = torch.from_numpy((images - mean) / std)[:, None]
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], self.targets[i]


class _CIFAR10(CIFAR10):
    """torchvision's CIFAR-10 reader; files are checked for presence, not MD5 (see ``_cifar``)."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class _CIFAR100(CIFAR100):
    """torchvision's CIFAR-100 reader; files are checked for presence, not MD5."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


class FrameClips(Dataset):
    """Event-frame clips ``[T, C, H, W]`` (float32) from ``base`` at ``indices``, transformed."""

    def __init__(self, base: Dataset, indices, transform=None) -> None:
        self.base, self.indices, self.transform = base, list(indices), transform
        targets = getattr(base, "targets", None)
        self.targets = [targets[i] for i in self.indices] if targets is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        frames, label = self.base[self.indices[i]]
        frames = torch.as_tensor(np.asarray(frames, dtype=np.float32))
        return (self.transform(frames) if self.transform else frames), label


class FrameTransform:
    """Resize event frames ``[T, C, H, W]`` to ``size`` and, when training, flip the clip
    (probability ``hflip``) and, with ``augment``, apply one random operation of
    :func:`models.app.event_augment.augment_clip`."""

    def __init__(self, size: int, hflip: float, augment: bool = False) -> None:
        self.size, self.hflip, self.augment = size, hflip, augment

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-2:] != (self.size, self.size):
            frames = F.interpolate(frames, size=(self.size, self.size), mode="area")
        if self.hflip > 0 and random.random() < self.hflip:
            frames = frames.flip(-1)
        return augment_clip(frames) if self.augment else frames


def posterize(image: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, also when it keeps 0 bits (a black image), which Pillow 10 and later
    refuse: timm's increasing posterize keeps 0 bits at magnitude 10, which RandAugment with
    ``mstd`` reaches now and then (the CIFAR recipe's ``rand-m9-n1-mstd0.4-inc1``)."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep < 1:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


def _with_safe_posterize(transform):
    """``transform`` with every posterize operation of its auto-augmentation (RandAugment,
    AugMix, AutoAugment policies) done by :func:`posterize`."""
    for step in getattr(transform, "transforms", ()):
        operations = list(getattr(step, "ops", ()))
        operations += [op for sub_policy in getattr(step, "policy", ()) for op in sub_policy]
        for op in operations:
            if getattr(op, "name", "").startswith("Posterize"):
                op.aug_fn = posterize
    return transform


def eval_crop_pct(cfg: TrainConfig) -> float | None:
    """The evaluation transform's crop_pct (resize to ``img_size / crop_pct``, centre crop
    ``img_size``): ``cfg.crop_pct``, or 1 (no crop) when ``img_size`` exceeds
    ``crop_pct_max_size``, as the original ImageNet evaluation (None: timm's default)."""
    if cfg.crop_pct_max_size is not None and cfg.img_size > cfg.crop_pct_max_size:
        return 1.0
    return cfg.crop_pct


def eval_batch_size(cfg: TrainConfig) -> int:
    """Images per evaluation batch and process: ``int(batch_size x eval_batch_scale)``, at
    least 1."""
    return max(1, int(cfg.batch_size * cfg.eval_batch_scale))


def image_transform(cfg: TrainConfig, info: DatasetInfo, train: bool):
    """timm's train/eval transform for ``cfg`` (RandAugment ``cfg.aa``, random erasing unless
    ``cfg.erase_after_mix`` leaves it to the training loop, ...)."""
    try:
        transform = create_transform(
            input_size=(info.in_chans, cfg.img_size, cfg.img_size),
            is_training=train,
            scale=tuple(cfg.scale),
            ratio=tuple(cfg.ratio),
            hflip=cfg.hflip,
            color_jitter=cfg.color_jitter,
            auto_augment=cfg.aa,
            interpolation=cfg.interpolation,
            mean=info.mean,
            std=info.std,
            re_prob=0.0 if cfg.erase_after_mix else cfg.reprob,
            re_mode=cfg.remode,
            crop_pct=eval_crop_pct(cfg),
        )
    except (AssertionError, KeyError, ValueError) as err:
        raise UserError(
            f"timm cannot build the {'training' if train else 'evaluation'} transform of this "
            f"config (aa {cfg.aa!r}; valid aa: a timm policy such as rand-m9-n1-mstd0.4-inc1, "
            f"augmix-m5-w4-d2, original, v0, 3a): {err}"
        ) from err
    if cfg.aa_ops == "snn":
        transform = with_snn_operations(transform)
    return _with_safe_posterize(transform)


def _data_dir(cfg: TrainConfig) -> Path:
    if cfg.data_dir is None:
        raise UserError(f"dataset {cfg.dataset} needs --data-dir (the folder that holds it)")
    return Path(cfg.data_dir).expanduser()


def _cifar(cfg: TrainConfig, train_tf, eval_tf):
    """CIFAR-10/100 from torchvision's pickled batches (``cifar-10-batches-py/``, ...).

    The MD5 check of torchvision is replaced by a presence check with a clear message: it
    reads the whole archive at every start, and a damaged pickle fails to load anyway.
    """
    root = _data_dir(cfg)
    cls = _CIFAR10 if cfg.dataset.removeprefix("torch/") == "cifar10" else _CIFAR100
    folder = root / cls.base_folder
    names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if cfg.download:
        try:
            cls(str(root), train=True, download=True)
        except OSError as err:
            raise UserError(f"downloading {cfg.dataset} to {root} failed: {err}") from err
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        label = "CIFAR-10" if cls is _CIFAR10 else "CIFAR-100"
        raise UserError(
            f"no {label} batches at {folder}: expected {', '.join(names)}; "
            f"missing {', '.join(missing) if len(missing) < len(names) else 'all'} (use --download)"
        )
    try:
        return cls(str(root), True, train_tf), cls(str(root), False, eval_tf)
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
        raise UserError(
            f"malformed CIFAR batch in {folder}: {err!r}; expected pickles of a dict with "
            f"'data' (N x 3072 uint8) and labels, as in the python version of CIFAR"
        ) from err


def _folder(cfg: TrainConfig, in_chans: int, train_tf, eval_tf, need_train: bool):
    """An image folder: ``train/<class>/<picture>`` and ``val/`` (or ``validation/``), or a
    folder of ``<class>/<picture>`` (both splits); grey pictures stay grey (``in_chans`` 1).
    Without ``need_train``, the held-out split alone (no ``train/`` needed; None for it)."""
    root = _data_dir(cfg)
    try:
        splits = folder_splits(root, "data_dir of the run's config")
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    loader = functools.partial(read_picture, mode="L" if in_chans == 1 else "RGB")
    sets = []
    for split, tf in (("train", train_tf), ("val", eval_tf)):
        if split == "train" and not need_train:
            sets.append(None)
            continue
        if splits[split] is None:
            raise UserError(f"no image folder at {root}/{split}: expected {root}/{split}/"
                            f"<class>/<picture> ({', '.join(IMAGE_EXTENSIONS)})"
                            + (" (or validation/)" if split == "val" else ""))
        sets.append(ImageFolder(str(splits[split]), transform=tf, loader=loader))
    if need_train and sets[0].classes != sets[1].classes:
        raise UserError(f"class folders of {splits['train']} and {splits['val']} differ")
    return sets[0], sets[1]


def _torchvision(cfg: TrainConfig, train_tf, eval_tf):
    """torchvision's MNIST, Fashion-MNIST or KMNIST in ``data_dir`` (``--download``)."""
    cls = {"torch/mnist": MNIST, "torch/fashion_mnist": FashionMNIST, "torch/kmnist": KMNIST}[
        cfg.dataset]
    root = _data_dir(cfg)
    try:
        return (cls(str(root), train=True, transform=train_tf, download=cfg.download),
                cls(str(root), train=False, transform=eval_tf, download=cfg.download))
    except (RuntimeError, OSError) as err:
        raise UserError(f"no {cfg.dataset} in {root} ({err}; use --download)") from err


def _frames_root(cfg: TrainConfig, root: Path) -> Path:
    return root / f"frames_number_{cfg.T}_split_by_number"


def _event_folder(cfg: TrainConfig, train: bool | None):
    """One split of an event dataset as spikingjelly integrates it (T frames, split by number).

    With spikingjelly's raw events (``root/events_np``) or ``download``, spikingjelly's own
    class reads (and, the first time, integrates) the frames. With only the integrated frames
    (``root/frames_number_T_split_by_number/...``), they are read with spikingjelly's loader
    from that same layout.
    """
    from spikingjelly.datasets.cifar10_dvs import CIFAR10DVS
    from spikingjelly.datasets.dvs128_gesture import DVS128Gesture
    from spikingjelly.datasets.utils import load_npz_frames

    if cfg.T is None:
        raise UserError(f"dataset {cfg.dataset} needs T (the number of frames per clip)")
    root = _data_dir(cfg)
    frames = _frames_root(cfg, root)
    split = frames if train is None else frames / ("train" if train else "test")
    if (root / "events_np").is_dir() or cfg.download:
        kwargs = dict(data_type="frame", frames_number=cfg.T, split_by="number")
        try:
            if cfg.dataset == "cifar10dvs":
                return CIFAR10DVS(str(root), **kwargs)
            return DVS128Gesture(str(root), train=train, **kwargs)
        except (NotImplementedError, RuntimeError, OSError) as err:
            message = f"spikingjelly could not prepare {cfg.dataset} at {root}: {err}"
            raise UserError(message) from err
    layout = "<class>/*.npz" if train is None else "{train,test}/<class>/*.npz"
    if not split.is_dir():
        raise UserError(
            f"no {cfg.dataset} data at {root}: expected spikingjelly's events "
            f"({root}/events_np) or integrated frames ({frames}/{layout}, key 'frames', "
            f"shape [T={cfg.T}, 2, H, W]) (use --download for CIFAR10-DVS)"
        )
    try:
        return DatasetFolder(str(split), loader=load_npz_frames, extensions=(".npz",))
    except (FileNotFoundError, OSError) as err:
        raise UserError(f"no frame files in {split}: expected {layout}: {err}") from err


def _events(cfg: TrainConfig, train_tf, eval_tf):
    if cfg.dataset == "cifar10dvs":
        full = _event_folder(cfg, None)
        by_class: dict[int, list[int]] = {}
        for i, label in enumerate(full.targets):
            by_class.setdefault(label, []).append(i)
        train_idx, test_idx = [], []
        for label in sorted(by_class):
            idx = by_class[label]
            cut = math.ceil(len(idx) * CIFAR10DVS_TRAIN_SHARE)
            train_idx += idx[:cut]
            test_idx += idx[cut:]
        return FrameClips(full, train_idx, train_tf), FrameClips(full, test_idx, eval_tf)
    train, test = _event_folder(cfg, True), _event_folder(cfg, False)
    return (
        FrameClips(train, range(len(train)), train_tf),
        FrameClips(test, range(len(test)), eval_tf),
    )


def build_datasets(
    cfg: TrainConfig, need_train: bool = True
) -> tuple[Dataset | None, Dataset, DatasetInfo]:
    """Train and held-out sets of ``cfg.dataset``, with their transforms, and their info
    (classes and channels as :func:`models.app.config.dataset_defaults` finds them).

    ``cfg.mean``/``cfg.std`` override the dataset's normalisation; ``cfg.num_classes`` sets
    the classes of ``fake`` and must otherwise match the dataset (or be null). Without
    ``need_train``, an image folder needs no training split (the train set is then None).
    """
    given, info = cfg.num_classes, dataset_info(cfg)
    cfg, known = dataset_defaults(cfg), DATASETS[cfg.dataset]
    found = known.num_classes
    if cfg.dataset in EVENT_DATASETS:
        train_tf = FrameTransform(cfg.img_size, cfg.hflip, cfg.event_augment)
        eval_tf = FrameTransform(cfg.img_size, 0.0)
    else:
        train_tf, eval_tf = image_transform(cfg, info, True), image_transform(cfg, info, False)
    if cfg.dataset == "digits":
        train_set, val_set = DigitsDataset(True, train_tf), DigitsDataset(False, eval_tf)
    elif cfg.dataset == "bands":  # generated at img_size, no augmentation (see models.app.bands)
        train_set, val_set = (
            BandsDataset(train, cfg.band, cfg.img_size, info.mean[0], info.std[0])
            for train in (True, False)
        )
    elif cfg.dataset in ("cifar10", "cifar100", "torch/cifar10", "torch/cifar100"):
        train_set, val_set = _cifar(cfg, train_tf, eval_tf)
    elif cfg.dataset.startswith("torch/"):
        train_set, val_set = _torchvision(cfg, train_tf, eval_tf)
    elif known.folder:
        train_set, val_set = _folder(cfg, info.in_chans, train_tf, eval_tf, need_train)
        found = len(val_set.classes)
    elif cfg.dataset == "fake":
        found = cfg.num_classes
        shape = (info.in_chans, cfg.img_size, cfg.img_size)
        train_set = FakeData(FAKE_TRAIN_SIZE, shape, found, train_tf, random_offset=0)
        val_set = FakeData(FAKE_VAL_SIZE, shape, found, eval_tf, random_offset=FAKE_TRAIN_SIZE)
    else:
        train_set, val_set = _events(cfg, train_tf, eval_tf)
    if given is not None and given != found:
        raise UserError(
            f"num_classes {given} does not match dataset {cfg.dataset} "
            f"({found} classes); use num_classes=null"
        )
    if cfg.train_samples is not None and train_set is not None:
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
        train_set = Subset(train_set, order[: cfg.train_samples].tolist())
    return train_set, val_set, info


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Inside, python's ``random``, numpy's global generator and torch's CPU generator may be
    reseeded; outside, their states are as before."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def seed_sample(seed: int, epoch: int, index: int) -> None:
    """Seed python's ``random`` by ``(seed, epoch, index)``, and numpy's and torch's CPU
    generators from it."""
    random.seed((seed << 64) | (epoch << 32) | index)
    np.random.seed(random.getrandbits(32))
    torch.default_generator.manual_seed(random.getrandbits(64))


class SeededSamples(Dataset):
    """``dataset`` read by ``(epoch, index)`` keys: the random augmentation of sample ``index``
    in ``epoch`` draws from generators seeded by ``(seed, epoch, index)`` alone.

    So an item is the same whatever was read before it, in this process or in a loader
    worker: an epoch resumed in its middle sees the very batches of an uninterrupted run, and
    reading data never moves the training loop's own random state.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        """A batch of items (what the loader asks for), the random states kept once."""
        items = []
        with kept_random_state():
            for epoch, index in keys:
                seed_sample(self.seed, epoch, index)
                items.append(self.dataset[index])
        return items


class EpochSampler(DistributedSampler):
    """This rank's shuffled share of an epoch as ``(epoch, index)`` keys of
    :class:`SeededSamples`, beginning after its first ``start`` samples (to resume an
    interrupted epoch without loading the batches already trained)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.start = 0

    def __iter__(self):
        indices = itertools.islice(super().__iter__(), self.start, None)
        return ((self.epoch, index) for index in indices)

    def __len__(self) -> int:
        return super().__len__() - self.start


def _loader_generator(seed: int) -> torch.Generator:
    """The generator a loader draws its workers' base seed from (not torch's global one)."""
    return torch.Generator().manual_seed(seed)


def train_loader(dataset: Dataset, cfg: TrainConfig, ctx: DistContext) -> DataLoader:
    """Shuffled loader over this rank's shard; set ``loader.sampler.set_epoch(e)`` per epoch.

    The order depends only on ``cfg.seed`` and the epoch, and each sample's augmentation only
    on ``cfg.seed``, the epoch and the sample (:class:`SeededSamples`), so a run resumed
    anywhere sees the same batches. ``batch_size`` is per process; the last incomplete batch
    is dropped.
    """
    sampler = EpochSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed
    )
    if len(sampler) < cfg.batch_size:
        raise UserError(
            f"the training set has {len(sampler)} samples per process, fewer than "
            f"batch_size {cfg.batch_size}"
        )
    return DataLoader(
        SeededSamples(dataset, cfg.seed),
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
        persistent_workers=cfg.workers > 0,
        generator=_loader_generator(cfg.seed),
    )


def eval_loader(dataset: Dataset, batch_size: int, workers: int, ctx: DistContext) -> DataLoader:
    """Loader over this rank's share of ``dataset``: every sample exactly once over all ranks.

    Rank ``r`` takes samples ``r, r + world_size, ...`` (no padding, unlike
    ``DistributedSampler``), so summed counts are exact even when shards are uneven.
    """
    shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    return DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        generator=_loader_generator(0),
    )
