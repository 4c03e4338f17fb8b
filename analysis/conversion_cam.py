"""How close the Grad-CAM maps of a converted network come to its ANN's as T grows.

Loads the ANN's training checkpoint and the converted checkpoint (``maxformer convert``),
takes the first ``--images`` held-out images of the ANN's dataset, computes Grad-CAM of the
last block of the last stage for the ANN's predicted classes, then the converted network's at
each T (run in chunks, every chunk counted: `models.conversion.ChunkedNetwork`), and prints
the mean absolute difference of the maps (each in [0, 1]) per T.

Run ``python -m analysis.conversion_cam runs/relu/checkpoint-best.pt converted.pt``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from models.app.config import build_config
from models.app.data import build_datasets
from models.app.modeling import load_weights, model_for_config
from models.checkpoint import read_checkpoint
from models.conversion import ChunkedNetwork
from models.gradcam import grad_cam


def load(path: Path) -> tuple[nn.Module, torch.utils.data.Dataset]:
    """The network of a checkpoint with a saved config (eval mode) and its held-out set."""
    checkpoint = read_checkpoint(path)
    cfg = build_config(checkpoint["config"], {})
    _, val_set, info = build_datasets(cfg)
    model = model_for_config(cfg, info)
    load_weights(model, checkpoint, path)
    return model.eval(), val_set


def last_block(model: nn.Module) -> nn.Module:
    """The last block of the model's last stage (timm's ``feature_info``)."""
    stage = model.get_submodule(model.feature_info[-1]["module"])
    return stage[-1] if isinstance(stage, nn.ModuleList) else stage


def cam_distances(ann: nn.Module, snn: nn.Module, images: torch.Tensor,
                  steps: Sequence[int]) -> list[float]:
    """Mean absolute difference between the Grad-CAM maps of ``snn`` at each of ``steps`` and
    of ``ann``, both for the ANN's predicted classes, on ``images`` ``[B, C, H, W]``."""
    reference, classes = grad_cam(ann, images, last_block(ann))
    distances = []
    for T in steps:
        heat, _ = grad_cam(ChunkedNetwork(snn, T), images, last_block(snn), classes,
                           every_call=True)
        distances.append(float((heat - reference).abs().mean()))
    return distances


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.conversion_cam",
        description="Compare the Grad-CAM maps of a converted network at several T with its "
                    "ANN's.")
    parser.add_argument("ann", type=Path, help="the ANN's training checkpoint")
    parser.add_argument("converted", type=Path, help="the converted checkpoint")
    parser.add_argument("--T-values", type=int, nargs="+", default=[8, 32, 128, 256],
                        metavar="T", help="time steps (default: 8 32 128 256)")
    parser.add_argument("--images", type=int, default=64, metavar="N",
                        help="first N held-out images (default: 64)")
    args = parser.parse_args(argv)
    ann, val_set = load(args.ann)
    snn, _ = load(args.converted)
    images = torch.stack([val_set[i][0] for i in range(min(args.images, len(val_set)))])
    for T, distance in zip(args.T_values, cam_distances(ann, snn, images, args.T_values),
                           strict=True):
        print(f"T={T}: mean |CAM - ANN CAM| {distance:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
