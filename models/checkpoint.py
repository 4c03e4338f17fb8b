"""Safe loading of the published checkpoints (and of our own) into the model zoo.

Files are read with `torch.load(weights_only=True)`: tensors, plain containers and numbers,
plus the one class the original training scripts store, `argparse.Namespace` (their `args`).
Anything else in a pickle, such as a callable that would run code, is refused. A file in
`torch.save`'s zip format has its records' CRC-32 checked first (`torch.load` does not), so
damaged bytes are refused instead of loading as wrong weights.
"""

import argparse
import contextlib
import functools
import itertools
import logging
import os
import pickle
import zipfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.module import _IncompatibleKeys

from models.bounded import expanded_size

SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
"""Classes allowed in a checkpoint besides tensors, containers and numbers."""

_WRAPPER_KEYS = ("state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")

LAYOUTS = Path(__file__).parent / "layouts"
"""The original code's state-dict layouts (`key<TAB>shape` per line, in its order), one file per
published configuration."""

_logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely, or does not fit the model."""


@contextlib.contextmanager
def safe_checkpoint_globals() -> Iterator[None]:
    """Within this context `torch.load(weights_only=True)` also accepts `SAFE_GLOBALS`."""
    with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
        yield


def verify_integrity(path: str | os.PathLike) -> None:
    """Check the CRC-32 of every record of a zip-format checkpoint (what `torch.save` writes);
    raise :class:`CheckpointError` for a damaged one. Files in torch's legacy format carry no
    checksums and pass unchecked."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(
            f"cannot read {os.fspath(path)!r}: damaged zip archive ({err})"
        ) from err
    if damaged is not None:
        raise CheckpointError(
            f"{os.fspath(path)!r} is damaged: its record {damaged!r} fails the CRC-32 check "
            "(the bytes changed after the file was written)"
        )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file on the CPU without running code from it; a missing, damaged,
    unreadable or unsafe file raises :class:`CheckpointError`."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint file at {os.fspath(path)!r}")
    verify_integrity(path)
    try:
        with safe_checkpoint_globals():
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # a class or function the pickle names
            raise CheckpointError(
                f"refused to load {os.fspath(path)!r}: it holds objects other than tensors, "
                f"plain containers and {', '.join(c.__qualname__ for c in SAFE_GLOBALS)} "
                "(loading it could run code)"
            ) from err
        raise _unreadable(path, "unreadable pickle data") from err
    except MemoryError:
        raise
    except Exception as err:  # torn bytes fail anywhere in the unpickler or the zip reader
        raise _unreadable(path, str(err) or type(err).__name__) from err
    if expanded_size(checkpoint, _pickle_children, PICKLE_ITEMS) > PICKLE_ITEMS:
        raise CheckpointError(
            f"refused {os.fspath(path)!r}: its containers, shared ones counted each time they "
            f"are used, hold more than {PICKLE_ITEMS} values"
        )
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{os.fspath(path)!r} holds a {type(checkpoint).__name__}, not a state dict"
        )
    return dict(checkpoint)


PICKLE_ITEMS = 10_000_000
"""The most values (a tensor is one) a checkpoint may hold: a pickle that shares one list
many times over names billions of values in a few kB, which a message or a copy would walk."""


def _pickle_children(value: Any) -> Iterable[Any] | None:
    """The values a container of a checkpoint holds (None for anything else: a tensor, a
    number, a string)."""
    if isinstance(value, Mapping):
        return (part for pair in value.items() for part in pair)
    if isinstance(value, (list, tuple, set)):
        return value
    if isinstance(value, argparse.Namespace):
        return vars(value).values()
    return None


