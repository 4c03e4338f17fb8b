"""The training configuration: one dataclass, YAML recipes, and command-line overrides."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.app.datasets import (
    DATASETS,
    DEFAULT_BAND,
    EVENT_DATASETS,
    FOLDER_NAMES,
    DatasetInfo,
    inspect_folder,
    unknown_dataset,
)
from models.app.errors import UserError, shown
from models.app.files import (
    atomic_write_text,
    load_yaml,
    named_yaml,
    read_yaml_mapping,
    shipped_names,
)
from models.app.options import BACKENDS, NEURONS, add_options, config_overrides

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
AMP_MODES = ("auto", "auto_fp16", "off", "bf16", "fp16")
RESUMABLE_CHANGES = ("epochs", "data_dir", "download", "workers")
"""The keys a resumed run may change: how long it trains, and where and how data is read."""
RECIPE_DATA_KEYS = ("img_size", "mean", "std", "scale", "ratio", "hflip", "interpolation",
                    "crop_pct", "num_classes", "in_chans")
"""Keys of the default (digits) recipe that another ``--dataset`` does not inherit: it brings
its own size, normalisation and classes, and timm's default augmentation."""
ADDED_KEYS: dict[str, Any] = {"in_chans": None, "crop_pct_max_size": None, "erase_after_mix": False,
                               "eval_batch_scale": 1.0, "eval_fold_bn": True,
                               "eval_loss_mean": "image"}
"""Keys added since checkpoints were first saved, with the value an older config meant."""
CHOICES: dict[str, tuple[str, ...]] = {
    "sched": ("cosine", "tanh", "step", "multistep", "poly", "constant"),
    "interpolation": ("bilinear", "bicubic", "nearest", "box", "hamming", "lanczos"),
    "remode": ("const", "rand", "pixel"),
    "mixup_mode": ("batch", "pair", "elem"),
    "aa_ops": ("timm", "snn"),
    "event_cutmix": ("correct", "original"),
    "eval_loss_mean": ("image", "batch"),
}
"""The valid values of keys that name one of a few choices (``opt``: timm's optimizers)."""
RANGES: dict[str, tuple[float, float, str]] = {
    "lr": (0.0, math.inf, "()"),
    "min_lr": (0.0, math.inf, "[)"),
    "warmup_lr": (0.0, math.inf, "[)"),
    "weight_decay": (0.0, math.inf, "[)"),
    "smoothing": (0.0, 1.0, "[)"),
    "mixup": (0.0, math.inf, "[)"),
    "cutmix": (0.0, math.inf, "[)"),
    "mixup_prob": (0.0, 1.0, "[]"),
    "mixup_switch_prob": (0.0, 1.0, "[]"),
    "hflip": (0.0, 1.0, "[]"),
    "reprob": (0.0, 1.0, "[]"),
    "color_jitter": (0.0, math.inf, "[)"),
    "crop_pct": (0.0, math.inf, "()"),
    "crop_pct_max_size": (1, math.inf, "[)"),
    "eval_batch_scale": (0.0, math.inf, "()"),
    "ema_decay": (0.0, 1.0, "()"),
    "clip_grad": (0.0, math.inf, "()"),
    "warmup_epochs": (0, math.inf, "[)"),
    "cooldown_epochs": (0, math.inf, "[)"),
    "mixup_off_epoch": (0, math.inf, "[)"),
    "workers": (0, math.inf, "[)"),
    "seed": (0, 2**31 - 1, "[]"),
    "train_samples": (1, math.inf, "[)"),
    "num_classes": (1, math.inf, "[)"),
    "lr_base_batch": (1, math.inf, "[)"),
    "in_chans": (1, math.inf, "[)"),
}
"""Numeric keys and their valid range ``(low, high, brackets)``; null keys are not checked."""


