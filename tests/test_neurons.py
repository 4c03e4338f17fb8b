"""The neuron core: semantics against spikingjelly, backends against each other, memory, errors."""

import itertools
import logging
import math
import sys

import pytest
import torch
from torch import nn

from models.neurons import (
    MultiStepIF,
    MultiStepLIF,
    NeuronSpec,
    functional,
    if_multistep,
    keep_input,
    lif_multistep,
    neuron_multistep,
    resolve_backend,
)
from models.neurons.spikingjelly_backend import node as spikingjelly_node
from models.spike_storage import kept_for_backward

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = {1: (13,), 2: (3, 7), 4: (2, 3, 5), 7: (11,), 16: (4, 9)}


CPU_BACKENDS = ["numba", "torch"]
FUSED = ["numba", "torch", "triton"]


def all_specs(kind: str):
    """Every combination the issue names, for LIF or IF."""
    taus = [2.0] if kind == "lif" else [None]
    decay = [True, False] if kind == "lif" else [True]
    for tau, th, reset, di, detach, sur in itertools.product(
        taus, [1.0, 0.5], [0.0, None, -0.2], decay, [True, False], ["sigmoid", "atan"]
    ):
        yield NeuronSpec(tau, th, reset, di, detach, sur)


def on(backend: str) -> str:
    """The device a backend runs on in this test session (triton: the GPU if there is one)."""
    return DEVICE if backend == "triton" else "cpu"


def run(x, spec, backend, v_init=None, grad=None, grad_v=None):
    """Spikes, final membrane and the gradients of ``sum(S * grad) + sum(V_T * grad_v)``,
    all on the CPU."""
    device = on(backend)
    x = x.detach().to(device).requires_grad_()
    v0 = None if v_init is None else v_init.detach().to(device).requires_grad_()
    spikes, v_final = neuron_multistep(x, spec, backend, v0, return_state=True)
    loss = (spikes * grad.to(device)).sum()
    if grad_v is not None:
        loss = loss + (v_final * grad_v.to(device)).sum()
    loss.backward()
    outputs = spikes.detach(), v_final.detach(), x.grad, None if v0 is None else v0.grad
    return tuple(None if t is None else t.cpu() for t in outputs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["lif", "if"])