def _unreadable(path: str | os.PathLike, detail: str) -> CheckpointError:
    first = detail.strip().splitlines()[0][:120]
    return CheckpointError(
        f"cannot read {os.fspath(path)!r} ({first}): the file is truncated, corrupt or not a "
        "PyTorch checkpoint"
    )


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: a bare state dict, `{"state_dict": ...}` or
    `{"model": ...}`, with `module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes
    removed."""
    for key in _WRAPPER_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(
                f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor; expected a "
                f"state dict, optionally under one of {_WRAPPER_KEYS}"
            )
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        state_dict[key] = value
    return state_dict


def non_finite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Names (dotted paths) of the floating-point tensors holding NaN or infinity anywhere in
    `obj`: a tensor, or nested mappings and sequences of them (a state dict, an optimizer's
    state, a whole checkpoint)."""
    if isinstance(obj, Tensor):
        bad = obj.is_floating_point() or obj.is_complex()
        return [prefix or "tensor"] if bad and not bool(torch.isfinite(obj).all()) else []
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return []
    found = []
    for key, value in items:
        found += non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    return found


@functools.cache
def _layout_orders() -> tuple[tuple[str, ...], ...]:
    """Key order of every layout in `LAYOUTS`."""
    orders = []
    for path in sorted(LAYOUTS.glob("*.tsv")):
        _, *lines = path.read_text().splitlines()
        orders.append(tuple(line.split("\t", 1)[0] for line in lines))
    return tuple(orders)


def original_key_order(model: nn.Module, extra: Collection[str] = ()) -> list[str]:
    """The model's state-dict keys and ``extra`` (entries a file may hold that the model
    lacks, such as a classifier it has none of) in the original code's order: that of the
    layout in `LAYOUTS` with exactly these keys, or the model's own order (``extra`` last)
    when none has them."""
    keys = list(model.state_dict())
    keys += [key for key in extra if key not in keys]
    for order in _layout_orders():
        if len(order) == len(keys) and set(order) == set(keys):
            return list(order)
    return keys


def _shape(tensor: Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _fits(tensor: Tensor, target: Tensor | None, replaced: bool) -> bool:
    """Whether ``tensor`` may fill the model's entry ``target`` (None: the model has none). A
    ``replaced`` entry (a classifier timm drops afterwards) needs only the same trailing
    dimensions, the classes aside."""
    if not replaced:
        return target is not None and tensor.shape == target.shape
    return target is None or (tensor.ndim == target.ndim and tensor.shape[1:] == target.shape[1:])


def _entry(name: str, expected: Mapping[str, Tensor]) -> str:
    return f"{name!r} {_shape(expected[name])}" if name in expected else repr(name)


def order_misfit(
    state_dict: Mapping[str, Tensor], model: nn.Module, replaced: Collection[str] = ()
) -> str | None:
    """Why ``state_dict``, read in file order, does not fit the original layout of ``model``
    (`original_key_order`) tensor by tensor, naming the first misfit; None when it fits.
    ``replaced``: classifier entries whose classes may differ (or that the model lacks)."""
    expected = model.state_dict()
    order = original_key_order(model, replaced)
    pairs = itertools.zip_longest(state_dict.items(), order)
    for index, (item, name) in enumerate(pairs):
        if item is None:
            return f"the file ends after {len(state_dict)} tensors, before {_entry(name, expected)}"
        if name is None:
            return f"tensor {index} {item[0]!r} {_shape(item[1])} is one more than {len(order)}"
        if not _fits(item[1], expected.get(name), name in replaced):
            return (f"tensor {index} {item[0]!r} {_shape(item[1])} does not fit "
                    f"{_entry(name, expected)}")
    return None


def map_by_order(
    state_dict: Mapping[str, Tensor],
    model: nn.Module,
    source: str = "checkpoint",
    replaced: Collection[str] = (),
) -> dict[str, Tensor]:
    """`state_dict` renamed to the model's keys by position, as the original's `load_old_ckpt`
    reads the files saved by older code: the i-th tensor of the file becomes the i-th entry of
    the original layout (`original_key_order`). Every shape must equal its entry's (a
    ``replaced`` classifier's only past the classes) and the counts must be equal, or
    :class:`CheckpointError` names the first mismatch in one line; success is said in one log
    line (`source`, how many tensors)."""
    problem = order_misfit(state_dict, model, replaced)
    if problem is not None:
        expected = model.state_dict()
        missing = len(set(expected) - set(state_dict))
        unexpected = len(set(state_dict) - set(expected))
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__} by name ({missing} missing, "
            f"{unexpected} unexpected keys) nor in order: {problem}"
        )
    order = original_key_order(model, replaced)
    _logger.warning(
        "%s: names differ from %s's; loaded its %d tensors by order (every shape equals the "
        "original layout's, in order)",
        source,
        type(model).__name__,
        len(order),
    )
    return dict(zip(order, state_dict.values(), strict=True))


def _pretrained_source(model: nn.Module) -> str:
    """Where timm read the pretrained weights from (the model's `pretrained_cfg`)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("file") or cfg.get("url") or cfg.get("hf_hub_id") or "checkpoint")


def replaced_classifier(model: nn.Module) -> frozenset[str]:
    """The classifier entries timm's pretrained loading drops and leaves freshly initialised
    (`pretrained_cfg["classifier"]`, weight and bias): those of a model built for another
    number of classes than its pretrained weights (none otherwise)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifiers = cfg.get("classifier")
    if classifiers is None or getattr(model, "num_classes", None) == cfg.get("num_classes"):
        return frozenset()
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    return frozenset(f"{name}.{part}" for name in classifiers for part in ("weight", "bias"))


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """timm's pretrained filter: the model's state dict from a published checkpoint.

    Our classes keep the original key names, so the mapping is unwrapping and prefix removal;
    a file whose names differ (saved by older code) is mapped by order (`map_by_order`). For a
    model with another number of classes the classifier is left to timm, which drops it and
    keeps the model's fresh one (`replaced_classifier`), by name or by order alike.
    """
    state_dict = unwrap_state_dict(state_dict)
    replaced = replaced_classifier(model)
    if set(state_dict) - replaced == set(model.state_dict()) - replaced:
        return state_dict
    return map_by_order(state_dict, model, _pretrained_source(model), replaced)


def describe_mismatch(
    state_dict: Mapping[str, Tensor], model: nn.Module
) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys, and `key: checkpoint shape vs model shape` lines."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    return missing, unexpected, wrong_shape


def load_checkpoint(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Any], strict: bool = True
) -> _IncompatibleKeys:
    """Load a checkpoint file or an in-memory checkpoint into `model`.

    `source`: a path, a state dict, or a training checkpoint holding one under `"model"` or
    `"state_dict"`. Shape mismatches always fail; with `strict`, a file whose names differ from
    the model's is mapped by order (`map_by_order`) or refused. Errors list every mismatching
    key. Returns torch's missing / unexpected key lists.
    """
    checkpoint = source if isinstance(source, Mapping) else read_checkpoint(source)
    state_dict = unwrap_state_dict(checkpoint)
    if strict and state_dict.keys() != model.state_dict().keys():
        name = "checkpoint" if isinstance(source, Mapping) else repr(os.fspath(source))
        state_dict = map_by_order(state_dict, model, name)
    missing, unexpected, wrong_shape = describe_mismatch(state_dict, model)
    problems = [("wrong shape", wrong_shape)]
    if strict:
        problems += [("missing", missing), ("unexpected", unexpected)]
    report = [
        f"{label} ({len(keys)}):\n" + "\n".join(f"  {key}" for key in keys)
        for label, keys in problems
        if keys
    ]
    if report:
        raise CheckpointError(
            f"checkpoint does not fit {type(model).__name__}:\n" + "\n".join(report)
        )
    return model.load_state_dict(state_dict, strict=strict)
