"""Running ``maxformer spectra`` on one network: its images, the spectrum probe over them, and
Grad-CAM of its last stage."""

from __future__ import annotations

import argparse

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.app.analysis.figures import CamRow
from models.app.analysis.images import ImageSet, held_out_images, picture_folder
from models.app.analysis.networks import Network
from models.app.config import build_config, dataset_info
from models.app.datasets import DatasetInfo
from models.app.errors import UserError
from models.app.options import show_progress
from models.conversion import GatedMaxPool
from models.gradcam import grad_cam, last_map_layer
from models.layers import per_step
from models.layers.mixers import DepthwiseConvMixer, SpikingSelfAttention, TokenQKAttention
from models.neurons import MultiStepNeuron, MultiStepReLU
from spectral import LayerSpectrum, SpectrumProbe, first_tensor, is_spiking_neuron

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
               nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus)
"""Activation layers, probed with their input as the neurons they stand for in an ANN."""

NEURON_TYPES = (MultiStepNeuron, MultiStepReLU, *ACTIVATIONS)
"""Modules whose input is recorded beside their output (besides spikingjelly-like neurons)."""

POOLS = (nn.MaxPool2d, nn.AvgPool2d, GatedMaxPool)
MIXERS = (DepthwiseConvMixer, SpikingSelfAttention, TokenQKAttention)


def reset_states(model: nn.Module) -> None:
    """Reset stateful neurons (spikingjelly's nodes: `spectral.is_spiking_neuron` modules
    with a ``reset()`` method) before a forward pass; the zoo's neurons keep no state."""
    for module in model.modules():
        if is_spiking_neuron(module) and callable(getattr(module, "reset", None)):
            module.reset()