@pytest.mark.parametrize("steps", sorted(SHAPES))
def test_cpu_backends_equal_spikingjelly_in_float64(kind, steps, backend):
    gen = torch.Generator().manual_seed(steps)
    for spec in all_specs(kind):
        x = torch.randn(steps, *SHAPES[steps], generator=gen, dtype=torch.float64) * 3 + 1
        grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        spikes, v_final, grad_x, _ = run(x, spec, backend, grad=grad)
        ref_x = x.clone().requires_grad_()
        node = spikingjelly_node(spec)
        ref_spikes = node(ref_x)
        (ref_spikes * grad).sum().backward()
        assert 0 < spikes.mean() < 1, spec
        assert torch.equal(spikes, ref_spikes), spec
        assert torch.equal(v_final, node.v.detach()), spec
        torch.testing.assert_close(grad_x, ref_x.grad, rtol=1e-12, atol=1e-14, msg=str(spec))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backends_round_as_spikingjelly_in_float32(backend):
    """Spikes and membranes are spikingjelly's bit for bit (the same arithmetic), with a leak
    (tau 3) whose reciprocal is not exact and inputs close to the threshold."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(6, 4000, generator=gen) * 0.02 + 0.99
    for spec in [NeuronSpec(tau=3.0), NeuronSpec(tau=3.0, v_reset=-0.2, decay_input=False),
                 NeuronSpec(tau=None, v_reset=None, v_threshold=0.7)]:
        spikes, v_final = neuron_multistep(x, spec, backend, return_state=True)
        node = spikingjelly_node(spec)
        with torch.no_grad():
            assert torch.equal(spikes, node(x)), spec
        assert torch.equal(v_final, node.v), spec


def test_spikingjelly_backend_matches_torch_backend():
    """The ``spikingjelly`` backend is the baseline it says it is."""
    x = torch.randn(4, 6, 5, dtype=torch.float64) + 0.5
    grad = torch.randn_like(x)
    for spec in [NeuronSpec(), NeuronSpec(tau=None, v_reset=None, surrogate="atan")]:
        ours = run(x, spec, "torch", grad=grad)
        theirs = run(x, spec, "spikingjelly", grad=grad)
        for a, b in zip(ours[:3], theirs[:3], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_hand_computed_spike_trains():
    # IF, constant 0.3: V = .3 .6 .9 1.2 -> spike, reset to 0, and again.
    x = torch.full((8, 1), 0.3, dtype=torch.float64)
    assert if_multistep(x, backend="torch").flatten().tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    # LIF tau 2, constant 1.5: H = .75, 1.125 -> spike, reset; .75, 1.125 -> spike.
    x = torch.full((4, 1), 1.5, dtype=torch.float64)
    assert lif_multistep(x, backend="torch").flatten().tolist() == [0, 1, 0, 1]
    # Soft reset keeps the excess: H = 1.125 -> V = .125; H = .8125; H = 1.15625 -> spike.
    assert lif_multistep(x[:3], v_reset=None, backend="torch").flatten().tolist() == [0, 1, 0]
    spikes, v = lif_multistep(x[:2], v_reset=None, backend="torch", return_state=True)
    assert v.item() == pytest.approx(0.125)


def charged_potential(x: torch.Tensor, spec: NeuronSpec) -> torch.Tensor:
    """``H[t]`` ``[T, ...]`` in float64, from the membrane after each step."""
    x = x.double()
    v = torch.full(x.shape[1:], spec.v_rest, dtype=torch.float64)
    charged = []
    for t in range(x.shape[0]):
        charged.append(spec.decay * v + spec.input_gain * x[t] + spec.bias)
        _, v = neuron_multistep(x[t : t + 1], spec, "torch", v, return_state=True)
    return torch.stack(charged)


TRITON_SPECS = [
    NeuronSpec(),
    NeuronSpec(tau=2.0, v_threshold=0.5, v_reset=None, decay_input=False, surrogate="atan"),
    NeuronSpec(tau=4.0, v_reset=-0.2, detach_reset=False),
    NeuronSpec(tau=None, v_reset=None, detach_reset=False, surrogate="atan"),
    NeuronSpec(tau=None, v_threshold=0.5),
]


@pytest.mark.parametrize(
    "dtype, rtol",
    [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)],
    ids=["fp32", "fp16", "bf16"],
)
@pytest.mark.parametrize("steps", [1, 4, 7, 20])
def test_triton_backend_matches_torch_backend(steps, dtype, rtol):
    """Spikes agree except where H is within fp32 rounding of the threshold; gradients agree
    to the dtype's precision (``rtol``, a few units of its last place) on neurons whose
    spikes agree. T=20 runs the long-sequence kernel."""
    gen = torch.Generator().manual_seed(steps)
    shape = (3, 37)
    for spec in TRITON_SPECS:
        x = (torch.randn(steps, *shape, generator=gen) * 1.5 + 0.4).to(dtype)
        v0 = torch.randn(shape, generator=gen) * 0.3
        grad = torch.randn(x.shape, generator=gen).to(dtype)
        grad_v = torch.randn(shape, generator=gen)
        ref = run(x, spec, "torch", v0, grad, grad_v)
        out = run(x, spec, "triton", v0, grad, grad_v)
        assert out[0].dtype == dtype and out[2].dtype == dtype
        flipped = out[0] != ref[0]
        if flipped.any():
            h = charged_potential(x, spec)
            margin = (h[flipped] - spec.v_threshold).abs()
            assert margin.max() <= 1e-5 * max(1.0, abs(spec.v_threshold)), spec
        agree = ~flipped.any(0)
        for a, b in zip(out[1:], ref[1:], strict=True):
            a, b = a.float(), b.float()
            scale = b.abs().max().item() + 1e-6
            if a.dim() > agree.dim():
                a, b = a[:, agree], b[:, agree]
            else:
                a, b = a[agree], b[agree]
            torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale, msg=str(spec))


def test_triton_spikes_match_in_float32_for_the_default_neuron():
    x = torch.randn(4, 2, 300, generator=torch.Generator().manual_seed(1)) + 0.6
    spikes = lif_multistep(x.to(DEVICE), backend="triton").cpu()
    assert torch.equal(spikes, lif_multistep(x, backend="torch"))


@pytest.mark.parametrize("backend", FUSED)
def test_non_contiguous_input(backend):
    x = (torch.randn(6, 4, 10) * 2).to(on(backend)).transpose(0, 1)
    assert not x.is_contiguous()
    expected = lif_multistep(x.contiguous().cpu(), backend="torch")
    assert torch.equal(lif_multistep(x, backend=backend).cpu(), expected)


@pytest.mark.parametrize("backend", FUSED)
def test_chunked_sequence_equals_whole_sequence(backend):
    """Feeding a sequence in two chunks through ``v_init`` gives the same spikes and
    gradients as one call, so gradients flow through both ends of the state."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 4, 5, generator=gen) * 1.5 + 0.5).to(on(backend))
    grad = torch.randn(x.shape, generator=gen).to(on(backend))
    whole = x.clone().requires_grad_()
    spikes = lif_multistep(whole, v_reset=None, backend=backend)
    (spikes * grad).sum().backward()
    parts = x.clone().requires_grad_()
    first, v = lif_multistep(parts[:2], v_reset=None, backend=backend, return_state=True)
    second = lif_multistep(parts[2:], v_reset=None, backend=backend, v_init=v)
    chunked = torch.cat([first, second])
    (chunked * grad).sum().backward()
    assert torch.equal(chunked, spikes)
    torch.testing.assert_close(parts.grad, whole.grad, rtol=1e-5, atol=1e-6)


