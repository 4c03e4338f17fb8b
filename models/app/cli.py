"""The ``maxformer`` command: ``maxformer <subcommand> [options]``.

Each subcommand is a module of :mod:`models.app.commands` with ``add_arguments(parser)`` and
``run(args) -> int``, listed once in :data:`COMMANDS`; their heavy imports happen in ``run``.
Every error a user can cause ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

COMMANDS: dict[str, str] = {
    "train": "train a model (default: Max-Former on the digits)",
    "eval": "evaluate a checkpoint: top-1, top-5, loss, images/s",
    "energy": "firing rates, MACs, SOPs and energy per layer and stage",
    "spectra": "spatial spectra of every layer, twins, Grad-CAM: where high frequencies go",
    "transfer": "temporal transfer through every layer, measured beside Eq. 12",
    "heatmap": "Fourier heat map: error and loss under each 2-D Fourier basis perturbation",
    "bandnoise": "accuracy under Gaussian noise restricted to spatial-frequency bands",
    "study": "a grid of training runs (variants x seeds) and its report",
    "convert": "convert a ReLU- or QCFS-trained checkpoint into an IF network",
}
"""Subcommand -> one-line help; the module is ``models.app.commands.<subcommand>``."""


def command_module(name: str):
    """The module of subcommand ``name``."""
    return importlib.import_module(f"models.app.commands.{name}")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``PROG: error: ...; see PROG --help``),
    exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`COMMANDS`."""
    parser = OneLineParser(
        prog="maxformer",
        description="Train, evaluate and analyse the spiking networks of the Max-Former paper.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = command_module(name)
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


CPU_OUT_OF_MEMORY = "can't allocate memory"
"""What torch's CPU allocator says when an allocation fails (a RuntimeError, not MemoryError)."""


class _NeverRaised(Exception):
    """Stands for an exception class whose module is not imported (so it was not raised)."""


def raised_by(module: str, name: str) -> type[BaseException]:
    """Exception class ``name`` of ``module`` if that module is imported, else one never
    raised: an ``except`` clause that names it imports nothing (no torch for ``--help``)."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else _NeverRaised


def one_line(message: str) -> str:
    """``message`` on one line: its lines joined with "; "."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run ``maxformer``; user errors print one line on stderr and exit with status 2."""
    from models.app.errors import RunInterrupted, UserError

    args = build_parser().parse_args(argv)
    try:
        return args._module.run(args)
    except RunInterrupted as err:
        print(f"maxformer {args.command}: {one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except (UserError, raised_by("models.checkpoint", "CheckpointError")) as err:
        print(f"maxformer {args.command}: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except raised_by("torch.cuda", "OutOfMemoryError") as err:
        first = one_line(str(err)).split("; ")[0]
        print(f"maxformer {args.command}: error: out of GPU memory ({first}); lower "
              "--batch-size (or img_size, T)", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and CPU_OUT_OF_MEMORY not in str(err):
            raise
        detail = f" ({one_line(str(err))})" if str(err) else ""
        print(f"maxformer {args.command}: error: out of memory; lower --batch-size (or "
              f"img_size, T, workers){detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"maxformer {args.command}: interrupted by SIGINT", file=sys.stderr)
        return 128 + 2


if __name__ == "__main__":
    sys.exit(main())
