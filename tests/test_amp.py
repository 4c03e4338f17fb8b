"""``--amp auto``: bf16 on CUDA, off on the CPU (even where bf16 is native: it made the default
digits run 6.3x slower there, benchmarks/RESULTS.md), where float32 results are those of
``--amp off``."""

import torch

from models.app.modeling import amp_dtype


def test_auto_is_bf16_on_cuda_and_off_on_the_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None
    assert amp_dtype("auto", cuda) == torch.bfloat16
    assert amp_dtype("auto_fp16", cpu) is None
    assert amp_dtype("auto_fp16", cuda) == torch.float16
    assert amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) == torch.bfloat16