def saved_bytes(backend: str, x: torch.Tensor) -> int:
    x = x.to(on(backend)).requires_grad_()
    return kept_for_backward(lambda: lif_multistep(x, backend=backend))[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_backends_keep_exactly_the_input_for_backward(dtype):
    x = torch.randn(4, 3, 50).to(dtype)
    nbytes = x.numel() * x.element_size()
    for backend in FUSED:
        assert saved_bytes(backend, x) == nbytes, backend


def test_spikingjelly_keeps_more_than_the_input():
    x = torch.randn(4, 3, 50)
    assert saved_bytes("spikingjelly", x) >= 2 * x.numel() * x.element_size()


@pytest.mark.parametrize("backend", FUSED)
def test_nan_input_silences_the_neuron_from_then_on(backend):
    x = torch.full((6, 3), 1.5)
    x[2, 1] = float("nan")
    x = x.to(on(backend)).requires_grad_()
    spikes, v = lif_multistep(x, backend=backend, return_state=True)
    assert spikes[:, 1].tolist() == [0, 1, 0, 0, 0, 0]
    assert torch.equal(spikes[:, 0], spikes[:, 2]) and spikes[:, 0].sum() > 1
    assert torch.isnan(v[1]) and not torch.isnan(v[0])
    spikes.sum().backward()
    assert torch.isnan(x.grad[:, 1]).any() and not torch.isnan(x.grad[:, 0]).any()


@pytest.mark.parametrize("backend", FUSED)
def test_torch_compile_traces_the_custom_ops(backend):
    """Compiled, each backend's passes are its custom ops in the forward and backward graphs
    (eager calls them directly), and compiled equals eager."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    targets = {"forward": set(), "backward": set()}

    def recorder(kind):
        def compiler(gm, example_inputs):
            targets[kind].update(str(node.target) for node in gm.graph.nodes)
            return make_boxed_func(gm.forward)
        return compiler

    def f(z):
        return lif_multistep(z * 2.0, backend=backend).sum()

    torch._dynamo.reset()
    x = torch.randn(4, 3, 40, device=on(backend))
    eager, compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    f(eager).backward()
    compiler = aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward"))
    out = torch.compile(f, backend=compiler, fullgraph=True)(compiled)
    out.backward()
    assert f"maxformer.{backend}_neuron_forward.default" in targets["forward"]
    assert f"maxformer.{backend}_neuron_backward.default" in targets["backward"]
    assert out.item() == f(x).item()
    torch.testing.assert_close(compiled.grad, eager.grad)


class SmallSpikingNet(nn.Module):
    """Linear, LIF, then BatchNorm-then-LIF (the fused variant): ``[T, B, 8] -> [T, B, 3]``."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.norm = nn.BatchNorm1d(3)
        self.lif = MultiStepLIF(backend=backend)
        self.lif_norm = MultiStepLIF(tau=3.0, v_reset=None, backend=backend)

    def forward(self, x):
        return self.lif_norm(self.lif(self.fc(x)) * 2.0 + 0.2, norm=self.norm)


@pytest.mark.parametrize("backend", FUSED)
def test_torch_export_in_eval_mode_equals_eager(backend):
    """``torch.export`` (non-strict, its default) traces the neurons as their custom ops, with
    the parameters left trainable."""
    torch.manual_seed(0)
    model = SmallSpikingNet(backend).to(on(backend)).eval()
    nn.init.uniform_(model.norm.running_var, 0.5, 1.5)
    x = torch.randn(4, 6, 8, device=on(backend)) * 2
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes}
    assert f"maxformer.{backend}_neuron_forward.default" in targets
    expected = model(x)
    assert 0 < expected.mean() < 1
    assert torch.equal(exported.module()(x), expected)


