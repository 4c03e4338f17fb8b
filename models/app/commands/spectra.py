"""Frequency profile of trained networks: where a spiking network loses high frequencies.

For each probed layer, in depth order: the spatial spectrum of its output (maps averaged over
T, B and C), its radial power profile, relative log amplitude at every radius and
high-frequency power ratio; for a neuron also the spectrum of its membrane input (what it
filtered) beside its spikes, and its firing rate. Probed by default: every neuron (the zoo's,
spikingjelly's nodes, activations such as ReLU), pooling layer and token mixer (DWC, SSA, QK);
--layers picks others by name. Networks: training checkpoints (repeatable), published
weights (--checkpoint with --model), a model name alone (random weights, said so), any timm
model, or module:function returning an nn.Module that maps images [B, C, H, W] to logits
[B, K] (e.g. a spikingjelly network). --twins adds the IF and ReLU twins of a zoo model with
the same weights (the paper's Fig. 2). A converted network (maxformer convert) runs its --T
steps in chunks of 32, its state carried, so memory does not grow with T; --time-mean gives
the spectra of its firing-rate maps, which tend to the ANN's as T grows. Images: the
checkpoint's held-out set (digits need nothing), --dataset/--data-dir, or --images DIR (any
pictures, resized and centre-cropped).

Writes into a new folder (--output, never overwritten): spectra.json, spectra.png and, with
--cam, cam.png (Grad-CAM of the last stage, gradients through the surrogate for spiking
networks). --method diagonal gives Park & Kim's convention (see spectral.feature).

Examples:
  maxformer spectra --checkpoint runs/maxformer_cifar-digits-.../checkpoint-best.pt --twins --cam
  maxformer spectra --checkpoint a.pt --checkpoint b.pt --layers '*lif*' --method diagonal
  maxformer spectra --checkpoint converted.pt --checkpoint runs/relu/checkpoint-best.pt \\
      --T 256 --time-mean --cam
  maxformer spectra --model resnet18 --images ~/pictures --img-size 224
  maxformer spectra --model mynets:spikingjelly_vgg --img-size 32 --dataset cifar10 \\
      --data-dir ~/data
  maxformer spectra --model maxformer_10_384 --checkpoint 10-384-T4.pth.tar \\
      --dataset imagenet --data-dir /data/imagenet --samples 32
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from models.app.options import add_options, positive_int

if TYPE_CHECKING:
    from models.app.analysis.networks import Network
    from spectral import LayerSpectrum

DEFAULT_SAMPLES, DEFAULT_CAM_IMAGES = 64, 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer spectra``."""
    add_options(
        parser, "checkpoint", "model", "dataset", "data_dir", "img_size", "batch_size", "T",
        "lif_backend", "seed", "device", "no_progress",
        checkpoint={"action": "append", "help": "a maxformer train checkpoint, or published "
                    "weights with --model; repeat to compare networks"},
        model={"help": "timm model name (alone: random weights), or module:function (also "
               "path/to/file.py:function) returning an nn.Module"},
        dataset={"help": "images from this dataset's held-out set (default: the checkpoint's "
                 "own dataset, else digits)"},
        img_size={"help": "input side (default: the checkpoint's, else the model's)"},
        batch_size={"default": 32, "help": "images per forward pass (default: 32)"},
        T={"help": "time steps of the zoo's models (default: the checkpoint's or the model's)"},
        seed={"default": 0, "help": "seed of random weights and of the class-stratified "
              "image sample (default: 0)"},
    )
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="any folder of pictures instead of a dataset")
    parser.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES, metavar="N",
                        help=f"images to analyse, a seeded class-stratified sample (default: "
                        f"{DEFAULT_SAMPLES})")
    parser.add_argument("--twins", action="store_true",
                        help="also run the IF and ReLU twins with the same weights")
    parser.add_argument("--layers", action="append", metavar="PATTERN",
                        help="probe the modules whose names match this fnmatch pattern "
                        "(repeatable; e.g. 'stage2.*lif*')")
    parser.add_argument("--method", choices=("radial", "diagonal"), default="radial",
                        help="relative log amplitude: radial bins (default), or Park & Kim's "
                        "half-diagonal")
    parser.add_argument("--time-mean", action="store_true",
                        help="average each layer's maps over time before the spectrum (a "
                        "spiking layer's firing-rate maps) instead of averaging the spectra "
                        "of its maps at every step")
    parser.add_argument("--cutoff", type=float, default=0.5, metavar="R",
                        help="radius where the high-frequency band starts, 1 = Nyquist "
                        "(default: 0.5)")
    parser.add_argument("--cam", type=positive_int, nargs="?", const=DEFAULT_CAM_IMAGES,
                        metavar="N", help="write Grad-CAM overlays of N images, one per class "
                        f"first (default N: {DEFAULT_CAM_IMAGES}) to cam.png")
    parser.add_argument("--cam-layer", metavar="NAME",
                        help="module Grad-CAM reads (default: the last stage)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="new or empty output folder (default: runs/spectra-<model>-<time>)")


def run(args: argparse.Namespace) -> int:
    """Measure every network on its images, then write the report and the figures."""
    from models.app.analysis.common import outputs, write_report
    from models.app.analysis.figures import plot_cam, plot_spectra
    from models.app.analysis.networks import networks_from_args
    from models.app.analysis.report import (
        CAM_PNG,
        SPECTRA_JSON,
        SPECTRA_PNG,
        layer_records,
        network_record,
    )
    from models.app.analysis.spectra import cam_row, image_set, measure
    from models.app.errors import UserError
    from models.app.options import resolve_device

    if not 0.0 < args.cutoff <= math.sqrt(2.0):
        raise UserError(f"--cutoff must be a radius in (0, sqrt(2)] (1 = Nyquist), got "
                        f"{args.cutoff}")
    device = resolve_device(args.device)
    networks = networks_from_args(args)
    sources = [image_set(network, args) for network in networks]
    with outputs(args, "spectra", networks[0].model_name) as (output, written):
        report = {"method": args.method, "cutoff": args.cutoff, "time_mean": args.time_mean,
                  "samples": args.samples,
                  "sample_seed": args.seed,
                  "layer_patterns": args.layers, "networks": [], "layers": []}
        cams = []
        for network, images in zip(networks, sources, strict=True):
            layers = measure(network, images, args, device)
            report["networks"].append(network_record(network, images.source,
                                                     len(images.items)))
            report["layers"] += layer_records(network, layers)
            print(_summary(network, images.source, layers))
            if args.cam:
                cams.append(cam_row(network, images, args, device))
        if cams:
            plot_cam(cams, output / CAM_PNG)
            written.append(CAM_PNG)
        write_report(output, written, report, plot_spectra, SPECTRA_PNG, SPECTRA_JSON)
    return 0


def _summary(network: Network, source: str, layers: list[LayerSpectrum]) -> str:
    """One line per network: what it is and its high-frequency ratio from first to last layer."""
    analysed = [layer for layer in layers if layer.output is not None]
    ratios = [layer.output.high_frequency_ratio for layer in analysed]
    rates = [layer.firing_rate for layer in analysed if layer.firing_rate is not None]
    rate = f", mean firing rate {sum(rates) / len(rates):.3f}" if rates else ""
    return (f"{network.label}: {network.weights}; {source}; {len(analysed)} layers, "
            f"high-frequency ratio {ratios[0]:.3f} (first) to {ratios[-1]:.3f} (last){rate}")
