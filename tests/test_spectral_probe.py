"""SpectrumProbe on plain torch modules and spikingjelly neurons."""

import math

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from spectral import SpectrumProbe, delta_log_amplitude, high_frequency_ratio, radial_profile


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
        self.lif.reset()
        x = self.lif(x.unflatten(0, (t, b)))
        x = self.stage2(x.flatten(0, 1))
        if self.fail:
            raise RuntimeError("forward failed")
        return self.head(x.mean((-2, -1)))


def all_hooks(model: nn.Module) -> list:
    return [
        h for m in model.modules() for h in (*m._forward_hooks.values(),
                                             *m._forward_pre_hooks.values())
    ]


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_one_entry_per_module_in_forward_order_with_stage_and_depth(inputs):
    model = Net().eval()
    probe = SpectrumProbe(model, types=(nn.Conv2d, nn.Linear), names=("lif", "stage2.*"))
    results = probe.run(inputs)
    names = [r.name for r in results]
    assert names == ["stem", "stage1.0", "lif", "stage2.0", "stage2.1", "head"]
    assert [r.stage for r in results] == [1, 1, 1, 2, 2, None]  # 16x16, then 8x8
    assert [r.depth for r in results] == [0.0, 0.25, 0.5, 0.75, 1.0, None]
    assert [r.neuron for r in results] == [False, False, True, False, False, False]
    assert all(r.calls == 1 for r in results)
    assert all_hooks(model) == []


def test_results_match_the_functions_on_the_captured_tensors(inputs):
    model = Net().eval()
    captured = {}
    model.lif.register_forward_pre_hook(lambda m, a: captured.setdefault("lif_in", a[0]))
    model.lif.register_forward_hook(lambda m, i, o: captured.setdefault("lif", o))
    model.stage2[1].register_forward_hook(lambda m, i, o: captured.setdefault("relu", o))
    probe = SpectrumProbe(model, names=("lif", "stage2.1"), method="diagonal")
    results = {r.name: r for r in probe.run(inputs)}
    lif, relu = results["lif"], results["stage2.1"]
    assert lif.shape == (2, 3, 4, 16, 16) and lif.output.maps == 24
    assert lif.firing_rate == pytest.approx(captured["lif"].mean().item())
    assert 0.0 < lif.firing_rate < 1.0
    assert relu.firing_rate is None and relu.input is None
    assert relu.output.high_frequency_ratio == pytest.approx(high_frequency_ratio(captured["relu"]))
    for spectrum, tensor in ((lif.output, captured["lif"]), (lif.input, captured["lif_in"])):
        radii, delta = delta_log_amplitude(tensor, method="diagonal")
        np.testing.assert_allclose(spectrum.delta_radii, radii)
        np.testing.assert_allclose(spectrum.delta_log_amplitude, delta)
        assert spectrum.summary_delta == pytest.approx(delta[-1])
        np.testing.assert_allclose(spectrum.power, radial_profile(tensor)[1])


def test_identity_layer_leaves_the_spectrum_unchanged():
    maps = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    layer = SpectrumProbe(nn.Sequential(nn.Identity()), names="0", neuron_types=nn.Identity)
    (result,) = layer.run(maps)
    assert result.output.high_frequency_ratio == result.input.high_frequency_ratio
    np.testing.assert_array_equal(result.output.power, result.input.power)
    np.testing.assert_array_equal(result.output.delta_log_amplitude,
                                  result.input.delta_log_amplitude)