def test_modules_have_no_state_and_restart_every_call():
    lif = MultiStepLIF(tau=3.0, v_threshold=0.5, backend="torch")
    ifn = MultiStepIF(v_reset=None, backend="torch")
    assert lif.state_dict() == {} and list(lif.buffers()) == [] and list(lif.parameters()) == []
    assert ifn.state_dict() == {}
    x = torch.rand(5, 2, 8)
    assert torch.equal(lif(x), lif(x))
    assert torch.equal(lif(x), lif_multistep(x, tau=3.0, v_threshold=0.5, backend="torch"))
    assert torch.equal(ifn(x), if_multistep(x, v_reset=None, backend="torch"))
    assert "tau=3.0" in repr(lif) and "v_threshold=0.5" in repr(lif)
    assert "tau" not in repr(ifn) and "v_reset=None" in repr(ifn)


def test_auto_backend_is_numba_on_the_cpu_for_float32_and_float64():
    assert resolve_backend("auto", torch.zeros(1)) == "numba"
    assert resolve_backend("auto", torch.zeros(1, dtype=torch.float64)) == "numba"
    assert resolve_backend("auto", torch.zeros(1, dtype=torch.bfloat16)) == "torch"
    assert resolve_backend("numba", torch.zeros(1, dtype=torch.float16)) == "torch"
    assert resolve_backend("torch", torch.zeros(1)) == "torch"


def fallback_results(x: torch.Tensor, spec: NeuronSpec, backend: str):
    grad = torch.linspace(-1, 1, x.numel(), dtype=x.dtype).reshape(x.shape)
    v0 = torch.linspace(-0.5, 0.5, x[0].numel(), dtype=x.dtype).reshape(x.shape[1:])
    return run(x, spec, backend, v_init=v0, grad=grad, grad_v=v0.flip(-1))


def assert_same_results(ours, fallback):
    spikes, v_final, grad_x, grad_v0 = ours
    assert torch.equal(spikes, fallback[0]) and torch.equal(v_final, fallback[1])
    torch.testing.assert_close(grad_x, fallback[2], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_v0, fallback[3], rtol=1e-12, atol=1e-14)


FALLBACK_SPECS = [NeuronSpec(), NeuronSpec(tau=3.0, v_reset=None, detach_reset=False,
                                           surrogate="atan")]


@pytest.mark.parametrize("spec", FALLBACK_SPECS, ids=["default", "soft-atan"])
def test_without_numba_the_cpu_runs_the_torch_backend_with_one_log_line(
    spec, monkeypatch, caplog
):
    x = torch.randn(5, 3, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = fallback_results(x * 2 + 0.5, spec, "numba")
    monkeypatch.setattr(functional, "_NUMBA_INSTALLED", False)
    monkeypatch.setattr(functional, "_said", set())
    with caplog.at_level(logging.WARNING, logger="models.neurons.functional"):
        assert resolve_backend("auto", x) == "torch"
        fallback = fallback_results(x * 2 + 0.5, spec, "numba")
        assert_same_results(ours, fallback)
        lif_multistep(x)
    assert [r.getMessage() for r in caplog.records] == [
        "numba is not installed: CPU neurons run on the torch backend, which is slower "
        "(pip install numba)"
    ]


def test_a_numba_that_does_not_import_falls_back_to_the_torch_passes(monkeypatch, caplog):
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = fallback_results(x * 2 + 0.5, NeuronSpec(), "numba")
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "models.neurons.numba_backend")
    monkeypatch.setattr(keep_input, "_modules", {})
    with caplog.at_level(logging.WARNING, logger="models.neurons.keep_input"):
        fallback = fallback_results(x * 2 + 0.5, NeuronSpec(), "numba")
        fallback_results(x, NeuronSpec(), "numba")
    assert keep_input._modules["numba"].__name__ == "models.neurons.torch_backend"
    assert len(caplog.records) == 1 and "numba does not import" in caplog.records[0].getMessage()
    assert_same_results(ours, fallback)