@dataclass
class TrainConfig:
    """Every key of a training recipe (YAML file, ``--set key=value``)."""

    # model
    model: str = "maxformer_cifar"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    T: int | None = 2
    neuron: str = "lif"  # lif, if, relu (the ANN twin), qcfs, if_converted; zoo models only
    lif_backend: str = "auto"  # neuron backend of the zoo's models
    pack_saved_spikes: bool = True  # spikes saved for backward in 1 bit (zoo models)
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    num_classes: int | None = None
    in_chans: int | None = None  # input channels (null: the dataset's)
    img_size: int = 32
    mean: list[float] | None = None
    std: list[float] | None = None
    train_samples: int | None = None
    band: list[float] = field(default_factory=lambda: list(DEFAULT_BAND))  # dataset bands
    workers: int = 0
    # augmentation of event frames (the original event training)
    event_augment: bool = False  # one random shear/translation/rotation/cutout per clip
    T_train: int | None = None  # train on this many of the T frames, drawn per batch
    # augmentation (timm)
    aa: str | None = None
    aa_ops: str = "timm"  # RandAugment's operations: timm's 15, or snn (the original CIFAR's 5)
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: float = 0.5
    color_jitter: float = 0.0
    interpolation: str = "bicubic"
    crop_pct: float | None = None  # evaluation: resize to img_size / crop_pct, centre crop
    crop_pct_max_size: int | None = None  # above this img_size, crop_pct 1 (null: any size)
    reprob: float = 0.0
    remode: str = "const"
    erase_after_mix: bool = False  # erase the mixed batch, not each image before mixing
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    mixup_off_epoch: int = 0
    event_cutmix: str = "correct"  # original: cut over channel and height of [B, T, C, H, W]
    smoothing: float = 0.1
    # optimisation (timm)
    epochs: int = 30
    batch_size: int = 64
    opt: str = "adamw"
    lr: float = 1e-3
    lr_base_batch: int | None = None  # lr is per this many images: x global batch / this
    weight_decay: float = 0.06
    sched: str = "cosine"
    sched_per_step: bool = False  # set the LR at every update (warm-up then sched over the rest)
    min_lr: float = 1e-5
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    cooldown_epochs: int = 0
    clip_grad: float | None = None
    distribute_bn: bool = True  # average BatchNorm statistics over processes after each epoch
    amp: str = "auto"
    eval_amp: bool = True  # evaluate in the amp dtype too (false: fp32, the original's events)
    eval_batch_scale: float = 1.0  # evaluation batch per process: int(batch_size x this)
    eval_fold_bn: bool = True  # evaluate with BatchNorm folded into the convolutions
    eval_loss_mean: str = "image"  # eval loss: mean over images, or over batches of their means
    ema: bool = False
    ema_decay: float = 0.9998
    seed: int = 42
    # monitoring
    log_stage_stats: bool = False

    def __post_init__(self) -> None:
        if self.dataset in FOLDER_NAMES:
            self.dataset = "folder"
        if self.dataset not in DATASETS:
            raise UserError(unknown_dataset(self.dataset))
        for key, valid in (("neuron", NEURONS), ("lif_backend", BACKENDS)):
            if getattr(self, key) not in valid:
                raise UserError(
                    f"unknown {key} {getattr(self, key)!r}; choose one of {', '.join(valid)}"
                )
        if self.amp not in AMP_MODES:
            raise UserError(f"unknown amp mode {self.amp!r}; choose one of {', '.join(AMP_MODES)}")
        for name in ("epochs", "batch_size", "img_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.T is not None and self.T < 1:
            raise UserError(f"T must be at least 1 (or null for a non-spiking model), got {self.T}")
        for key in ("event_augment", "T_train"):
            if getattr(self, key) not in (None, False) and self.dataset not in EVENT_DATASETS:
                raise UserError(
                    f"{key} is for event frames; dataset {self.dataset!r} has none "
                    f"(event datasets: {', '.join(EVENT_DATASETS)})"
                )
        if self.erase_after_mix and self.dataset in EVENT_DATASETS:
            raise UserError(
                f"erase_after_mix is for images; dataset {self.dataset!r} gives event frames, "
                "which random erasing (reprob) does not touch"
            )
        from models.app.bands import check_band  # numpy: once a config is built

        try:
            size = self.img_size if self.dataset == "bands" else None
            self.band = list(check_band(self.band, size))
        except ValueError as err:
            raise UserError(str(err)) from err
        if self.band != list(DEFAULT_BAND) and self.dataset != "bands":
            raise UserError(f"band is for dataset bands, not {self.dataset!r}")
        if self.T_train is not None:
            if not 1 <= self.T_train <= (self.T or 0):
                raise UserError(f"T_train must be between 1 and T ({self.T}), got {self.T_train}")
        check_values(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain-container copy, as saved in ``config.yaml`` and in checkpoints."""
        return dataclasses.asdict(self)


def _in_range(value: float, low: float, high: float, brackets: str) -> bool:
    above = value >= low if brackets[0] == "[" else value > low
    below = value <= high if brackets[1] == "]" else value < high
    return above and below


def _number(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else f"{x:g}"


def _choose(key: str, value: str, valid: list[str] | tuple[str, ...]) -> None:
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"unknown {key} {value!r}; {hint}choose one of {', '.join(valid)}")


def check_values(cfg: TrainConfig) -> None:
    """Raise a :class:`UserError` for a value outside its key's choices or range."""
    from timm.optim import list_optimizers

    _choose("opt", cfg.opt.lower().removeprefix("lookahead_"), list_optimizers())
    for key, valid in CHOICES.items():
        _choose(key, getattr(cfg, key), valid)
    for key, (low, high, brackets) in RANGES.items():
        value = getattr(cfg, key)
        if value is not None and not _in_range(value, low, high, brackets):
            interval = f"{brackets[0]}{_number(low)}, {_number(high)}{brackets[1]}"
            raise UserError(f"{key} must be in {interval}, got {value}")
    for key, low_high in (("scale", (0.0, 1.0)), ("ratio", (0.0, math.inf))):
        pair = getattr(cfg, key)
        if len(pair) != 2 or not low_high[0] < pair[0] <= pair[1] <= low_high[1]:
            raise UserError(
                f"{key} must be [low, high] with {low_high[0]:g} < low <= high <= "
                f"{low_high[1]:g}, got {shown(pair)}"
            )
    in_chans = cfg.in_chans or DATASETS[cfg.dataset].in_chans
    for key in ("mean", "std"):
        values = getattr(cfg, key)
        if values is not None and len(values) not in (1, in_chans):
            raise UserError(
                f"{key} needs one value for all channels or one per input channel of "
                f"{cfg.dataset} ({in_chans}), got {shown(values)}"
            )
    if cfg.std is not None and min(cfg.std) <= 0:
        raise UserError(f"std must be positive, got {shown(cfg.std)}")


def config_keys() -> list[str]:
    """The valid keys, in definition order."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``models/app/configs``."""
    return shipped_names(CONFIG_DIR)


def _check_keys(values: dict[str, Any], origin: str) -> None:
    unknown = sorted(set(values) - set(config_keys()))
    if unknown:
        raise UserError(
            f"unknown config key(s) {', '.join(unknown)} in {origin}; "
            f"valid keys: {', '.join(config_keys())}"
        )


def read_recipe(name_or_path: str) -> dict[str, Any]:
    """Read a recipe (shipped name or YAML path) into a dict of validated keys."""
    path = named_yaml(name_or_path, CONFIG_DIR, "config")
    values = read_yaml_mapping(path, "config")
    _check_keys(values, str(path))
    return values


def _coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the type annotation of key ``name`` (YAML-parsed overrides)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise UserError(f"config key {name} may not be null")
    for kind in allowed:
        base = typing.get_origin(kind) or kind
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UserError(f"config key {name} must be a finite number, got {value}")
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is list and isinstance(value, list):
            (item,) = typing.get_args(kind)
            return [_coerce_item(name, item, v) for v in value]
        if base in (str, bool, dict) and isinstance(value, base):
            return value
    raise UserError(f"config key {name} expects {hint}, got {shown(value)}")


def _coerce_item(name: str, kind: type, value: Any) -> Any:
    """One element of a list-valued key (numbers: finite floats)."""
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif isinstance(value, kind):
        return value
    raise UserError(f"config key {name} expects a list of finite {kind.__name__}s, got "
                    f"{shown(value)}")


def _misread_mapping(value: Any) -> str | None:
    """A key YAML read from ``{key:value}`` without the space after the colon, if any."""
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None and isinstance(key, str) and ":" in key:
                return key
            if (found := _misread_mapping(item)) is not None:
                return found
    if isinstance(value, list):
        return next((f for f in map(_misread_mapping, value) if f is not None), None)
    return None


def parse_key_values(items: list[str], origin: str = "--set") -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML (``lr=1e-3``, ``aa=null``,
    ``model_kwargs={embed_dims: 64}``). ``origin`` names the source in errors."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{origin} expects key=value, got {item!r}")
        try:
            value = load_yaml(text) if text.strip() else None
        except yaml.YAMLError as err:
            problem = str(err).splitlines()[0]
            raise UserError(f"{origin} {item!r}: the value is not valid YAML ({problem})") from err
        misread = _misread_mapping(value)
        if misread is not None:
            fixed = misread.replace(":", ": ", 1)
            raise UserError(
                f"{origin} {item!r}: YAML reads {misread!r} as one key without a value; "
                f"write a space after the colon: {fixed!r}"
            )
        values[key.strip()] = value
    return values


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Config overrides from ``--set key=value`` strings (see :func:`parse_key_values`)."""
    values = parse_key_values(items, "--set")
    _check_keys(values, "--set")
    return values


def merge_keys(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``overrides``; ``model_kwargs`` merged key by key (an override of
    ``embed_dims`` keeps the recipe's ``mlp_ratio``)."""
    merged = {**base, **overrides}
    if isinstance(base.get("model_kwargs"), dict) and isinstance(overrides.get("model_kwargs"),
                                                                 dict):
        merged["model_kwargs"] = {**base["model_kwargs"], **overrides["model_kwargs"]}
    return merged


def build_config(base: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """Merge ``overrides`` into ``base`` (both dicts of valid keys, :func:`merge_keys`) and
    type-check the result."""
    merged = merge_keys(base, overrides)
    _check_keys(merged, "the configuration")
    return TrainConfig(**{k: _coerce(k, v) for k, v in merged.items()})


def check_saved_config(saved: Any, origin: str) -> dict[str, Any]:
    """The config a checkpoint saved, checked: a mapping with every key of :class:`TrainConfig`
    (a missing key would silently take its default, say another model or dataset)."""
    if not isinstance(saved, dict):
        raise UserError(f"{origin} holds no training config (a mapping under 'config')")
    saved = {**ADDED_KEYS, **saved}
    missing = [key for key in config_keys() if key not in saved]
    if missing:
        raise UserError(
            f"the config saved in {origin} lacks {', '.join(missing)}: it was not written by "
            "this version of maxformer train"
        )
    _check_keys(saved, origin)
    return saved


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Write the resolved configuration as YAML (whole or not at all)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def add_config_arguments(
    parser: argparse.ArgumentParser, option_names: tuple[str, ...], config_help: str,
    **changes: dict[str, Any],
) -> None:
    """``--config``, the shared options ``option_names`` that set config keys, and ``--set``."""
    parser.add_argument(
        "--config", metavar="NAME_OR_PATH",
        help=f"{config_help}; shipped: {', '.join(recipe_names())}",
    )
    add_options(parser, *option_names, **changes)
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
        help="override any config key; VALUE is YAML (e.g. --set aa=null --set 'scale=[1,1]')",
    )


def config_from_args(
    args: argparse.Namespace,
    base: dict[str, Any] | None = None,
    combine: Callable[[dict[str, Any], dict[str, Any]], TrainConfig] | None = None,
) -> TrainConfig:
    """The config of a command line: ``base`` (default: the ``--config`` recipe, else digits)
    with the shared options, the command's own config flags and ``--set`` applied, merged by
    ``combine`` (default :func:`build_config`)."""
    overrides = config_overrides(args)
    for key in ("download", "log_stage_stats"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    overrides.update(parse_assignments(args.assignments))
    if overrides.get("data_dir") is not None:  # saved as an absolute path
        overrides["data_dir"] = str(Path(overrides["data_dir"]).expanduser().resolve())
    if base is None:
        base = read_recipe(args.config or "digits")
        if args.config is None and overrides.get("dataset", "digits") != "digits":
            base = {k: v for k, v in base.items() if k not in RECIPE_DATA_KEYS}
    cfg = (combine or build_config)(base, overrides)
    return dataset_defaults(cfg, size_given="img_size" in {**base, **overrides})


def dataset_defaults(cfg: TrainConfig, size_given: bool = True) -> TrainConfig:
    """``cfg`` with what its dataset brings where it says nothing (null): the classes and
    input channels, as found in an image folder; an image folder's mean and std (ImageNet's
    for colour pictures, a sample's for grey ones); and unless ``size_given``, the side of
    the dataset's images (an image folder's commonest)."""
    info = DATASETS[cfg.dataset]
    values: dict[str, Any] = {}
    nulls = [k for k in ("num_classes", "in_chans", "mean", "std") if getattr(cfg, k) is None]
    if info.folder and (nulls or not size_given):
        if cfg.data_dir is None:
            raise UserError(f"dataset {cfg.dataset} needs --data-dir (the folder that holds it)")
        try:
            facts = inspect_folder(Path(cfg.data_dir), "data_dir of the run's config")
        except FileNotFoundError as err:
            raise UserError(str(err)) from err
        grey = facts.in_chans == 1 and cfg.dataset == "folder"
        values = {"num_classes": len(facts.classes), "in_chans": 1 if grey else 3,
                  "mean": list(facts.mean if grey else info.mean),
                  "std": list(facts.std if grey else info.std)}
        size = facts.img_size
    elif info.folder:
        return cfg
    else:
        values = {"num_classes": info.num_classes, "in_chans": info.in_chans}
        size = info.img_size
    if "in_chans" in cfg.model_kwargs:
        values["in_chans"] = cfg.model_kwargs["in_chans"]
    if not size_given and size is not None:
        values["img_size"] = size
    changes = {k: v for k, v in values.items() if k == "img_size" or getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **changes) if changes else cfg


def describe_data(cfg: TrainConfig) -> str:
    """One line: the data a run chose (dataset, folder, classes, channels, size, mean, std)."""
    where = f" at {cfg.data_dir}" if cfg.data_dir else ""
    info = dataset_info(cfg)
    numbers = ", ".join(f"{v:g}" for v in info.mean), ", ".join(f"{v:g}" for v in info.std)
    return (f"dataset {cfg.dataset}{where}: {info.num_classes} classes, {info.in_chans} "
            f"channel{'s' if info.in_chans > 1 else ''}, {cfg.img_size}x{cfg.img_size} px, "
            f"mean [{numbers[0]}], std [{numbers[1]}]")


def dataset_info(cfg: TrainConfig) -> DatasetInfo:
    """The classes, channels and normalisation a model of ``cfg`` is built and fed for: the
    config's, else its dataset's (an image folder's as found in it)."""
    cfg, known = dataset_defaults(cfg), DATASETS[cfg.dataset]
    return DatasetInfo(cfg.num_classes, cfg.in_chans, tuple(cfg.mean or known.mean),
                       tuple(cfg.std or known.std))
