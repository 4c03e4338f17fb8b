"""The `spikingjelly` and `syops` energy conventions against the tools themselves: spikingjelly
2.0's op_counter run here on the same network, syops 0.0.5's counts stored from a run beside
it (tests/data/energy) or run here when it imports, and syops' own published benchmark."""

import importlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from models.energy import measure_energy
from models.neurons import MultiStepLIF

DATA = Path(__file__).parent / "data" / "energy"
T, B = 2, 2


def lif() -> MultiStepLIF:
    return MultiStepLIF(backend="torch")


class OpCounterNet(nn.Module):
    """Spike convolutions with padding, stride, dilation and groups, a transposed and a 1-D
    convolution, BatchNorm on its own and inside a neuron, spike x spike and value x spike
    products, linear layers on values. Input `[B, 3, 8, 8]`, repeated over `T`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.bn0, self.lif0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), lif()
        self.conv1 = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False)
        self.bn1, self.lif1 = nn.BatchNorm2d(8), lif()
        self.up, self.lif2 = nn.ConvTranspose2d(8, 4, 2, stride=2), lif()
        self.tokens, self.lif3 = nn.Conv1d(4, 6, 3, padding=1), lif()
        self.fc, self.lif4, self.head = nn.Linear(6, 5), lif(), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
        s = self.lif0(self.bn0(self.conv0(steps.flatten(0, 1))).unflatten(0, (T, -1)))
        s = self.lif1(self.conv1(s.flatten(0, 1)).unflatten(0, (T, -1)), norm=self.bn1)
        s = self.lif2(self.up(s.flatten(0, 1)).unflatten(0, (T, -1)))
        t = self.lif3(self.tokens(s.flatten(3).flatten(0, 1)).unflatten(0, (T, -1)))
        q = t.transpose(-1, -2)  # [T, B, N, 6] spikes
        mixed = (q @ t) @ q  # spike x spike, then value x spike
        f = self.lif4(self.fc(mixed)) @ torch.ones(5, 5)  # spike x value
        return self.head(f.mean((0, 2)))


def test_spikingjelly_preset_equals_its_op_counter_layer_by_layer():
    from spikingjelly.activation_based.op_counter import (
        DispatchCounterMode,
        MACCounter,
        SynOpCounter,
    )

    torch.manual_seed(0)
    net = OpCounterNet().eval()
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.uniform_(module.weight, -0.6, 1.0)
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.bias, 0.0, 1.5)
            nn.init.uniform_(module.running_mean, -0.2, 0.2)
    x = torch.randn(B, 3, 8, 8)
    synops, macs = SynOpCounter(), MACCounter()
    with torch.no_grad(), DispatchCounterMode([synops, macs]):
        net(x)
    report = measure_energy(net, x, T=T, convention="spikingjelly")
    rates = {n.name: n.rate for n in report.neurons}
    assert all(0 < rate < 1 for rate in rates.values()), rates
    theirs = {scope: (sum(synops.get_counts().get(scope, {}).values()),
                      sum(macs.get_counts().get(scope, {}).values()))
              for scope in {*synops.get_counts(), *macs.get_counts()} - {"Global"}}
    root = type(net).__name__
    assert set(theirs) == {root, *(f"{root}.{name}" for name in (
        "conv0", "bn0", "conv1", "lif1", "up", "tokens", "fc", "head"))}  # lif1: bn1 inside
    for scope, counts in theirs.items():
        prefix = scope.removeprefix(root).removeprefix(".")
        layers = [la for la in report.layers
                  if not prefix or la.name == prefix or la.name.startswith(prefix + ".")]
        ours = (sum(la.sops for la in layers) * report.images,
                sum(la.macs for la in layers) * report.images)
        assert ours == counts, scope
    sops = {la.name: la.sops for la in report.layers}
    assert sops["conv1"] > 0 and sops["up"] > 0 and sops["matmul0"] > 0 and sops["matmul2"] > 0


class SyopsNet(nn.Module):
    """The network of tests/data/energy/syops_reference.json (its README): dyadic weights and
    inputs, BatchNorm with `var + eps = 1`, so every spike is exact on any machine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4, eps=0.25)
        self.lif1 = lif()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(6, eps=0.25)
        self.lif2 = lif()
        self.avg = nn.AvgPool2d(2)
        self.fc_spikes = nn.Linear(96, 5)
        self.fc1 = nn.Linear(24, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(8, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1).flatten(0, 1)
        s = self.lif1(self.bn1(self.conv1(x)).unflatten(0, (T, -1))).flatten(0, 1)
        s = self.lif2(self.bn2(self.conv2(self.pool1(s))).unflatten(0, (T, -1))).flatten(0, 1)
        a = self.fc_spikes(s.flatten(1))
        b = self.fc2(self.relu(self.fc1(self.avg(s).flatten(1))))
        return (a + b).unflatten(0, (T, -1)).mean(0)


def reference_net() -> tuple[SyopsNet, torch.Tensor, dict]:
    reference = json.loads((DATA / "syops_reference.json").read_text())
    net = SyopsNet().double().eval()
    net.load_state_dict({k: torch.tensor(v, dtype=torch.float64) if "num_batches" not in k
                         else torch.tensor(v) for k, v in reference["state_dict"].items()})
    return net, torch.tensor(reference["input"], dtype=torch.float64), reference


def syops_per_layer(report) -> dict[str, list[float]]:
    """Our counts in syops' form: layer -> [ops, ACs, MACs], totals over the batch."""
    n = report.images
    return {la.name: [la.ops * n, la.sops * n, la.macs * n] for la in report.layers}


def test_syops_preset_equals_syops_counts_stored_from_a_run_of_syops():
    net, x, reference = reference_net()
    assert reference["batch_counter"] == B
    with torch.no_grad():
        assert net(x).tolist() == reference["output"]  # same network, same spikes
    report = measure_energy(net, x, T=T, convention="syops")
    theirs = {name: counts[:3] for name, counts in reference["syops"].items()}
    ours = syops_per_layer(report)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-12, abs=0), name
    assert sum(c[1] for c in theirs.values()) > 0 and sum(c[2] for c in theirs.values()) > 0


