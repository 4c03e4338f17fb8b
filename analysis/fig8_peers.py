"""The paper's Fig. 8: the ~29M ImageNet models side by side, Grad-CAM of their last stage and
the spatial spectra of their layers.

Fig. 8 compares SDT-8-512, SWformer-8-512, MS-QKFormer-10-512 and Max-Former-10-512. The zoo
holds three of them; SWformer (Fang et al., ECCV 2024; github.com/bic-L/Spiking-Wavelet-
Transformer) is not in it, so its column says so. A model without `--checkpoint` runs on random
weights (untrained), with BatchNorm statistics of the images (fresh from its constructor it is
silent in eval mode), and the figure says so in its column title. Grad-CAM, layers and spectra
are those of ``maxformer spectra --cam`` (`models.gradcam`, `spectral`): one column per model,
one row per image, then the relative log amplitude against spatial frequency per map size (the
mean over the probed layers of a `spectral` stage) and, for all models together, the
high-frequency power ratio and the relative log amplitude at r = 1 against normalised depth.

Images: ``--dataset``/``--data-dir`` (held-out, class-stratified), ``--images DIR``, or by
default the two photographs that ship with scikit-learn (no download).

Run, with the published weights::

    python -m analysis.fig8_peers --out fig8 --dataset imagenet --data-dir /data/imagenet \\
        --samples 64 --cam 6 --checkpoint sdt_8_512=8_512.pth \\
        --checkpoint ms_qkformer_10_512=qkformer_10_512.pth \\
        --checkpoint maxformer_10_512=10-512-T4.pth.tar

and on random weights, small enough for a CPU: ``python -m analysis.fig8_peers --out fig8
--img-size 64 --T 1``. Writes ``fig8_peers.png`` and ``fig8_peers.json`` into a new or empty
``--out`` folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.datasets import load_sample_images
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.app.analysis.figures import CamRow, draw_cams, mean_profile
from models.app.analysis.images import ImageSet
from models.app.analysis.networks import Network, networks_from_args
from models.app.analysis.report import (
    layer_records,
    network_record,
    new_output_folder,
    write_json,
    write_png,
)
from models.app.analysis.spectra import cam_row, image_set, measure
from models.app.errors import UserError
from models.app.options import add_options, positive_int, resolve_device
from models.checkpoint import CheckpointError

FIG8 = {
    "sdt_8_512": "SDT-8-512",
    "swformer_8_512": "SWformer-8-512",
    "ms_qkformer_10_512": "MS-QKFormer-10-512",
    "maxformer_10_512": "Max-Former-10-512",
}
"""The models of Fig. 8, in its order: zoo name -> the paper's name."""

MISSING = {
    "swformer_8_512": "not in the zoo: its Frequency-Aware Token Mixer (Haar wavelets, negative "
    "spikes) would need a port with the original's keys and golden outputs "
    "(github.com/bic-L/Spiking-Wavelet-Transformer), a model of its own",
}
"""Models of Fig. 8 the zoo does not hold, and why."""

