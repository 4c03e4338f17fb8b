"""Our models compute exactly what the original implementation computes.

Reference outputs and gradients in `tests/data/golden/` come from the original research code
(see the README there). Weights follow from the state-dict keys by the rule of the reference
data, so a model with different key names could not even reproduce the weights.
"""

import math
import zlib
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import models.zoo  # noqa: F401  (registers the zoo with timm)

GOLDEN = Path(__file__).parent / "data" / "golden"

CASES = {
    "imagenet_maxformer": ("maxformer_imagenet", {"embed_dims": 128, "T": 2}),
    "cifar_maxformer": ("maxformer_cifar", {"embed_dims": 64, "T": 2}),
    "event_maxformer": ("maxformer_event", {"embed_dims": 128}),
    "cifar_ms_qkformer": ("ms_qkformer_cifar", {"embed_dims": 64, "T": 2}),
    "imagenet_ms_qkformer": ("ms_qkformer_imagenet", {"embed_dims": 128, "T": 2}),
    "max_resnet18": ("max_resnet18", {"T": 2}),
    "cifar_spikformer": (
        "spikformer_4_384", {"embed_dims": 64, "depth": 2, "num_heads": 4, "T": 2}
    ),
    "imagenet_spikformer": ("spikformer_8_384", {"embed_dims": 64, "depth": 2, "num_heads": 4}),
    "cifar_sdt": ("sdt_2_512", {"embed_dims": 64, "depth": 2, "num_heads": 4, "T": 2}),
    "imagenet_sdt": ("sdt_8_384", {"embed_dims": 64, "depth": 2, "num_heads": 4, "T": 2}),
}

FLOAT64_RTOL = 1e-8
# Gradients that are zero in exact arithmetic (biases of convolutions followed by BatchNorm in
# training mode) are pure round-off in both implementations, ~1e-16 of the largest norm; they
# are checked to be round-off in ours too, below this fraction of the largest norm.
ROUND_OFF = 1e-12


def golden_weights(model: nn.Module) -> None:
    """The reference data's weight rule: each entry from a generator seeded by its key."""
    new = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            new[key] = value.clone()
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        r = torch.randn(value.shape, generator=generator, dtype=torch.float64)
        if key.endswith("running_var"):
            new[key] = torch.rand(value.shape, generator=generator, dtype=torch.float64) * 0.5
            new[key] += 0.25
        elif key.endswith("running_mean"):
            new[key] = 0.1 * r
        elif value.dim() == 1 and key.endswith("weight"):
            new[key] = 2.0 + 0.5 * r
        elif value.dim() == 1:
            new[key] = 0.5 + 0.5 * r
        else:
            new[key] = r * (3.0 / math.sqrt(value[0].numel()))
    model.double()
    model.load_state_dict(new)


def max_rel_error(ours: Tensor, reference: Tensor) -> float:
    """Largest absolute difference relative to the largest reference magnitude."""
    return ((ours.double() - reference).abs().max() / reference.abs().max()).item()


def run_case(
    case: str, lif_backend: str, dtype: torch.dtype, device: str = "cpu"
) -> tuple[dict, dict]:
    """Our model's outputs for golden `case`, in `dtype` on `device`, next to the reference
    data (ours moved to the CPU)."""
    reference = torch.load(GOLDEN / f"{case}.pt", weights_only=True)
    name, kwargs = CASES[case]
    model = timm.create_model(name, num_classes=10, lif_backend=lif_backend, **kwargs)
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == {key: list(shape) for key, shape in reference["state_dict_shapes"].items()}
    golden_weights(model)
    model.to(device, dtype)

    model.eval()
    with torch.no_grad():
        logits_eval = model(reference["input"].to(device, dtype))
    model.train()
    x = reference["input"].to(device, dtype).requires_grad_(True)
    logits_train = model(x)
    loss = F.cross_entropy(logits_train, reference["target"].to(device))
    loss.backward()
    ours = {
        "logits_eval": logits_eval.cpu(),
        "logits_train": logits_train.cpu(),
        "loss": loss.cpu(),
        "input_grad": x.grad.cpu(),
        "grad_norms": {
            name: p.grad.double().norm().item()
            for name, p in model.named_parameters()
            if p.grad is not None
        },
    }
    return ours, reference


@pytest.mark.parametrize("lif_backend", ["numba", "torch"])
@pytest.mark.parametrize("case", list(CASES))
def test_float64_cpu_backends_match_original(case: str, lif_backend: str) -> None:
    ours, reference = run_case(case, lif_backend, torch.float64)
    for key in ("logits_eval", "logits_train", "loss", "input_grad"):
        error = max_rel_error(ours[key], reference[key])
        assert error < FLOAT64_RTOL, f"{case} {key}: max relative error {error:.3e}"

    norms = reference["grad_norms"]
    assert set(ours["grad_norms"]) == set(norms)
    largest = max(norms.values())
    for name, expected in norms.items():
        got = ours["grad_norms"][name]
        if expected < ROUND_OFF * largest:
            assert got < ROUND_OFF * largest, f"{case} {name}: {got:.3e} is not round-off"
        else:
            error = abs(got - expected) / expected
            assert error < FLOAT64_RTOL, f"{case} {name}: relative error {error:.3e}"


# float32 against the float64 reference: rounding in the convolutions moves logits by ~1e-7
# relative and input gradients by ~1e-5 (no spike flips in this case).
FLOAT32_RTOL = {"logits_eval": 1e-5, "logits_train": 1e-5, "loss": 1e-5, "input_grad": 1e-4}


def test_float32_triton_backend_matches_original() -> None:
    """The Triton kernels in a whole model: on the GPU if there is one (TF32 off), else
    interpreted on the CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        ours, reference = run_case("cifar_ms_qkformer", "triton", torch.float32, device)
    for key, rtol in FLOAT32_RTOL.items():
        error = max_rel_error(ours[key], reference[key])
        assert error < rtol, f"triton {key}: max relative error {error:.3e}"
