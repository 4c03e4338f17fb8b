"""The ``maxformer`` command: ``maxformer <subcommand> [options]``.

Each subcommand is a module of :mod:`models.app.commands` with ``add_arguments(parser)`` and
``run(args) -> int``, listed once in :data:`COMMANDS`; their heavy imports happen in ``run``.
Every error a user can cause ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    "train": "train a model (default: Max-Former on the digits)",
    "eval": "evaluate a checkpoint: top-1, top-5, loss, images/s",
    "energy": "firing rates, MACs, SOPs and energy per layer and stage",
    "spectra": "spatial spectra of every layer, twins, Grad-CAM: where high frequencies go",
    "study": "a grid of training runs (variants x seeds) and its report",
}
"""Subcommand -> one-line help; the module is ``models.app.commands.<subcommand>``."""


def command_module(name: str):
    """The module of subcommand ``name``."""
    return importlib.import_module(f"models.app.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    """Run ``maxformer``; user errors print one line on stderr and exit with status 2."""
    from models.app.errors import RunInterrupted, UserError
    from models.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args._module.run(args)
    except RunInterrupted as err:
        print(f"maxformer {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except (UserError, CheckpointError) as err:
        print(f"maxformer {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