def test_average_pooling_lowers_the_high_frequency_ratio_of_white_noise():
    """A 3x3 box filter passes white noise at each frequency with gain |H|^2,
    H = (1 + 2 cos(pi fy)) / 3 * (1 + 2 cos(pi fx)) / 3 (circular padding, exactly)."""
    noise = torch.randn(64, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    pool = nn.Sequential(nn.CircularPad2d(1), nn.AvgPool2d(3, stride=1))
    (result,) = SpectrumProbe(pool, names="1").run(noise)
    f = 2 * np.fft.fftfreq(32)
    gain = ((1 + 2 * np.cos(np.pi * f[:, None])) * (1 + 2 * np.cos(np.pi * f[None, :])) / 9) ** 2
    radius = np.hypot(f[:, None], f[None, :])
    expected = gain[radius >= 0.5].sum() / gain[radius > 0].sum()
    white = np.mean(radius[radius > 0] >= 0.5)
    assert high_frequency_ratio(noise) == pytest.approx(white, abs=0.01)
    assert result.output.high_frequency_ratio == pytest.approx(expected, abs=0.01)
    assert result.output.high_frequency_ratio < 0.2 < 0.7 < white


def test_forward_passes_inside_the_block_are_averaged(inputs):
    model = Net().eval()
    probe = SpectrumProbe(model, types=nn.Conv2d)
    with probe:
        assert len(all_hooks(model)) == 4  # three modules and the input grid
        model(inputs[:, :1])
        model(inputs[:, 1:])
    assert all_hooks(model) == []
    together = {r.name: r for r in SpectrumProbe(model, types=nn.Conv2d).run(inputs)}
    assert [r.name for r in probe.results] == ["stem", "stage1.0", "stage2.0"]
    for layer in probe.results:
        assert layer.calls == 2
        np.testing.assert_allclose(layer.output.power, together[layer.name].output.power)
    model(inputs)
    assert all(layer.calls == 2 for layer in probe.results)


def test_a_module_called_at_every_time_step_gives_one_entry():
    node = sj_neuron.LIFNode(tau=2.0, v_threshold=0.2)  # single-step: one call per step
    drive = torch.rand(4, 2, 3, 8, 8, generator=torch.Generator().manual_seed(3))

    class Steps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.node = node

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.node.reset()
            return torch.stack([self.node(step) for step in x])

    (result,) = SpectrumProbe(Steps(), names="node").run(drive)
    assert result.calls == 4 and result.output.maps == 4 * 2 * 3 and result.neuron
    node.reset()
    spikes = torch.stack([node(step) for step in drive])
    assert result.firing_rate == pytest.approx(spikes.mean().item())
    np.testing.assert_allclose(result.input.power, radial_profile(drive)[1])


def test_tokens_and_non_spatial_outputs_are_recorded_as_skipped(inputs):
    class Tokens(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(-2)[..., :32]  # [T, B, C, N]: 4 axes, but not a map of 16x16

    model = nn.Sequential(Tokens(), nn.Flatten(1), nn.LazyLinear(2))
    results = SpectrumProbe(model, names=("0", "2")).run(inputs)
    assert [r.name for r in results] == ["0", "2"]
    tokens, head = results
    assert "not a map grid of the 16x16 input" in tokens.skipped
    assert head.shape == (2, 2) and "(2, 2)" in head.skipped
    assert head.output is None and head.depth is None and head.stage is None


def test_square_tokens_larger_than_the_input_are_not_maps(inputs):
    """Tokens ``[T, B, C, N]`` with ``C == N`` (MS-QKFormer's stage 2 at 128 px: 256 channels,
    256 tokens) pass the grid-ratio check; no map of a classifier outruns its input grid."""
    class SquareTokens(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(-3)[..., :576].unflatten(-1, (24, 24))  # [T, B, C=24, N=24]

    (tokens,) = SpectrumProbe(nn.Sequential(SquareTokens()), names="0").run(inputs)
    assert tokens.output is None
    assert "larger than the 16x16 input" in tokens.skipped


def test_the_membrane_input_callable_decides_what_a_neuron_filtered(inputs):
    model = Net().eval()
    seen = []

    def doubled(module, args, kwargs):
        seen.append(type(module).__name__)
        return 2.0 * args[0]

    probe = SpectrumProbe(model, names="lif", membrane_input=doubled)
    (plain,) = SpectrumProbe(model, names="lif").run(inputs)
    (result,) = probe.run(inputs)
    assert seen == ["LIFNode"]
    np.testing.assert_allclose(result.input.power, 4.0 * plain.input.power)


def test_hooks_are_removed_after_an_exception_in_forward(inputs):
    model = Net(fail=True).eval()
    probe = SpectrumProbe(model, types=nn.Conv2d)
    with pytest.raises(RuntimeError, match="forward failed"):
        probe.run(inputs)
    assert all_hooks(model) == []
    with pytest.raises(RuntimeError, match="forward failed"), probe:
        model(inputs)
    assert all_hooks(model) == []


def test_calls_with_non_finite_output_are_counted_and_left_out(inputs):
    model = Net().eval()
    probe = SpectrumProbe(model, names=("stem", "lif"))
    with probe:
        model(inputs)
        model(inputs * math.inf)  # the stem's output is nan; the LIF of nan does not fire
    stem, lif = probe.results
    assert stem.calls == 2 and stem.nonfinite_calls == 1 and stem.output.maps == 6 * 4
    (alone,) = SpectrumProbe(model, names="stem").run(inputs)
    np.testing.assert_array_equal(stem.output.power, alone.output.power)
    assert lif.nonfinite_calls == 0 and lif.input.maps == 2 * 3 * 4  # the nan input left out
    (dead,) = SpectrumProbe(model, names="stem").run(inputs * math.nan)
    assert dead.skipped == "output had nan or inf values in all 1 calls"
    assert dead.output is None and dead.depth == 0.0 and dead.stage == 1  # maps, not finite
    assert all_hooks(model) == []


def test_probe_matching_no_module_is_rejected():
    with pytest.raises(ValueError, match=r"names=\('block\*',\).*stage1"):
        SpectrumProbe(Net(), names="block*")
    with pytest.raises(ValueError, match="types"):
        SpectrumProbe(Net(), types=nn.MultiheadAttention)
    with pytest.raises(ValueError, match="neither"):
        SpectrumProbe(Net())


def test_bad_cutoff_and_method_are_rejected():
    with pytest.raises(ValueError, match=r"\(0, sqrt\(2\)\].*2\.0"):
        SpectrumProbe(Net(), types=nn.Conv2d, cutoff=2.0)
    with pytest.raises(ValueError, match="unknown method 'mean'; valid: radial, diagonal"):
        SpectrumProbe(Net(), types=nn.Conv2d, method="mean")


class TimeMajor(nn.Module):
    """Clips ``[B, T, C, H, W]`` -> time-major ``[T, B, C, H, W]``, or frames ``[T * B, C, H,
    W]``."""

    def __init__(self, frames: bool = False) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)
        return x.flatten(0, 1) if self.frames else x


def flickering_clips(steps: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``[2, steps, 1, 16, 16]`` whose frames are a grating at radius 0.25 plus or minus
    (alternately) one of equal power at radius 0.75; and the first grating ``[16, 16]``."""
    axis = torch.arange(16, dtype=torch.float64)
    low = torch.cos(2 * math.pi * 2 * axis / 16)[None, :].expand(16, 16)
    high = torch.cos(2 * math.pi * 6 * axis / 16)[:, None].expand(16, 16)
    sign = torch.tensor([(-1.0) ** t for t in range(steps)], dtype=torch.float64)
    frames = low + sign[:, None, None] * high
    return frames[None, :, None].expand(2, -1, 1, -1, -1).contiguous(), low


@pytest.mark.parametrize("frames", [False, True])
def test_time_mean_gives_the_spectrum_of_the_mean_map_over_calls(frames):
    """The flicker cancels over an even number of steps: the time mean is the low grating
    alone (high-frequency ratio 0), while the mean of per-step spectra keeps both gratings'
    equal powers (ratio 1/2). Steps fed in two calls (3 + 5) continue one another until
    end_input; an input of 3 steps alone leaves a third of the flicker (ratio (1/9) / (1 +
    1/9))."""
    clips, low = flickering_clips()
    model = nn.Sequential(TimeMajor(frames))
    (steps,) = SpectrumProbe(model, names="0").run(clips)
    (mean,) = SpectrumProbe(model, names="0", time_mean=True).run(clips)
    assert steps.output.high_frequency_ratio == pytest.approx(0.5, abs=1e-12)
    assert mean.output.high_frequency_ratio == pytest.approx(0.0, abs=1e-12)
    assert mean.output.maps == 2 and steps.output.maps == 16
    np.testing.assert_allclose(mean.output.power, radial_profile(low)[1], atol=1e-9)
    probe = SpectrumProbe(model, names="0", time_mean=True)
    with probe, torch.no_grad():
        model(clips[:, :3])
        model(clips[:, 3:])
        probe.end_input()
        model(clips[:, :3])
    (split,) = probe.results
    alone = SpectrumProbe(model, names="0", time_mean=True).run(clips[:, :3])[0]
    assert split.output.maps == 4
    assert alone.output.high_frequency_ratio == pytest.approx(1 / 10, abs=1e-12)
    # flicker power per map: 0 (first input) and 1/9 (second), beside the low grating's 1
    assert split.output.high_frequency_ratio == pytest.approx((1 / 18) / (1 + 1 / 18),
                                                              abs=1e-12)
