"""``--amp auto``: bf16 on CUDA, off on the CPU (even where bf16 is native: it made the default
digits run 6.3x slower there, benchmarks/RESULTS.md), where float32 results are those of
``--amp off``."""

import pytest
import torch
from runs import tiny

from models.app.modeling import amp_dtype
from models.app.training.trainer import train


def test_auto_is_bf16_on_cuda_and_off_on_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None
    assert amp_dtype("auto", cuda) == torch.bfloat16
    assert amp_dtype("auto_fp16", cpu) is None
    assert amp_dtype("auto_fp16", cuda) == torch.float16
    assert amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) == torch.bfloat16


@pytest.mark.parametrize("amp, autocast", [("auto", "off"), ("bf16", "bfloat16")])
def test_the_run_summary_says_what_amp_resolved_to(tmp_path, amp, autocast):
    """``amp: auto`` means bf16 on a GPU and fp32 on the CPU: the summary says which ran."""
    result = train(tiny(epochs=1, train_samples=32, amp=amp), output=tmp_path / "run",
                   device="cpu")
    assert result.summary["autocast"] == autocast
