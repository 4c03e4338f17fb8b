"""What the analysis commands share: their options (those of ``maxformer spectra``), the
networks and their held-out images as batches, and a new output folder with all files or none."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from models.app.analysis.networks import Network, networks_from_args
from models.app.analysis.report import new_output_folder, write_json
from models.app.analysis.spectra import image_set, reset_states
from models.app.options import show_progress

__all__ = ["batches", "forward_reset", "networks", "outputs",
           "progress_bar", "values", "write_report"]


def networks(args: argparse.Namespace) -> list[Network]:
    """The networks of the command line (``--images`` is not offered: labels are needed)."""
    args.images = None
    return networks_from_args(args)


def batches(network: Network, args: argparse.Namespace,
            device: torch.device) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """The network's held-out images as ``(images, labels)`` batches on ``device``, and where
    they come from."""
    images = image_set(network, args)
    loader = DataLoader(images.items, batch_size=args.batch_size, shuffle=False)
    return [(x.to(device), torch.as_tensor(y).to(device)) for x, y in loader], images.source


def forward_reset(network: Network):
    """What runs before each forward pass: resetting stateful (spikingjelly) neurons."""
    return lambda: reset_states(network.model)


def progress_bar(args: argparse.Namespace, total: int | None, label: str, unit: str):
    """A tqdm bar unless --no-progress (or stderr is no terminal)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=label, unit=unit, disable=not show_progress(args))


@contextlib.contextmanager
def outputs(args: argparse.Namespace, command: str, name: str) -> Iterator[tuple[Path, list]]:
    """A new output folder and the list of file names written into it; if the block fails,
    the files written so far (and the folder, if it was made here and is empty) are removed."""
    existed = args.output is not None and args.output.exists()
    folder = new_output_folder(args.output, name, command)
    written: list[str] = []
    try:
        yield folder, written
    except BaseException:
        for file in written:
            (folder / file).unlink(missing_ok=True)
        if not existed and not any(folder.iterdir()):
            folder.rmdir()
        raise
    print(f"wrote {', '.join(reversed(written))} to {folder}")


def write_report(folder: Path, written: list[str], report: dict[str, Any],
                 plot: Callable[[dict[str, Any], Path], None], png: str, json_name: str) -> None:
    """``plot(report, folder / png)`` and ``report`` as ``folder / json_name``, each noted in
    ``written`` (the list of `outputs`) once it is there."""
    plot(report, folder / png)
    written.append(png)
    write_json(folder / json_name, report)
    written.append(json_name)


def values(array: Any) -> list:
    """An array as (nested) JSON lists, nan and inf as null."""
    import numpy as np

    array = np.asarray(array, dtype=float)
    if array.ndim == 0:
        return float(array) if np.isfinite(array) else None
    return [values(row) for row in array]
