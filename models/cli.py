"""The ``maxformer`` command: ``maxformer <subcommand> [options]``.

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed
once in :data:`COMMANDS`; modules are imported only when their subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("models.training.cmd_train", "train a model (default: Max-Former on the digits)"),
    "eval": ("models.training.cmd_eval", "evaluate a checkpoint: top-1, top-5, loss, images/s"),
    "energy": ("models.energy.command", "firing rates, MACs, SOPs and energy per layer and stage"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="maxformer",
        description="Train and evaluate the spiking networks of the Max-Former paper.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
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
    from models.training.errors import RunInterrupted, UserError

    args = build_parser().parse_args(argv)
    try:
        return args._module.run(args)
    except RunInterrupted as err:
        print(f"maxformer {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except UserError as err:
        print(f"maxformer {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
