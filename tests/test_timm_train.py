"""maxformer_cifar trained for a few steps the way timm's train.py trains any timm model."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import Mixup, create_dataset, create_loader, resolve_data_config
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

import models.zoo  # noqa: F401  (registers the zoo with timm)


def image_folder(root, classes: int = 2, per_class: int = 8, size: int = 32) -> None:
    """`root/train/<class>/<n>.png`: random RGB images, class k brighter than class k - 1."""
    rng = np.random.default_rng(0)
    for k in range(classes):
        folder = root / "train" / f"class{k}"
        folder.mkdir(parents=True)
        for n in range(per_class):
            pixels = rng.integers(0, 128, (size, size, 3)) + 127 * k // max(1, classes - 1)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{n}.png")


@pytest.mark.usefixtures("one_thread")
def test_maxformer_cifar_trains_as_timm_train_py_trains(tmp_path):
    image_folder(tmp_path)
    torch.manual_seed(0)
    np.random.seed(0)  # timm's Mixup draws its mixing with numpy
    model = timm.create_model(
        "maxformer_cifar", num_classes=2, in_chans=3, drop_rate=0.1, drop_path_rate=0.1,
        global_pool="avg", embed_dims=32, num_heads=2, T=2,
    )
    model.set_grad_checkpointing(enable=True)
    data_config = resolve_data_config({}, model=model)
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=1e-3, weight_decay=0.05, momentum=0.9, layer_decay=0.75
    )
    dataset = create_dataset("", root=str(tmp_path), split="train", is_training=True)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2)
    loader = create_loader(
        dataset, input_size=data_config["input_size"], batch_size=4, is_training=True,
        interpolation=data_config["interpolation"], mean=data_config["mean"],
        std=data_config["std"], num_workers=0, device=torch.device("cpu"),
        use_prefetcher=False,
    )
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=2, warmup_epochs=1, updates_per_epoch=len(loader)
    )
    loss_fn = SoftTargetCrossEntropy()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = []
    got_gradient = set()
    model.train()
    for epoch in range(2):
        for step, (images, targets) in enumerate(loader):
            images, targets = mixup(images, targets)
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            got_gradient |= {n for n, p in model.named_parameters() if p.grad.abs().sum() > 0}
            optimizer.step()
            scheduler.step_update(num_updates=epoch * len(loader) + step + 1)
            losses.append(loss.item())
        scheduler.step(epoch + 1)
    assert len(losses) == 8 and all(np.isfinite(losses))
    # every parameter is trained; one whose neuron never fired has a zero gradient and no decay
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert got_gradient <= changed
    assert len(got_gradient) > 0.9 * len(before)
    scales = sorted({group["lr_scale"] for group in optimizer.param_groups})
    blocks = sum(len(model.get_submodule(f"stage{i}")) for i in (1, 2, 3))
    assert len(scales) == 1 + blocks + 2 + 1  # stem, blocks, later embeddings, head
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.75 ** (len(scales) - 1))
