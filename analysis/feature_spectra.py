"""One figure comparing the networks of several ``maxformer spectra`` runs.

Reads ``spectra.json`` files written by ``maxformer spectra``, puts their networks side by side
(a label that two runs share gets its run folder's name) and draws the command's own figure
(`models.app.analysis.figures.plot_spectra`): the relative log amplitude at the summary point
and the high-frequency power ratio against normalised depth, and the relative log amplitude
against frequency per stage, one colour per network. The runs must share ``--method`` and
``--cutoff``. ``--networks`` keeps only the named networks, in that order.

Run ``python -m analysis.feature_spectra RUN_A/spectra.json RUN_B/spectra.json --out fig.png``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.app.analysis.figures import plot_spectra


def merge(reports: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The networks and layers of several reports (``(path, report)``) as one report."""
    settings = {(r["method"], r["cutoff"]) for _, r in reports}
    if len(settings) > 1:
        raise ValueError(f"the runs differ in (method, cutoff): {sorted(settings)}; compare runs "
                         "made with the same --method and --cutoff")
    labels = [n["network"] for _, r in reports for n in r["networks"]]
    merged = {**reports[0][1], "networks": [], "layers": []}
    for path, report in reports:
        rename = {
            n["network"]: f"{n['network']} ({path.parent.name})"
            for n in report["networks"] if labels.count(n["network"]) > 1
        }
        merged["networks"] += [{**n, "network": rename.get(n["network"], n["network"])}
                               for n in report["networks"]]
        merged["layers"] += [{**r, "network": rename.get(r["network"], r["network"])}
                             for r in report["layers"]]
    return merged


def keep(report: dict[str, Any], networks: Sequence[str]) -> dict[str, Any]:
    """``report`` with only ``networks``, in that order."""
    known = {n["network"]: n for n in report["networks"]}
    unknown = [name for name in networks if name not in known]
    if unknown:
        raise ValueError(f"unknown networks {unknown}; the runs have {sorted(known)}")
    return {**report, "networks": [known[name] for name in networks],
            "layers": [r for r in report["layers"] if r["network"] in networks]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.feature_spectra",
        description="Compare the networks of several maxformer spectra runs in one figure.",
    )
    parser.add_argument("reports", nargs="+", type=Path, metavar="SPECTRA_JSON",
                        help="spectra.json files written by maxformer spectra")
    parser.add_argument("--networks", nargs="+", metavar="LABEL",
                        help="the networks to draw, by their label (default: all)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the PNG file to write (an existing file is never replaced)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Draw the figure; returns the merged report it shows."""
    args = parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another --out (figures are not replaced)")
    report = merge([(path, json.loads(path.read_text())) for path in args.reports])
    if args.networks:
        report = keep(report, args.networks)
    plot_spectra(report, args.out)
    return report


if __name__ == "__main__":
    main()
