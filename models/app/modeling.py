"""Building a model by its timm name (one way for every command), and mixed precision."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

from models.app.config import TrainConfig
from models.app.datasets import DatasetInfo
from models.app.errors import UserError
from models.checkpoint import (
    CheckpointError,
    describe_mismatch,
    load_checkpoint,
    map_by_order,
    non_finite_tensors,
    order_misfit,
    unwrap_state_dict,
)
from models.zoo import SpikingBackbone, zoo_model_names

LISTED_KEYS = 5
"""How many keys an error names before it says how many more there are."""


def check_model_name(name: str) -> None:
    """Raise a `UserError` naming close matches and the zoo's models unless timm knows
    `name` (the zoo is registered by importing `models`)."""
    if timm.is_model(name):
        return
    ours = zoo_model_names()
    close = difflib.get_close_matches(name, dict.fromkeys(ours + timm.list_models()), n=5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"unknown model {name!r}; {hint}models of the zoo: {', '.join(ours)} "
        "(any timm model name also works)"
    )


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    T: int | None = None,
    neuron: str = "lif",
    lif_backend: str = "auto",
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model(name, ...)`` with the arguments that are given (not None).

    ``neuron`` and ``lif_backend`` go to the zoo's models (``model_kwargs`` may override
    them); a model from elsewhere in timm takes neither, and ``T`` only when it is spiking.
    """
    check_model_name(name)
    ours = name.split(".")[0] in zoo_model_names()
    if not ours and neuron != "lif":
        raise UserError(f"neuron {neuron!r} applies to the zoo's models only, not to {name}")
    kwargs = {"neuron": neuron, "lif_backend": lif_backend} if ours else {}
    if model_kwargs:
        check_model_kwargs(name, model_kwargs)
        kwargs.update(model_kwargs)
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans), ("T", T)):
        if value is not None:
            kwargs[key] = value
    try:
        return timm.create_model(name, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # RuntimeError: a negative width
        raise UserError(
            f"cannot build {name} with {kwargs}: {err} (set T: null for a non-spiking model; "
            "check model_kwargs)"
        ) from err


def constructor_arguments(name: str) -> tuple[str, list[str]]:
    """The class that ``timm.create_model(name)`` builds and the keyword arguments its
    constructor names (through base classes where one passes ``**kwargs`` on)."""
    with torch.device("meta"):  # shapes only: no memory, no weights read
        cls = type(timm.create_model(name))
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is nn.Module:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY,
                                                            p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return cls.__name__, list(dict.fromkeys(names))


def check_model_kwargs(name: str, model_kwargs: Mapping[str, Any]) -> None:
    """Raise a :class:`UserError` unless every key of ``model_kwargs`` is an argument of the
    model's own constructor: keys of timm's factory (``checkpoint_path``, ``pretrained``,
    ``pretrained_cfg_overlay``, ...) would make it read other files."""
    if not isinstance(model_kwargs, Mapping):
        raise UserError(f"model_kwargs must be a mapping of argument names to values, "
                        f"got {model_kwargs!r}")
    cls, valid = constructor_arguments(name)
    unknown = [key for key in model_kwargs if key not in valid]
    if unknown:
        raise UserError(
            f"model_kwargs {', '.join(map(str, unknown))} not arguments of {cls} ({name}); "
            f"its arguments: {', '.join(valid)}"
        )


def model_for_config(cfg: TrainConfig, info: DatasetInfo) -> nn.Module:
    """The model of a training config for a dataset, with ``cfg.pack_saved_spikes`` set on
    the zoo's models."""
    model = create_model(
        cfg.model, num_classes=info.num_classes, in_chans=info.in_chans, T=cfg.T,
        neuron=cfg.neuron, lif_backend=cfg.lif_backend, model_kwargs=cfg.model_kwargs,
    )
    if isinstance(model, SpikingBackbone):
        model.pack_saved_spikes = cfg.pack_saved_spikes
    return model


def _listed(keys: list[str]) -> str:
    more = f", and {len(keys) - LISTED_KEYS} more" if len(keys) > LISTED_KEYS else ""
    return ", ".join(keys[:LISTED_KEYS]) + more


def load_weights(model: nn.Module, checkpoint: Mapping[str, Any], path: Path) -> None:
    """``models.load_checkpoint(model, checkpoint, strict=True)`` for ``checkpoint`` read from
    ``path``: by name, or a file saved by older code (other names) by order
    (:func:`models.checkpoint.map_by_order`, one log line). A mismatch, or weights holding NaN
    or infinity, is a one-line :class:`CheckpointError` that starts with ``path``."""
    try:
        state_dict = unwrap_state_dict(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    missing, unexpected, wrong_shape = describe_mismatch(state_dict, model)
    problems = [(label, keys) for label, keys in (
        ("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
    if problems:
        misfit = order_misfit(state_dict, model)
        if misfit is not None:
            listed = "; ".join(f"{len(keys)} {label}: {_listed(keys)}" for label, keys in problems)
            raise CheckpointError(f"{path} does not fit {type(model).__name__}: {listed}; nor "
                                  f"in the original order: {misfit}")
        state_dict = map_by_order(state_dict, model, str(path))
    bad = non_finite_tensors(state_dict)
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN or infinity in {_listed(bad)}); it is not a "
            "usable checkpoint (a diverged run?)"
        )
    load_checkpoint(model, state_dict, strict=True)


def check_input(model: nn.Module, sample: torch.Tensor, what: str) -> None:
    """Run ``model`` once on one sample ``[C, H, W]`` (or frames ``[T, C, H, W]``) of the data,
    in eval mode without gradients, so that input the model cannot take (a size, channels or
    time steps it refuses, a backend that cannot run here) is a one-line :class:`UserError`
    before any work. ``what`` describes the input (dataset and size)."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            model(sample.unsqueeze(0).to(device))
    except torch.cuda.OutOfMemoryError:
        raise
    except (ValueError, RuntimeError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"{type(model).__name__} cannot run on {what} (one sample: {tuple(sample.shape)}): "
            f"{problem}"
        ) from err
    finally:
        model.train(was_training)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``amp`` mode: ``auto`` is bf16 on CUDA and off on the CPU;
    ``auto_fp16`` is fp16 (with a loss scaler) on CUDA and off on the CPU.

    bf16 is off on the CPU even where it is native (AVX512_BF16, AMX): measured on a Zen 4
    with AVX512_BF16 (benchmarks/RESULTS.md), it made the ``maxformer_cifar`` step 1.14x
    faster but the default digits run's 6.3x slower, oneDNN's bf16 convolution backward on
    2x2-pixel maps taking about 0.7 s a call."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if mode == "auto_fp16":
        return torch.float16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
