"""torch.compile traces a whole model, its fused neurons included, in one graph."""

import timm
import torch

import models  # noqa: F401  (registers the model zoo)


def test_compiled_training_step_equals_eager():
    torch.manual_seed(0)
    model = timm.create_model("maxformer_cifar", T=1, embed_dims=16, lif_backend="torch").train()
    x = torch.randn(2, 3, 16, 16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    eager = model(x)
    eager.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.load_state_dict(state)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager)
    for expected, p in zip(eager_grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, expected)
