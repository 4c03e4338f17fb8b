"""The command-line options that commands, analysis scripts and benchmarks share.

One definition per concept, one name per concept: ``--img-size``, ``--batch-size``, ``--T``,
``--device``, ``--lif-backend``, ``--no-progress``, ... A command takes the options it needs
with :func:`add_options`; a command may change an option's default, help or ``nargs``, never
its name. Old spellings stay for one release as hidden aliases that warn once.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.app.datasets import DATASETS
from models.app.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
NEURONS = ("lif", "if", "relu", "qcfs", "if_converted")
"""The zoo's neurons (``models.layers.NEURONS``; here without importing torch)."""
BACKENDS = ("auto", "numba", "torch", "triton", "spikingjelly")
"""The neuron backends (``models.neurons.BACKENDS``; here without importing torch)."""


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite number (argparse type): nan and inf are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One shared option: its flag, argparse settings, and hidden old spellings."""

    flag: str
    settings: dict[str, Any]
    aliases: tuple[str, ...] = ()
    config_key: bool = field(default=True)
    """Whether the option sets the training config key of the same name (train, eval)."""

    @property
    def dest(self) -> str:
        return self.settings.get("dest", self.flag.lstrip("-").replace("-", "_"))


OPTIONS: dict[str, Option] = {
    option.dest: option
    for option in (
        Option("--model", {"metavar": "NAME", "help": "timm model name (the zoo is registered; "
                           "any timm model works)"}),
        Option("--dataset", {"metavar": "NAME", "help": f"one of {', '.join(DATASETS)}"}),
        Option("--data-dir", {"metavar": "DIR", "help": "folder holding the dataset"}),
        Option("--img-size", {"type": positive_int, "metavar": "PX",
                              "help": "input height and width in pixels"},
               aliases=("--input-size", "--size")),
        Option("--batch-size", {"type": positive_int, "metavar": "N",
                                "help": "images per batch and process"},
               aliases=("--batch",)),
        Option("--T", {"type": positive_int, "metavar": "T", "help": "time steps"}),
        Option("--epochs", {"type": positive_int, "metavar": "N",
                            "help": "training epochs (plus cooldown_epochs)"}),
        Option("--lr", {"type": finite_float, "metavar": "LR", "help": "peak learning rate"}),
        Option("--workers", {"type": int, "metavar": "N",
                             "help": "data-loading worker processes"}),
        Option("--seed", {"type": int, "metavar": "N", "help": "random seed"}),
        Option("--amp", {"metavar": "MODE",
                         "help": "mixed precision: auto (bf16 on GPU, off on CPU), auto_fp16 "
                         "(fp16 on GPU, off on CPU), off, bf16, fp16"}),
        Option("--lif-backend", {"choices": BACKENDS, "metavar": "BACKEND",
                                 "help": f"neuron backend: {', '.join(BACKENDS)} (auto: triton "
                                 "on CUDA, numba on the CPU)"}),
        Option("--device", {"choices": DEVICES, "default": "auto",
                            "help": "auto (cuda when available), cpu or cuda (default: auto)"},
               config_key=False),
        Option("--checkpoint", {"type": Path, "metavar": "FILE", "help": "checkpoint file"},
               config_key=False),
        Option("--json", {"type": Path, "metavar": "FILE",
                          "help": "also write the results to this JSON file"},
               config_key=False),
        Option("--no-progress", {"action": "store_true", "help": "no progress bars"},
               config_key=False),
    )
}
"""Every shared option by its destination name (``args.img_size`` is ``--img-size``)."""


class _OldSpelling(argparse.Action):
    """A hidden alias: stores into the option's destination and says the new name."""

    def __init__(self, *args: Any, new_flag: str, **kwargs: Any) -> None:
        self.new_flag = new_flag
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is now {self.new_flag}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_options(parser: argparse.ArgumentParser, *names: str, **changes: dict[str, Any]) -> None:
    """Add the shared options ``names`` (keys of :data:`OPTIONS`) to ``parser``.

    ``changes`` maps an option's name to argparse settings that replace its own (``default``,
    ``help``, ``nargs``, ``required``), e.g. ``add_options(p, "T", T={"nargs": "+"})``, and
    may add this command's own hidden old spellings (``"aliases": ("--steps",)``).
    """
    unknown = [name for name in (*names, *changes) if name not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown shared options {unknown}; valid: {sorted(OPTIONS)}")
    for name in names:
        option = OPTIONS[name]
        settings = {**option.settings, **changes.get(name, {})}
        old_spellings = (*option.aliases, *settings.pop("aliases", ()))
        parser.add_argument(option.flag, **settings)
        for alias in old_spellings:
            parser.add_argument(
                alias, dest=option.dest, action=_OldSpelling, new_flag=option.flag,
                type=settings.get("type"), nargs=settings.get("nargs"),
                default=argparse.SUPPRESS, help=argparse.SUPPRESS,
            )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training-config keys that shared options on the command line set (not None)."""
    return {
        name: getattr(args, name)
        for name, option in OPTIONS.items()
        if option.config_key and getattr(args, name, None) is not None
    }


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--no-progress`` or stderr is not a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def resolve_device(name: str) -> torch.device:
    """The device of ``--device``: ``auto`` is cuda when a GPU is available, else cpu."""
    import torch

    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)
