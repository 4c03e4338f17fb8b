"""Band-noise robustness (Park & Kim, ICLR 2022): accuracy under Gaussian noise restricted to
radial spatial-frequency bands, at several noise levels.

Noise is white Gaussian noise with every frequency outside the band zeroed (radius normalised
so 1 = Nyquist along an axis), scaled to RMS --level per image in normalised pixel units.
Networks as for maxformer spectra (checkpoints, --model, --twins).

Writes into a new folder (--output): bandnoise.json and bandnoise.png (accuracy against the
band's centre, one panel per level, one curve per network).

Examples:
  maxformer bandnoise --checkpoint runs/maxformer_cifar-digits-.../checkpoint-best.pt --twins
  maxformer bandnoise --checkpoint a.pt --band 0:0.5 --band 0.5:1.5 --level 0.2 --level 0.5
"""

from __future__ import annotations

import argparse

from models.app.options import finite_float, positive_int

DEFAULT_SAMPLES, DEFAULT_BANDS = 128, 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer bandnoise``."""
    from models.app.analysis.arguments import add_network_arguments

    add_network_arguments(parser, DEFAULT_SAMPLES)
    parser.add_argument("--band", action="append", metavar="LOW:HIGH",
                        help="a radial band [LOW, HIGH) (repeatable; default: --bands equal "
                        "bands from 0 to sqrt(2))")
    parser.add_argument("--bands", type=positive_int, default=DEFAULT_BANDS, metavar="N",
                        help=f"without --band: N equal bands (default: {DEFAULT_BANDS})")
    parser.add_argument("--level", type=finite_float, action="append", metavar="RMS",
                        help="noise RMS in normalised pixel units (repeatable; default: 0.1, "
                        "0.2, 0.4, 0.8)")


def run(args: argparse.Namespace) -> int:
    """Measure every network under band noise, then write bandnoise.json and bandnoise.png."""
    from models.app.analysis.fourier import run_bandnoise

    return run_bandnoise(args)
