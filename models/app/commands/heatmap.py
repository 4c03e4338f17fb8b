"""Fourier heat map (Yin et al., NeurIPS 2019): which spatial frequencies a network's decisions
are sensitive to.

For each 2-D Fourier basis image (u, v) of the input grid (every one up to 32 px; above, every
--stride-th so that 32 per axis remain), each held-out image gets the basis image added at norm
--eps times its own norm, with a random sign per image, and the error rate and the increase of
the cross-entropy are recorded. Beside them the cheap gradient view: the mean amplitude of the
FFT of d loss / d input. Networks as for maxformer spectra (checkpoints, --model, --twins).

Writes into a new folder (--output): heatmap.json (every number) and heatmap.png (centred
layout, u down, v across, 0 in the middle).

Examples:
  maxformer heatmap --checkpoint runs/maxformer_cifar-digits-.../checkpoint-best.pt --twins
  maxformer heatmap --checkpoint a.pt --checkpoint b.pt --eps 0.5 --samples 256
"""

from __future__ import annotations

import argparse

from models.app.options import finite_float, positive_int

DEFAULT_SAMPLES = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer heatmap``."""
    from models.app.analysis.arguments import add_network_arguments

    add_network_arguments(parser, DEFAULT_SAMPLES)
    parser.add_argument("--eps", type=finite_float, default=0.3, metavar="E",
                        help="perturbation norm relative to each image's norm (default: 0.3)")
    parser.add_argument("--stride", type=positive_int, metavar="S",
                        help="every S-th frequency per axis (default: 1 up to 32 px)")


def run(args: argparse.Namespace) -> int:
    """Measure every network's heat maps, then write heatmap.json and heatmap.png."""
    from models.app.analysis.fourier import run_heatmap

    return run_heatmap(args)