PNG, JSON = "fig8_peers.png", "fig8_peers.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.fig8_peers",
        description="Fig. 8: Grad-CAM and spatial spectra of SDT-8-512, MS-QKFormer-10-512 and "
        "Max-Former-10-512 side by side (SWformer-8-512 is not in the zoo).",
    )
    add_options(
        parser, "dataset", "data_dir", "img_size", "batch_size", "T", "lif_backend", "seed",
        "device", "no_progress",
        dataset={"help": "images from this dataset's held-out set (default: scikit-learn's two "
                 "sample photographs)"},
        img_size={"help": "input side (default: the models', 224)"},
        batch_size={"default": 16, "help": "images per forward pass (default: 16)"},
        T={"help": "time steps (default: the checkpoint's, else the model's)"},
        seed={"default": 0, "help": "seed of random weights and of the image sample "
              "(default: 0)"},
    )
    parser.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=FILE",
                        help=f"published weights of one model ({', '.join(_available())}); "
                        "repeat for each; a model without one runs on random weights")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="any folder of pictures instead of a dataset")
    parser.add_argument("--samples", type=positive_int, default=16, metavar="N",
                        help="images the spectra are measured on (default: 16)")
    parser.add_argument("--cam", type=positive_int, default=4, metavar="N",
                        help="images shown with Grad-CAM (default: 4)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="new or empty folder for fig8_peers.png and fig8_peers.json")
    args = parser.parse_args(argv)
    args.weights = _weights(parser, args.checkpoint)
    return args


def _available() -> list[str]:
    return [name for name in FIG8 if name not in MISSING]


def _weights(parser: argparse.ArgumentParser, pairs: Sequence[str]) -> dict[str, Path]:
    """``--checkpoint MODEL=FILE`` values as ``{model: file}``; a bad one is a usage error."""
    weights = {}
    for pair in pairs:
        model, sep, file = pair.partition("=")
        if not sep or model not in _available() or not file:
            parser.error(f"--checkpoint {pair!r}: expected MODEL=FILE with MODEL one of "
                         f"{', '.join(_available())}")
        if model in weights:
            parser.error(f"--checkpoint names {model} twice")
        weights[model] = Path(file)
    return weights


def sample_photographs() -> Path:
    """The folder of scikit-learn's sample photographs (`load_sample_images`: a temple in
    China and a flower, 427x640 RGB JPEG files inside the installed package)."""
    return Path(load_sample_images().filenames[0]).parent


def network_args(args: argparse.Namespace, model: str) -> argparse.Namespace:
    """The options of ``maxformer spectra --cam`` for one model of the figure."""
    weights = args.weights.get(model)
    return argparse.Namespace(**{
        **vars(args), "model": model, "checkpoint": [weights] if weights else None,
        "twins": False, "layers": None, "method": "radial", "cutoff": 0.5, "cam_layer": None,
        "time_mean": False,
    })


def measure_models(args: argparse.Namespace) -> dict[str, Any]:
    """Every available model: its network record, layer spectra and Grad-CAM row."""
    device = resolve_device(args.device)
    networks, layers, cams = [], [], []
    for model in _available():
        options = network_args(args, model)
        (network,) = networks_from_args(options)
        images = image_set(network, options)
        network = prepared(network, model, images, args.batch_size, device)
        spectra = measure(network, images, options, device)
        networks.append(network_record(network, images.source, len(images.items)))
        layers += layer_records(network, spectra)
        cams.append(cam_row(network, images, options, device))
        print(f"{network.label}: {network.weights}; {images.source}")
    return {"networks": networks, "layers": layers, "cams": cams}


def batchnorm_statistics(model: nn.Module, images: Dataset, batch_size: int,
                         device: torch.device) -> None:
    """The running statistics of every BatchNorm of ``model`` set to those of ``images``
    (``[C, H, W]`` each; the cumulative average over their batches, a forward pass in train
    mode without gradients); no weight changes. A network fresh from its constructor is silent
    in eval mode with BatchNorm's initial statistics (README), so its spectra would be empty."""
    norms = [m for m in model.modules() if getattr(m, "track_running_stats", False)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.to(device).train()
    with torch.no_grad():
        for batch, _ in DataLoader(images, batch_size=batch_size):
            model(batch.to(device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def prepared(network: Network, model: str, images: ImageSet, batch_size: int,
             device: torch.device) -> Network:
    """The network labelled with the paper's name; random weights get the BatchNorm statistics
    of the images (said in its ``weights``)."""
    network = dataclasses.replace(network, label=FIG8[model])
    if not network.random_weights:
        return network
    batchnorm_statistics(network.model, images.items, batch_size, device)
    count = len(images.items)
    return dataclasses.replace(network, weights=f"{network.weights}, BatchNorm statistics of "
                               f"{count} image{'s' if count != 1 else ''}")


def stage_profiles(layers: list[dict[str, Any]], network: str) -> dict[str, tuple[list, list]]:
    """Per stage (``"stage 2 (16x16)"``): the radii and the mean relative log amplitude of the
    network's probed layer outputs (`mean_profile`)."""
    analysed = [r for r in layers if r["network"] == network and r["output"] is not None]
    profiles: dict[str, tuple[list, list]] = {}
    for stage in sorted({r["stage"] for r in analysed}):
        records = [r for r in analysed if r["stage"] == stage]
        curves = [r["output"]["profile"] for r in records]
        height, width = records[0]["map_size"]
        profiles[f"stage {stage} ({height}x{width})"] = (
            curves[0]["radius"], mean_profile(curves).tolist())
    return profiles


def plot(result: dict[str, Any], path: Path) -> None:
    """The figure: a column per model of Fig. 8 (Grad-CAM rows, then its spectra per stage),
    then the spectra of all models against depth."""
    cams: list[CamRow] = result["cams"]
    records = {n["network"]: n for n in result["networks"]}
    rows = max(len(row.heat) for row in cams)
    fig = Figure(figsize=(2.6 * len(FIG8), 2.3 * rows + 5.6), layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[2.3 * rows, 2.6, 3.0])
    grid = top.subplots(rows, len(FIG8), squeeze=False)
    profile_axes = middle.subplots(1, len(FIG8), squeeze=False)[0]
    by_label = {row.network: row for row in cams}
    first = result["networks"][0]
    fig.suptitle(f"Fig. 8 models (~29M parameters): Grad-CAM of the last stage and spatial "
                 f"spectra; {first['image_count']} images at {first['img_size']} px",
                 fontsize=10)
    for column, (model, label) in enumerate(FIG8.items()):
        axes = grid[:, column]
        if model in MISSING:
            for ax in (*axes, profile_axes[column]):
                ax.set_axis_off()
            axes[0].set_title(label, fontsize=9)
            axes[0].text(0.5, 0.5, textwrap.fill(f"{label}: {MISSING[model]}", 30),
                         ha="center", va="center", fontsize=7, transform=axes[0].transAxes)
            continue
        row, record = by_label[label], records[label]
        weights = ("RANDOM WEIGHTS (untrained),\nBatchNorm statistics of the images"
                   if record["random_weights"] else textwrap.fill(record["weights"], 34))
        axes[0].set_title(f"{label}\n{weights}\nGrad-CAM of {row.layer}", fontsize=8,
                          color="red" if record["random_weights"] else "black")
        draw_cams(axes, row, caption="xlabel", fontsize=7)
        ax = profile_axes[column]
        colours = colormaps["viridis"]
        profiles = stage_profiles(result["layers"], label)
        for i, (stage, (radius, mean)) in enumerate(profiles.items()):
            ax.plot(radius, mean, color=colours(i / max(len(profiles) - 1, 1)), label=stage)
        ax.set(xlabel="radius (1 = Nyquist)", ylabel="relative log amplitude")
        ax.set_title(f"{label}: spectra per stage", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _plot_depth(result, bottom)
    write_png(path, fig, 90)


def _plot_depth(result: dict[str, Any], panel: Any) -> None:
    """High-frequency power ratio and relative log amplitude at r = 1 of every probed layer's
    output against normalised depth, one colour per model."""
    ax_ratio, ax_delta = panel.subplots(1, 2)
    colours = colormaps["tab10"]
    for index, network in enumerate(n["network"] for n in result["networks"]):
        layers = [r for r in result["layers"] if r["network"] == network and r["output"]]
        depth = [r["depth"] for r in layers]
        for key, ax in (("high_frequency_ratio", ax_ratio), ("delta_log_amplitude", ax_delta)):
            values = [np.nan if r["output"][key] is None else r["output"][key] for r in layers]
            ax.plot(depth, values, "o-", ms=2, lw=0.8, color=colours(index), label=network)
    ax_ratio.set(title="high-frequency power ratio (radius >= 0.5) of each probed layer",
                 xlabel="normalised depth", ylabel="share of non-DC power", ylim=(0, 1))
    ax_delta.set(title="relative log amplitude at r = 1", xlabel="normalised depth",
                 ylabel="log |F(1)| - log |F(0)|")
    for ax in (ax_ratio, ax_delta):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    ax_ratio.legend(fontsize=7)


def report(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The JSON report: the models, what is missing and why, every layer's spectrum and the
    Grad-CAM classes."""
    return {
        "figure": "Fig. 8: Grad-CAM and spatial spectra of the ~29M ImageNet models",
        "models": FIG8,
        "missing": MISSING,
        "networks": result["networks"],
        "cam": [{"network": row.network, "layer": row.layer, "classes": list(row.classes),
                 "labels": list(row.labels)} for row in result["cams"]],
        "layers": result["layers"],
        "settings": {key: str(value) if isinstance(value, Path) else value
                     for key, value in vars(args).items()
                     if key not in ("weights", "checkpoint")},
        "checkpoints": {model: str(path) for model, path in args.weights.items()},
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure the models, draw the figure, write the report; returns the report."""
    args = parse_args(argv)
    existed = args.out.exists()
    try:
        output = new_output_folder(args.out, "fig8")
        try:
            if args.images is None and args.dataset is None:
                args.images = sample_photographs()
            result = measure_models(args)
            summary = report(result, args)
            plot(result, output / PNG)
            write_json(output / JSON, summary)
        except BaseException:
            (output / PNG).unlink(missing_ok=True)
            if not existed and not any(output.iterdir()):
                output.rmdir()
            raise
    except (UserError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    print(f"wrote {PNG} and {JSON} to {output}")
    return summary


if __name__ == "__main__":
    main()