def membrane_input(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """What a neuron filters: its input, through the BatchNorm a zoo neuron is handed as
    ``norm`` (it applies it per time step before firing)."""
    x = first_tensor(module, args, kwargs)
    norm = kwargs.get("norm", args[1] if len(args) > 1 else None)
    if isinstance(module, (MultiStepNeuron, MultiStepReLU)) and isinstance(norm, nn.Module):
        return per_step(x, norm)
    return x


def saved_info(config: dict) -> DatasetInfo:
    """Classes, channels and normalisation of a network's saved training config."""
    return dataset_info(build_config(config, {}))


def input_channels(network: Network) -> int:
    """Channels of the network's images: its training dataset's, else its first conv's, else 3."""
    if network.config is not None:
        return saved_info(network.config).in_chans
    conv = next((m for m in network.model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def normalisation(network: Network) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std that pictures are normalised with for the network."""
    if network.config is not None:
        info = saved_info(network.config)
        return info.mean, info.std
    data = timm.data.resolve_model_data_config(network.model)
    return tuple(data["mean"]), tuple(data["std"])


def image_set(network: Network, args: argparse.Namespace) -> ImageSet:
    """The network's images: ``--images``, else ``--dataset``, else its checkpoint's dataset,
    else digits. Refuses images smaller than the network's patch grid (from timm's
    ``feature_info``: its last stage must keep at least one patch; layers whose maps are
    smaller than 2x2 are reported as skipped)."""
    size, grid = network.img_size, 1
    info = getattr(network.model, "feature_info", None)
    if info:
        reduction = int(info[-1]["reduction"])
        grid = size // reduction
        if grid < 1:
            raise UserError(
                f"images of {size}x{size} px are smaller than the patch grid of "
                f"{network.label}: its last stage downsamples by {reduction}; use --img-size "
                f"{reduction} or more")
    if args.images is not None:
        return picture_folder(args.images, args.samples, size, input_channels(network),
                              *normalisation(network), min_side=grid, seed=args.seed)
    own = network.config is not None and args.dataset in (None, network.config["dataset"])
    dataset = network.config["dataset"] if own else args.dataset or "digits"
    return held_out_images(dataset, args.samples, size, args.data_dir, args.T,
                           base=network.config if own else None, seed=args.seed)


def _forward(network: Network, images: torch.Tensor) -> torch.Tensor:
    """``network.runner(images)``; a network that cannot take them is a one-line error."""
    reset_states(network.model)
    try:
        return network.runner(images)
    except (RuntimeError, ValueError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{network.label} cannot run on images of shape "
                        f"{tuple(images.shape)}: {problem}") from err


def _probe(network: Network, args: argparse.Namespace) -> SpectrumProbe:
    model = network.model
    if args.layers:
        types, names = (), tuple(args.layers)
    else:
        spiking = tuple({type(m) for m in model.modules() if is_spiking_neuron(m)})
        types, names = (*NEURON_TYPES, *POOLS, *MIXERS, *spiking), ()
    try:
        return SpectrumProbe(model, types, names, neuron_types=NEURON_TYPES,
                             membrane_input=membrane_input, cutoff=args.cutoff,
                             method=args.method, time_mean=args.time_mean)
    except ValueError as err:
        modules = [name for name, _ in model.named_modules() if name][:12]
        what = f"--layers {' '.join(args.layers)}" if args.layers else "the default layers"
        raise UserError(f"{what} match no module of {network.label}; its modules include "
                        f"{', '.join(modules)}") from err


def measure(network: Network, images: ImageSet, args: argparse.Namespace,
            device: torch.device) -> list[LayerSpectrum]:
    """The spectrum of every probed layer of the network over all its images."""
    network.model.to(device).eval()
    probe = _probe(network, args)
    loader = DataLoader(images.items, batch_size=args.batch_size, shuffle=False)
    bar = tqdm(total=len(images.items), desc=network.label, unit="img",
               disable=not show_progress(args))
    with bar, probe, torch.no_grad():
        for batch, _ in loader:
            _forward(network, batch.to(device))
            probe.end_input()
            bar.update(len(batch))
    layers = probe.results
    if not any(layer.output is not None for layer in layers):
        reasons = sorted({layer.skipped for layer in layers})
        raise UserError(f"no probed layer of {network.label} outputs maps of 2x2 or more "
                        f"({'; '.join(reasons)[:300]})")
    return layers


def cam_layer(network: Network, images: torch.Tensor, name: str | None) -> str:
    """The layer Grad-CAM reads: ``name``, else the last stage of timm's ``feature_info`` (the
    last block of a stage that is a list of blocks), else the last module that outputs maps."""
    modules = dict(network.model.named_modules())
    if name is not None:
        if not name or name not in modules:
            raise UserError(f"--cam-layer {name!r} is no module of {network.label}; its modules "
                            f"include {', '.join(list(modules)[1:13])}")
        return name
    info = getattr(network.model, "feature_info", None)
    if info and info[-1]["module"] in modules:
        name = info[-1]["module"]
        while isinstance(modules[name], nn.ModuleList):
            name = f"{name}.{len(modules[name]) - 1}"
        return name
    reset_states(network.model)
    try:
        return last_map_layer(network.model, images)
    except ValueError as err:
        raise UserError(f"--cam: {err} in {network.label}; name one with --cam-layer") from err


def cam_row(network: Network, images: ImageSet, args: argparse.Namespace,
            device: torch.device) -> CamRow:
    """Grad-CAM of the network's last stage for its first ``args.cam`` images (the sample's
    order: one image per class first)."""
    count = min(args.cam, len(images.items))
    pairs = [images.items[i] for i in range(count)]
    batch = torch.stack([image for image, _ in pairs]).to(device)
    name = cam_layer(network, batch, args.cam_layer)
    reset_states(network.model)
    runner = network.runner  # a converted network's chunks: every call of the layer counts
    try:
        heat, classes = grad_cam(runner, batch, network.model.get_submodule(name),
                                 every_call=runner is not network.model)
    except ValueError as err:
        raise UserError(f"--cam on {network.label}, layer {name}: {err}") from err
    return CamRow(network.label, name, batch.cpu(), heat.detach().cpu(), classes.tolist(),
                  [int(label) for _, label in pairs])
