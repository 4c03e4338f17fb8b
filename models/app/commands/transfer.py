"""Temporal transfer through a network's layers, measured beside the paper's Eq. 12.

Each held-out image is repeated over --T time steps with a small temporal sinusoid
eps*cos(omega t) added to every pixel, for each omega of a grid in (0, pi]; every probed layer
(default: every neuron of the zoo's networks, in call order) is read by a lock-in after the
--warmup steps: its gain and phase at each omega relative to the lowest, the noise floor (the
same lock-in without drive), the slope k of its output against a constant drive, and its spike
trains' temporal spectrum without drive (the paper's Fig. 3 view). Beside each layer, Eq. 12's
prediction: the LIF filter of the network's tau, once per neuron that ran before it. The ReLU
twin (--twins) is the control: it has no temporal filter.

Writes into a new folder (--output): transfer.json (every number) and transfer.png (gain in dB
against omega per layer, measured solid, predicted dashed).

Examples:
  maxformer transfer --checkpoint runs/maxformer_cifar-digits-.../checkpoint-best.pt --twins
  maxformer transfer --checkpoint a.pt --omega 0.1 --omega 1.5 --omega 3.14159 --eps 0.05
  maxformer transfer --checkpoint a.pt --layers 'stage1.*' --T 128 --warmup 32
"""

from __future__ import annotations

import argparse

from models.app.options import finite_float, positive_int

DEFAULT_T, DEFAULT_OMEGAS, DEFAULT_SAMPLES = 64, 8, 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer transfer``."""
    from models.app.analysis.arguments import add_network_arguments

    add_network_arguments(parser, DEFAULT_SAMPLES,
                          T_help=f"run-time steps of the drive (default: {DEFAULT_T}), "
                          "independent of the training T")
    parser.set_defaults(T=DEFAULT_T)
    parser.add_argument("--warmup", type=int, metavar="STEPS",
                        help="steps left out of the lock-in (default: T / 4)")
    parser.add_argument("--eps", type=finite_float, default=0.1, metavar="A",
                        help="drive amplitude in normalised pixel units (default: 0.1)")
    parser.add_argument("--omega", type=finite_float, action="append", metavar="W",
                        help="a drive frequency in (0, pi] rad per step (repeatable)")
    parser.add_argument("--omegas", type=positive_int, default=DEFAULT_OMEGAS, metavar="N",
                        help=f"without --omega: N frequencies pi/N, 2 pi/N, ..., pi "
                        f"(default: {DEFAULT_OMEGAS})")
    parser.add_argument("--layers", action="append", metavar="PATTERN",
                        help="probe the modules whose names match this fnmatch pattern "
                        "(repeatable; default: every neuron)")


def run(args: argparse.Namespace) -> int:
    """Measure every network, then write transfer.json and transfer.png."""
    from models.app.analysis.transfer import run as run_transfer

    return run_transfer(args)
