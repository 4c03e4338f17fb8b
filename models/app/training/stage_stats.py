"""Per-stage firing rates and high-frequency ratios, logged every epoch while training.

Both are measured on one fixed batch: the firing rate of each stage's neurons
(`models.energy`), and the high-frequency ratio (`spectral.high_frequency_ratio`, share of
the non-DC power at spatial frequencies >= `cutoff` of Nyquist) of each stage's output.
"""

import torch
from torch import Tensor, nn

from models.energy import stage_firing_rates
from spectral import high_frequency_ratio


def stage_statistics(
    model: nn.Module, batch: Tensor, T: int | None, cutoff: float = 0.5
) -> dict[str, float]:
    """`{"rate_stage1": ..., "hf_ratio_stage1": ..., ...}` for input `batch` `[B, ...]`; one
    column per stage (and `rate_classifier` for the head's neurons). Eval mode, no gradients;
    the model's mode is restored."""
    columns = {
        f"rate_{name.replace(' ', '')}": rate
        for name, rate in stage_firing_rates(model, batch, T).items()
    }
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model.forward_intermediates(batch, output_fmt="TNCHW", intermediates_only=True)
    model.train(was_training)
    for i, out in enumerate(outputs):
        columns[f"hf_ratio_stage{i + 1}"] = float(high_frequency_ratio(out.float(), cutoff=cutoff))
    return columns
