"""The command-line options of the analysis commands, without importing torch (``--help``
answers at once)."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.app.options import add_options, positive_int


def add_network_arguments(parser: argparse.ArgumentParser, samples: int,
                          T_help: str | None = None) -> None:
    """The network, image and output options, as ``maxformer spectra`` names them."""
    add_options(
        parser, "checkpoint", "model", "dataset", "data_dir", "img_size", "batch_size", "T",
        "lif_backend", "seed", "device", "no_progress",
        checkpoint={"action": "append", "help": "a maxformer train checkpoint, or published "
                    "weights with --model; repeat to compare networks"},
        model={"help": "timm model name (alone: random weights), or module:function returning "
               "an nn.Module"},
        dataset={"help": "images from this dataset's held-out set (default: the checkpoint's "
                 "own dataset, else digits)"},
        img_size={"help": "input side (default: the checkpoint's, else the model's)"},
        batch_size={"default": 32, "help": "images per forward pass (default: 32)"},
        T={"help": T_help or "time steps of the zoo's models (default: the checkpoint's)"},
        seed={"default": 0, "help": "seed of random weights and perturbations (default: 0)"},
    )
    parser.add_argument("--samples", type=positive_int, default=samples, metavar="N",
                        help=f"held-out images to measure on (default: {samples})")
    parser.add_argument("--twins", action="store_true",
                        help="also run the IF and ReLU twins with the same weights")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="new or empty output folder (default: runs/<command>-<model>-<time>)")
