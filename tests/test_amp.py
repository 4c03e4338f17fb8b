"""``--amp auto``: bf16 on CUDA and on CPUs with native bf16 (AVX512_BF16 or AMX), off on
other CPUs, where float32 results are those of ``--amp off``."""

from pathlib import Path

import pytest
import torch

from models.app import modeling
from models.app.modeling import amp_dtype, cpu_has_native_bf16

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma vaes\n"


@pytest.mark.parametrize(("cpuinfo", "native"), [(SAPPHIRE_RAPIDS, True), (ZEN3, False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, cpuinfo, native):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_has_native_bf16(tmp_path / "cpuinfo") is native


def test_no_cpuinfo_means_no_native_bf16(tmp_path: Path):
    assert cpu_has_native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_the_cpu_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(modeling, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) == (torch.bfloat16 if native else None)
    assert amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) == torch.bfloat16
    assert amp_dtype("auto", torch.device("cuda")) == torch.bfloat16
