"""Spatial spectra of feature maps against depth, for timm models on real images.

Each model of ``--models`` is built with ``timm.create_model(name, pretrained=False, **kwargs)``
(random weights, nothing downloaded); a model is ``NAME`` or ``NAME:KEY=VALUE;KEY=VALUE`` with
YAML values, e.g. ``maxformer_cifar:mixers=[identity,avg_pool,ssa]``. The project's zoo is
registered; modules given to ``--import`` are imported first, for models registered
elsewhere. By default: a timm CNN (ResNet-18), Max-Former (CIFAR layout) and its variants
whose stage-2 mixer is avg-pooling or nothing instead of the depth-wise conv. The two
photographs that ship with scikit-learn (``china.jpg``, ``flower.jpg``) are centre-cropped,
resized to ``--size`` and normalised with the model's mean and std; the BatchNorm layers of
the random network take their statistics from them; `spectral.SpectrumProbe` records the
outputs of the modules chosen by ``--types`` and ``--names``.

Writes ``feature_spectra.png``, with (a) the relative log amplitude at the highest
frequency and (b) the high-frequency power ratio against normalised depth (0 = first probed
layer, 1 = last) for every model, and (c) the relative log amplitude against frequency at
each depth of the first model; and ``feature_spectra.json`` with the numbers. Figures are
drawn without pyplot, on matplotlib's headless Agg canvas.
Run ``python -m analysis.feature_spectra --help``.
"""

import argparse
import importlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm
import torch
import yaml
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from sklearn.datasets import load_sample_images
from torch import nn
from torch.nn import functional

import models  # noqa: F401  (registers the Max-Former zoo with timm)
from spectral import LayerSpectrum, SpectrumProbe


def module_types(names: Sequence[str]) -> tuple[type, ...]:
    """``torch.nn`` classes from their names, e.g. ``["Conv2d"]``."""
    known = sorted(n for n, v in vars(nn).items() if isinstance(v, type) and n[0].isupper())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown torch.nn module types {unknown}; choose from {known}")
    return tuple(getattr(nn, name) for name in names)


