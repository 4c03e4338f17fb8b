"""1-bit storage of the spike tensors saved for backward: exact, and smaller."""

import pytest
import timm
import torch
from torch.autograd.graph import saved_tensors_hooks

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models.spike_storage import compact_spikes, kept_for_backward, mark_spikes, pack, unpack


@pytest.mark.parametrize("shape", [(5,), (3, 7, 11), (2, 4096)])
def test_pack_round_trip_is_exact(shape):
    x = (torch.rand(shape) < 0.3).to(torch.bfloat16)
    packed = pack(x)
    assert packed.bits.dtype == torch.uint8 and packed.bits.numel() == -(-x.numel() // 8)
    assert torch.equal(unpack(packed), x) and unpack(packed).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 7, 11), (2, 4096)])
def test_numba_and_torch_packing_write_the_same_bits(shape, dtype):
    """float32 and float64 spikes on the CPU take the numba kernels, bfloat16 PyTorch's
    operations: the same spikes give the same bits and come back exactly, views included."""
    x = torch.rand(shape) < 0.3
    for view in (x, x.transpose(0, -1)):
        fused, reference = pack(view.to(dtype)), pack(view.to(torch.bfloat16))
        assert torch.equal(fused.bits, reference.bits)
        restored = unpack(fused)
        assert restored.dtype == dtype and torch.equal(restored, view.to(dtype))
        assert restored.stride() == view.to(dtype).stride()


def train_step(model, x, target, packing: bool):
    """Loss, gradients and the bytes saved for backward (parameters excluded)."""
    model.zero_grad()
    model.pack_saved_spikes = packing
    loss, saved = kept_for_backward(
        lambda: torch.nn.functional.cross_entropy(model(x), target), model.parameters()
    )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, saved


@pytest.mark.parametrize("name", ["maxformer_cifar", "ms_qkformer_cifar", "max_resnet18"])
def test_packed_spikes_leave_loss_and_gradients_bit_for_bit_unchanged(name):
    torch.manual_seed(0)
    kwargs = {"embed_dims": 64} if name != "max_resnet18" else {"embed_dims": (16, 32, 64)}
    model = timm.create_model(name, T=2, lif_backend="torch", **kwargs).train()
    x, target = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = train_step(model, x, target, packing=False)
    model.load_state_dict(state)
    packed = train_step(model, x, target, packing=True)
    assert torch.equal(plain[0], packed[0])
    assert plain[1].keys() == packed[1].keys()
    for key in plain[1]:
        assert torch.equal(plain[1][key], packed[1][key]), key
    assert packed[2] < 0.8 * plain[2]


def test_real_valued_tensors_are_kept_as_they_are():
    x = torch.randn(64, 128, requires_grad=True)
    kept = []
    with saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        with compact_spikes():
            (x.sigmoid() * 2).sum().backward()
    assert all(t.dtype == torch.float32 for t in kept)



def saved_inputs(make_input, weight: torch.Tensor) -> list[torch.Tensor]:
    """What ``make_input() @ weight`` keeps for backward besides ``weight``, inside
    ``compact_spikes`` (an outer hook sees the packed bits when it packs)."""
    kept = []
    with saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t), compact_spikes():
        (make_input() @ weight).sum().backward()
    return [t for t in kept if t.data_ptr() != weight.data_ptr()]


def test_only_marked_spikes_and_their_views_are_packed():
    weight = torch.randn(64, 8, requires_grad=True)
    spikes = (torch.rand(2, 64, 64) < 0.3).float()
    bits = spikes.numel() // 8
    marked_view = saved_inputs(lambda: mark_spikes(spikes.clone()).flatten(0, 1), weight)
    marked_reshape = saved_inputs(lambda: mark_spikes(spikes.clone().reshape(128, 64)), weight)
    unmarked = saved_inputs(lambda: spikes.clone().flatten(0, 1), weight)
    assert [(t.dtype, t.numel()) for t in marked_view] == [(torch.uint8, bits)]
    assert [(t.dtype, t.numel()) for t in marked_reshape] == [(torch.uint8, bits)]
    assert [t.dtype for t in unmarked] == [torch.float32]


def test_a_reused_id_is_not_taken_for_a_marked_tensor():
    weight = torch.randn(64, 8, requires_grad=True)
    kept = []
    with saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t), compact_spikes():
        for _ in range(100):
            mark_spikes(torch.zeros(64, 64))
        for _ in range(100):
            (torch.randn(64, 64) @ weight).sum().backward()
    assert {t.dtype for t in kept} == {torch.float32}


class _SavedLayout(torch.autograd.Function):
    """Identity that records the layout of the tensor autograd gives back to its backward."""

    seen: list = []

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        _SavedLayout.seen.append((tuple(x.shape), x.stride(), x.storage_offset() % 64))
        return grad


def test_unpacked_spikes_keep_the_strides_and_alignment_of_the_saved_view():
    """Spiking self-attention saves q and v as views with strides (512, 1, 64); backward must
    get that layout back (a contiguous copy makes the matrix-product backward take another
    path, and round differently on some CPUs)."""
    spikes = (torch.rand(9, 8, 64) < 0.3).float().requires_grad_()
    for view in (spikes.transpose(1, 2), spikes[1:].transpose(1, 2)):
        assert view.stride() == (512, 1, 64)
        packed = pack(view.detach())
        restored = unpack(packed)
        assert torch.equal(restored, view)
        assert restored.stride() == view.stride()
        assert restored.storage_offset() % 64 == view.storage_offset() % 64
        _SavedLayout.seen.clear()
        kept: list[torch.dtype] = []
        with saved_tensors_hooks(lambda t, kept=kept: kept.append(t.dtype) or t, lambda t: t):
            with compact_spikes():
                marked = mark_spikes(spikes * 1.0)
                piece = marked.transpose(1, 2) if view.storage_offset() == 0 else \
                    marked[1:].transpose(1, 2)
                _SavedLayout.apply(piece).sum().backward()
        assert kept == [torch.uint8]  # it was packed
        assert _SavedLayout.seen == [(tuple(view.shape), view.stride(), view.storage_offset() % 64)]
