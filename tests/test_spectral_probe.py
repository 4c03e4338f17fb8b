"""SpectrumProbe on plain torch modules."""

import math

import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from spectral import SpectrumProbe, delta_log_amplitude, high_frequency_ratio


class Net(nn.Module):
    """Conv stages with a spiking node over time; input ``[T, B, 3, H, W]``."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.lif = sj_neuron.LIFNode(tau=2.0, v_threshold=0.1, step_mode="m")
        self.stage2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        x = self.stage1(self.stem(x.flatten(0, 1)))
        x = self.lif(x.unflatten(0, (t, b)))
        x = self.stage2(x.flatten(0, 1))
        if self.fail:
            raise RuntimeError("forward failed")
        return self.head(x.mean((-2, -1)))


def all_hooks(model: nn.Module) -> list:
    return [h for m in model.modules() for h in m._forward_hooks.values()]


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_one_entry_per_module_in_forward_order(inputs):
    model = Net().eval()
    probe = SpectrumProbe(model, types=(nn.Conv2d, nn.Linear), names=("lif", "stage2.*"))
    results = probe.run(inputs)
    names = [r.name for r in results]
    assert names == ["stem", "stage1.0", "lif", "stage2.0", "stage2.1", "head"]
    assert all_hooks(model) == []


def test_results_match_the_functions_on_the_captured_output(inputs):
    model = Net().eval()
    captured = {}
    model.lif.register_forward_hook(lambda m, i, o: captured.setdefault("lif", o))
    model.stage2[1].register_forward_hook(lambda m, i, o: captured.setdefault("relu", o))
    results = {r.name: r for r in SpectrumProbe(model, names=("lif", "stage2.1")).run(inputs)}
    lif, relu = results["lif"], results["stage2.1"]
    assert lif.shape == (2, 3, 4, 16, 16)
    assert lif.firing_rate == pytest.approx(captured["lif"].mean().item())
    assert 0.0 < lif.firing_rate < 1.0
    assert relu.firing_rate is None
    assert relu.high_frequency_ratio == pytest.approx(high_frequency_ratio(captured["relu"]))
    radii, profile = delta_log_amplitude(captured["lif"])
    assert lif.delta_log_amplitude == pytest.approx(profile[-1])
    assert (lif.radii == radii).all() and (lif.profile == profile).all()


def test_non_spatial_outputs_are_recorded_as_skipped(inputs):
    results = SpectrumProbe(Net().eval(), types=nn.Linear).run(inputs)
    assert len(results) == 1
    head = results[0]
    assert head.name == "head" and head.shape == (6, 2)
    assert "(6, 2)" in head.skipped
    assert math.isnan(head.delta_log_amplitude) and math.isnan(head.high_frequency_ratio)


def test_context_manager_records_and_removes_hooks(inputs):
    model = Net().eval()
    with SpectrumProbe(model, types=nn.Conv2d) as probe:
        assert len(all_hooks(model)) == 3
        model(inputs)
        model(inputs)
    assert [r.name for r in probe.results] == ["stem", "stage1.0", "stage2.0"] * 2
    assert all_hooks(model) == []
    model(inputs)
    assert len(probe.results) == 6


def test_hooks_are_removed_after_an_exception_in_forward(inputs):
    model = Net(fail=True).eval()
    probe = SpectrumProbe(model, types=nn.Conv2d)
    with pytest.raises(RuntimeError, match="forward failed"):
        probe.run(inputs)
    assert all_hooks(model) == []
    with pytest.raises(RuntimeError, match="forward failed"), probe:
        model(inputs)
    assert all_hooks(model) == []


def test_hooks_are_removed_after_non_finite_output(inputs):
    model = Net().eval()
    probe = SpectrumProbe(model, names="stem")
    with pytest.raises(ValueError, match="finite"):
        probe.run(inputs * math.nan)
    assert all_hooks(model) == []


def test_probe_matching_no_module_is_rejected():
    with pytest.raises(ValueError, match=r"names=\('block\*',\).*stage1"):
        SpectrumProbe(Net(), names="block*")
    with pytest.raises(ValueError, match="types"):
        SpectrumProbe(Net(), types=nn.MultiheadAttention)
    with pytest.raises(ValueError, match="neither"):
        SpectrumProbe(Net())


def test_bad_cutoff_is_rejected():
    with pytest.raises(ValueError, match=r"\(0, sqrt\(2\)\].*2\.0"):
        SpectrumProbe(Net(), types=nn.Conv2d, cutoff=2.0)
