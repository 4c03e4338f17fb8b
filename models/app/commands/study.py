"""Run a study: a grid of training runs (variants x seeds) from a YAML file, and its report.

Each cell is an ordinary run folder under the study folder (maxformer eval accepts its
checkpoints). Rerunning the same command skips finished cells and resumes an interrupted
one; --cells i/n runs every n-th cell from the i-th, so n processes or machines sharing the
folder split the grid. At the end, and with --report at any time: study.csv (one row per
cell), study.md (mean and standard deviation over seeds per variant) and study.png. Every
cell's config and model are checked before the first cell runs.

Examples:
  maxformer study pooling                       # a shipped study, into studies/pooling
  maxformer study my_grid.yaml --output studies/grid1
  maxformer study bands --cells 1/2 & maxformer study bands --cells 2/2
  maxformer study pooling --report              # the report of the cells done so far
  maxformer study                               # the shipped studies, what each asks
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.app.options import add_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``maxformer study``."""
    from models.app.study import study_names

    parser.add_argument(
        "study", metavar="NAME_OR_PATH", nargs="?",
        help=f"shipped study or a YAML file; shipped: {', '.join(study_names())} "
        "(without one: list the shipped studies)",
    )
    parser.add_argument(
        "--output", type=Path, help="study folder (default: studies/<study name>)"
    )
    parser.add_argument(
        "--cells", metavar="I/N", default="1/1",
        help="run cells I, I+N, I+2N, ... of the grid (1-based; default: all, 1/1)",
    )
    parser.add_argument(
        "--report", action="store_true",
        help="only write study.csv, study.md and study.png from the cells done so far",
    )
    add_options(parser, "device", "no_progress")


def run(args: argparse.Namespace) -> int:
    """Validate the study, run this process's cells, write the report."""
    from models.app.options import show_progress
    from models.app.study import parse_part, read_study, run_study, study_names, write_report

    if args.study is None:
        for name in study_names():
            print(f"{name}: {read_study(name).description}")
        return 0
    part = parse_part(args.cells)
    study = read_study(args.study)
    root = args.output or Path("studies") / study.name
    if not args.report:
        cells = len(study.cells[part[0] - 1 :: part[1]])
        print(f"study {study.name}: {len(study.cells)} cells ({len(study.variants)} variants x "
              f"{len(study.seeds)} seeds), {cells} in this process; folder {root}", flush=True)
        run_study(study, root, part, progress=show_progress(args), device=args.device,
                  log=lambda line: print(line, flush=True))
    for path in write_report(study, root, device=args.device):
        print(f"wrote {path}")
    return 0