def prepare_images(
    photos: Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Photographs ``[H, W, 3]`` (uint8, same size) as a normalised batch ``[N, 3, size, size]``."""
    images = torch.as_tensor(np.stack(photos)).permute(0, 3, 1, 2)
    side = min(images.shape[-2:])
    top, left = (images.shape[-2] - side) // 2, (images.shape[-1] - side) // 2
    images = images[..., top : top + side, left : left + side].float() / 255.0
    images = functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    return (images - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def finite_or_none(value: float | None) -> float | None:
    """JSON has no nan or inf: write them as null."""
    return value if value is not None and math.isfinite(value) else None


def layer_record(layer: LayerSpectrum, depth: float | None) -> dict:
    return {
        "name": layer.name,
        "shape": list(layer.shape),
        "depth": depth,
        "delta_log_amplitude": finite_or_none(layer.delta_log_amplitude),
        "high_frequency_ratio": finite_or_none(layer.high_frequency_ratio),
        "firing_rate": layer.firing_rate,
        "skipped": layer.skipped,
    }


DEFAULT_MODELS = [
    "resnet18",
    "maxformer_cifar",
    "maxformer_cifar:mixers=[identity,avg_pool,ssa]",
    "maxformer_cifar:mixers=[identity,identity,ssa]",
]


def model_spec(spec: str) -> tuple[str, dict]:
    """``"NAME:KEY=VALUE;KEY=VALUE"`` (YAML values) -> ``(NAME, {KEY: VALUE})``."""
    name, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"model {spec!r}: expected NAME:KEY=VALUE;KEY=VALUE, got {item!r}")
        kwargs[key] = yaml.safe_load(value)
    return name, kwargs


def probe_model(
    spec: str, photos: Sequence[np.ndarray], args: argparse.Namespace
) -> list[LayerSpectrum]:
    name, kwargs = model_spec(spec)
    torch.manual_seed(args.seed)
    model = timm.create_model(name, pretrained=False, **kwargs)
    config = timm.data.resolve_model_data_config(model)
    images = prepare_images(photos, args.size, config["mean"], config["std"])
    calibrate_batchnorm(model, images)
    probe = SpectrumProbe(model, module_types(args.types), args.names, cutoff=args.cutoff)
    return probe.run(images)


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor) -> None:
    """Give a randomly initialised model the BatchNorm statistics of ``images`` (one forward
    pass in training mode), so that its layers, and its spiking neurons, see normalised
    inputs; leaves the model in eval mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()


def depths(layers: list[LayerSpectrum]) -> list[float | None]:
    """Normalised depth in [0, 1] of each analysed layer (None for skipped ones)."""
    count = sum(layer.skipped is None for layer in layers)
    steps = iter(np.linspace(0.0, 1.0, count) if count > 1 else [0.0])
    return [None if layer.skipped else float(next(steps)) for layer in layers]


def plot(results: dict[str, list[LayerSpectrum]], cutoff: float, path: Path) -> None:
    fig = Figure(figsize=(16, 5), layout="constrained")
    ax_dla, ax_hfr, ax_curves = fig.subplots(1, 3)
    for name, layers in results.items():
        kept = [
            (d, layer) for d, layer in zip(depths(layers), layers, strict=True) if d is not None
        ]
        depth = [d for d, _ in kept]
        ax_dla.plot(depth, [layer.delta_log_amplitude for _, layer in kept], "o-", label=name)
        ax_hfr.plot(depth, [layer.high_frequency_ratio for _, layer in kept], "o-", label=name)
    ax_dla.set(
        title="(a) relative log amplitude at the highest frequency",
        xlabel="normalised depth",
        ylabel="log |F(r_max)| - log |F(0)|",
    )
    ax_hfr.set(
        title=f"(b) high-frequency power ratio (radius >= {cutoff:g})",
        xlabel="normalised depth",
        ylabel="share of non-DC power",
        ylim=(0, 1),
    )
    first = next(iter(results))
    colors = colormaps["viridis"]
    for depth, layer in zip(depths(results[first]), results[first], strict=True):
        if depth is not None:
            ax_curves.plot(layer.radii, layer.profile, color=colors(depth), lw=1)
    fig.colorbar(ScalarMappable(cmap=colors), ax=ax_curves, label=f"normalised depth ({first})")
    ax_curves.set(
        title=f"(c) relative log amplitude, {first}",
        xlabel="spatial frequency (1 = Nyquist along an axis)",
        ylabel="log |F(r)| - log |F(0)|",
    )
    for ax in (ax_dla, ax_hfr):
        ax.legend(fontsize=8)
    for ax in (ax_dla, ax_hfr, ax_curves):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.feature_spectra",
        description="Spatial spectra of feature maps against depth, for timm models.",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=DEFAULT_MODELS,
        help="timm models, NAME or NAME:KEY=VALUE;KEY=VALUE (default: %(default)s)",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="modules to import first, e.g. 'models' to register its timm models",
    )
    parser.add_argument(
        "--types",
        nargs="*",
        default=["Conv2d"],
        help="torch.nn module types to probe (default: %(default)s)",
    )
    parser.add_argument(
        "--names",
        nargs="*",
        default=[],
        help="fnmatch patterns of module names to probe as well, e.g. 'layer*.act2'",
    )
    parser.add_argument("--size", type=int, default=224, help="image side (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every model's random weights (default: 0)"
    )
    parser.add_argument(
        "--cutoff",
        type=float,
        default=0.5,
        help="radius of the high-frequency band, 1 = Nyquist (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/feature_spectra"),
        help="output folder (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    for module in args.imports:
        importlib.import_module(module)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = load_sample_images()
    results = {name: probe_model(name, photos.images, args) for name in args.models}
    plot(results, args.cutoff, args.out / "feature_spectra.png")
    report = {
        "settings": vars(args),
        "images": [Path(name).name for name in photos.filenames],
        "models": {
            name: [layer_record(*pair) for pair in zip(layers, depths(layers), strict=True)]
            for name, layers in results.items()
        },
    }
    (args.out / "feature_spectra.json").write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
