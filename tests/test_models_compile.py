"""torch.compile traces a whole model, its fused neurons included, in one graph; with grad
checkpointing too."""

import pytest
import timm
import torch

import models.zoo  # noqa: F401  (registers the zoo with timm)

# (device, neuron backend, compiler backend): the CPU everywhere; on a GPU also the Triton
# kernels under inductor.
SETTINGS = [("cpu", "torch", "aot_eager")] + (
    [("cuda", "triton", "inductor")] if torch.cuda.is_available() else []
)


@pytest.mark.parametrize("grad_checkpointing", [False, True])
@pytest.mark.parametrize("device, lif_backend, compiler", SETTINGS)
def test_compiled_training_step_equals_eager(device, lif_backend, compiler, grad_checkpointing):
    """The compiled step (with its blocks checkpointed, or not) equals the plain eager one:
    outputs, gradients and BatchNorm statistics."""
    torch.manual_seed(0)
    model = timm.create_model("maxformer_cifar", T=1, embed_dims=16, lif_backend=lif_backend)
    model.to(device).train()
    x = torch.randn(2, 3, 16, 16, device=device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        eager = model(x)
        eager.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    eager_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.zero_grad()
    model.load_state_dict(state)
    model.set_grad_checkpointing(grad_checkpointing)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        compiled = torch.compile(model, backend=compiler, fullgraph=True)(x)
        compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager)
    for expected, p in zip(eager_grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, expected)
    torch.testing.assert_close(model.state_dict(), eager_state)