@pytest.mark.parametrize("backend", ["auto", *FUSED, "spikingjelly"])
def test_no_time_steps_give_no_spikes_and_the_initial_state(backend):
    device = on(backend) if backend != "auto" else "cpu"
    x = torch.empty(0, 3, 4, device=device, requires_grad=True)
    v0 = torch.randn(3, 4, device=device, requires_grad=True)
    spikes, v = lif_multistep(x, backend=backend, v_init=v0, return_state=True)
    assert spikes.shape == (0, 3, 4) and torch.equal(v, v0)
    v.sum().backward()
    assert torch.equal(v0.grad, torch.ones_like(v0))
    spikes, v = if_multistep(x, v_reset=-0.5, backend=backend, return_state=True)
    assert spikes.shape == (0, 3, 4) and torch.equal(v, torch.full_like(v0, -0.5))
    assert lif_multistep(torch.empty(0, device=device), backend=backend).shape == (0,)


INF = math.inf


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # interpreter
@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
@pytest.mark.parametrize("detach_reset", [True, False], ids=["detach", "no-detach"])
def test_infinite_input(backend, v_reset, detach_reset):
    """+inf fires (hard reset: the neuron goes on from v_reset; soft reset: its membrane stays
    +inf and it fires from then on), -inf silences the neuron with its membrane at -inf,
    and the gradients are finite and the same in every backend."""
    columns = [[0.5, 1.5, 1.5, 2.5], [INF, 0.7, 1.5, 2.5], [-INF, 0.8, 1.5, 2.5]]
    x = torch.tensor(columns).t().contiguous()
    spec = NeuronSpec(v_reset=v_reset, detach_reset=detach_reset)
    grad = torch.linspace(0.5, 1.5, x.numel()).reshape(x.shape)
    spikes, v_final, grad_x, _ = run(x, spec, backend, grad=grad)
    plain = [0.0, 0.0, 1.0, 1.0]
    after_plus_inf = [1.0, 0.0, 0.0, 1.0] if spec.hard_reset else [1.0, 1.0, 1.0, 1.0]
    assert spikes.t().tolist() == [plain, after_plus_inf, [0.0] * 4]
    assert v_final[1].item() == (0.0 if spec.hard_reset else INF)
    assert v_final[2].item() == -INF
    assert torch.isfinite(grad_x).all()
    assert grad_x[0, 1] == 0 and grad_x[0, 2] == 0
    if spec.hard_reset:
        assert grad_x[1:, 1].abs().min() > 0
    reference = run(x, spec, "torch", grad=grad)
    assert torch.equal(spikes, reference[0]) and torch.equal(v_final, reference[1])
    torch.testing.assert_close(grad_x, reference[2])



def test_alpha_defaults_follow_the_surrogate():
    assert NeuronSpec(surrogate="sigmoid").alpha == 4.0
    assert NeuronSpec(surrogate="atan").alpha == 2.0
    assert NeuronSpec(surrogate="atan", alpha=3.0).alpha == 3.0


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: lif_multistep(torch.tensor(1.0)), ValueError, "at least 1 dimension"),
        (lambda: lif_multistep(torch.ones(3, 2, dtype=torch.int64)), TypeError, "floating"),
        (lambda: lif_multistep(torch.ones(3, 2), tau=1.0), ValueError, "tau"),
        (lambda: lif_multistep(torch.ones(3, 2), tau=0.5), ValueError, "> 1"),
        (lambda: lif_multistep(torch.ones(3, 2), tau=math.nan), ValueError, "tau"),
        (lambda: lif_multistep(torch.ones(3, 2), surrogate="relu"), ValueError, "'atan'"),
        (lambda: lif_multistep(torch.ones(3, 2), backend="cupy"), ValueError, "'spikingjelly'"),
        (lambda: MultiStepLIF(backend="cuda"), ValueError, "valid choices"),
        (
            lambda: lif_multistep(torch.ones(3, 2, device="meta"), backend="numba"),
            ValueError,
            "runs CPU tensors",
        ),
        (lambda: lif_multistep(torch.ones(3, 2), alpha=-1.0), ValueError, "alpha"),
        (
            lambda: lif_multistep(torch.ones(3, 2), v_init=torch.zeros(3)),
            ValueError,
            "v_init",
        ),
        (
            lambda: lif_multistep(torch.ones(3, 2, dtype=torch.float64), backend="triton"),
            TypeError,
            "float64",
        ),
    ],
)
def test_bad_input_is_named(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_triton_on_a_cpu_tensor_needs_the_interpreter_or_a_gpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        lif_multistep(torch.ones(3, 2), backend="triton")
