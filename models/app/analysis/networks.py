"""The networks ``maxformer spectra`` analyses: training checkpoints, published weights, timm
model names (random weights), ``module:function`` callables, and the zoo's twins."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from models.app.config import TrainConfig, build_config, dataset_info
from models.app.datasets import DATASETS
from models.app.errors import UserError
from models.app.modeling import create_model, model_for_config
from models.checkpoint import (
    CheckpointError,
    describe_mismatch,
    load_checkpoint,
    read_checkpoint,
    unwrap_state_dict,
)
from models.layers import TWINS
from models.zoo import SpikingBackbone


@dataclass(frozen=True)
class Network:
    """One network to analyse and what the report says about it.

    ``model_name`` is the timm name or ``module:function``; ``neuron`` the zoo's neuron
    (lif, if, relu, qcfs, if_converted), None for other models; ``config`` the training
    config of a ``maxformer train`` (or ``maxformer convert``) checkpoint; ``img_size`` its
    input side (None: unknown); ``converted_from`` the ANN checkpoint a converted network
    came from.
    """

    label: str
    model: nn.Module
    model_name: str
    neuron: str | None
    weights: str
    random_weights: bool
    config: dict[str, Any] | None
    img_size: int | None
    twin_of: str | None = None
    converted_from: str | None = None

    @property
    def runner(self) -> nn.Module:
        """What maps the network's images to logits: the model, or for a converted network
        the model run its ``T`` steps in chunks (memory of one chunk; exact gradients)."""
        if self.neuron != "if_converted":
            return self.model
        from models.conversion import ChunkedNetwork

        return ChunkedNetwork(self.model, self.model.T)


def is_callable_spec(name: str) -> bool:
    """Whether ``--model`` names a ``module:function`` (timm names have no colon)."""
    return ":" in name


def load_callable(spec: str) -> nn.Module:
    """The module that ``module:function`` (a module path or a ``.py`` file) returns."""
    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name.isidentifier():
        raise UserError(f"--model {spec}: expected module:function (a module path or a .py "
                        "file, a colon, a function name), e.g. mynets.py:small_net")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise UserError(f"--model {spec}: no file {path}")
        found = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(found)
        try:
            found.loader.exec_module(module)
        except Exception as err:
            raise UserError(f"--model {spec}: running {path} raised "
                            f"{type(err).__name__}: {err}") from err
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise UserError(f"--model {spec}: cannot import {module_name} ({err})") from err
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"--model {spec}: {module_name} has no function {function_name!r}")
    required = [p.name for p in inspect.signature(function).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                        p.KEYWORD_ONLY)]
    if required:
        raise UserError(f"--model {spec}: {function_name}() has required arguments "
                        f"({', '.join(required)}); give a function that takes none")
    try:
        model = function()
    except Exception as err:
        raise UserError(f"--model {spec}: {function_name}() raised "
                        f"{type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_strictly(model: nn.Module, checkpoint: dict, source: str, label: str) -> None:
    """Load ``checkpoint`` (read from ``source``) into ``model`` with ``strict=True``; a
    mismatch is one line."""
    try:
        load_checkpoint(model, checkpoint, strict=True)
    except CheckpointError as err:
        try:
            missing, unexpected, wrong = describe_mismatch(unwrap_state_dict(checkpoint), model)
        except CheckpointError:
            raise CheckpointError(f"{source}: {err}") from err
        parts = [f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in (
            ("missing keys", missing), ("unexpected keys", unexpected),
            ("wrong shapes", wrong)) if keys]
        raise UserError(f"{source} does not fit {label}: {'; '.join(parts)}") from err


def _info(dataset: str | None) -> dict[str, int]:
    """Classes and input channels of the models built for ``dataset`` (None: the model's)."""
    if dataset is None:
        return {}
    info = DATASETS[dataset]
    return {"num_classes": info.num_classes, "in_chans": info.in_chans}


def _build(name: str, args: argparse.Namespace, dataset: str | None) -> nn.Module:
    """``--model`` as a timm model for ``dataset``'s classes and channels, or a callable's."""
    if is_callable_spec(name):
        return load_callable(name)
    return create_model(name, T=args.T, lif_backend=args.lif_backend or "auto",
                        **_info(dataset))


def _default_size(name: str) -> int | None:
    """The input side of timm model ``name``'s pretrained config (None if it has none)."""
    pretrained = None if is_callable_spec(name) else timm.models.get_pretrained_cfg(
        name.split(".")[0])
    return pretrained.input_size[-1] if pretrained is not None else None


def _config_model(cfg: TrainConfig) -> nn.Module:
    """The model of a training config, for its dataset's classes and channels."""
    return model_for_config(cfg, dataset_info(cfg))


def _short(path: Path) -> str:
    """A checkpoint's file name with its folder's, for labels (the report keeps the path)."""
    return str(Path(path.parent.name) / path.name)


def _from_checkpoint(path: Path, args: argparse.Namespace) -> Network:
    checkpoint = read_checkpoint(path)
    saved = checkpoint.get("config")
    if isinstance(saved, dict):
        overrides = {key: getattr(args, key) for key in ("T", "lif_backend")
                     if getattr(args, key) is not None}
        cfg = build_config(saved, overrides)
        if args.model is not None and args.model != cfg.model:
            raise UserError(f"{path} was trained as {cfg.model}, not --model {args.model}")
        label = f"{cfg.model} ({_short(path)})"
        model = _config_model(cfg)
        load_strictly(model, checkpoint, str(path), label)
        conversion = checkpoint.get("conversion")
        source = conversion.get("source") if isinstance(conversion, dict) else None
        weights = (f"converted weights from {path} (ANN: {source})" if source else
                   f"trained weights from {path}")
        return Network(label, model, cfg.model, cfg.neuron, weights, False, cfg.to_dict(),
                       args.img_size or cfg.img_size, converted_from=source)
    if args.model is None:
        raise UserError(
            f"{path} holds no training config (it was not written by maxformer train): give "
            "--model NAME to read it as that model's weights")
    if args.dataset is None and args.images is None:
        raise UserError(f"{path} holds no training config: say which images to use with "
                        "--dataset or --images")
    label = f"{args.model} ({_short(path)})"
    model = _build(args.model, args, args.dataset)
    load_strictly(model, checkpoint, str(path), label)
    neuron = "lif" if isinstance(model, SpikingBackbone) else None
    return Network(label, model, args.model, neuron, f"weights from {path}", False, None,
                   args.img_size or _default_size(args.model))


def _from_name(args: argparse.Namespace) -> Network:
    name = args.model
    torch.manual_seed(args.seed)
    model = _build(name, args, None if args.images else args.dataset or "digits")
    if is_callable_spec(name):
        weights, random = f"the weights {name} gave it", False
    else:
        weights, random = "random weights (untrained, no checkpoint)", True
    neuron = "lif" if isinstance(model, SpikingBackbone) else None
    return Network(name, model, name, neuron, weights, random, None,
                   args.img_size or _default_size(name))


def twin(network: Network, neuron: str, args: argparse.Namespace) -> Network:
    """``network`` (a zoo model) with ``neuron`` instead of its own, with the same weights."""
    if not isinstance(network.model, SpikingBackbone):
        raise UserError(f"--twins applies to the zoo's models; {network.label} is a "
                        f"{type(network.model).__name__}")
    if network.neuron == "qcfs":
        raise UserError(f"--twins: {network.label} has neuron qcfs, whose trained clips "
                        "(threshold keys) its lif, if and relu twins have no place for; compare "
                        "it with its conversion instead (maxformer convert, then --checkpoint "
                        "of both)")
    if network.neuron == "if_converted":
        source = f" (--checkpoint {network.converted_from})" if network.converted_from else ""
        raise UserError(f"--twins: {network.label} is a converted network: its thresholds are "
                        "folded into its weights, which therefore do not run as lif, if or relu "
                        f"twins; compare it with the ANN it was converted from{source}")
    if network.config is not None:
        model = _config_model(build_config(network.config, {"neuron": neuron}))
    else:
        head = network.model.get_classifier()
        model = create_model(network.model_name, T=args.T, neuron=neuron,
                             lif_backend=args.lif_backend or "auto",
                             num_classes=getattr(head, "out_features", 0),
                             in_chans=network.model.in_chans)
    load_strictly(model, network.model.state_dict(), f"the weights of {network.label}",
                  f"its {neuron} twin")
    return dataclasses.replace(network, label=f"{network.label} [{neuron} twin]", model=model,
                               neuron=neuron, twin_of=network.label)


def networks_from_args(args: argparse.Namespace) -> list[Network]:
    """Every network of the command line, each followed with ``--twins`` by its twins (the
    zoo's other neurons: a LIF network's IF and ReLU twins)."""
    if args.checkpoint:
        networks = [_from_checkpoint(path, args) for path in args.checkpoint]
    elif args.model is not None:
        networks = [_from_name(args)]
    else:
        raise UserError("give --checkpoint FILE (repeatable) or --model NAME")
    labels = [n.label for n in networks]
    networks = [
        dataclasses.replace(n, label=f"{n.label} #{i + 1}") if labels.count(n.label) > 1 else n
        for i, n in enumerate(networks)
    ]
    if args.twins:
        networks = [m for n in networks for m in (n, *(
            twin(n, other, args) for other in TWINS if other != n.neuron))]
    for network in networks:
        if network.img_size is None:
            raise UserError(f"give --img-size: the input size of {network.label} is unknown")
    return networks