def _importable_syops():
    """syops' engine and ops, or None where syops is absent or cannot import (syops 0.0.5
    imports spikingjelly's pre-2.0 neurons and the `progress` package)."""
    try:
        return importlib.import_module("syops.engine"), importlib.import_module("syops.ops")
    except ImportError:
        return None


@pytest.mark.skipif(_importable_syops() is None, reason="syops is absent or cannot import "
                    "here (it needs spikingjelly <= 0.0.0.0.12); the stored run above stands "
                    "in for it")
def test_syops_preset_equals_syops_run_here():
    engine, ops = _importable_syops()
    net, x, _ = reference_net()
    engine.CUSTOM_MODULES_MAPPING = {MultiStepLIF: ops.LIF_syops_counter_hook}
    try:
        counted = engine.add_syops_counting_methods(net)
        counted.start_syops_count(ost=None, verbose=False, ignore_list=[])
        with torch.no_grad():
            counted(x)
        theirs = {name: [float(v) for v in m.__syops__[:3]]
                  for name, m in counted.named_modules() if hasattr(m, "__syops__")}
        counted.stop_syops_count()
    finally:
        engine.CUSTOM_MODULES_MAPPING = {}
    ours = syops_per_layer(measure_energy(net, x, T=T, convention="syops"))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-12, abs=0), name


def test_syops_preset_reproduces_the_resnet18_row_of_the_syops_benchmark():
    """Worked example: the syops README's Benchmark table gives resnet18 at 224x224 as 0.00 G
    ACs, 1.82 G MACs, 8.372 mJ (MACs x 4.6 pJ)."""
    import torchvision

    torch.manual_seed(0)
    report = measure_energy(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224), T=1,
                            convention="syops")
    assert report.sops == 0
    assert round(report.macs / 1e9, 2) == 1.82
    assert round(4.6 * round(report.macs / 1e9, 2), 3) == 8.372
    assert report.energy_mj == pytest.approx(4.6e-9 * report.macs)
