"""`maxformer eval` with an ImageNet recipe (a published checkpoint) evaluates as the original's
imagenet/test.py did (github bic-L/MaxFormer at 6ddd4cc). Its settings, read from that code, are
kept below as data; each test checks our effective behaviour against them, on pictures written
to disk in an ImageNet folder layout."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset
from torchvision import transforms

from models.app.cli import build_parser, main
from models.app.config import config_from_args
from models.app.data import build_datasets, eval_batch_size, eval_loader
from models.app.training.distributed import DistContext
from models.app.training.engine import evaluate, evaluation_options
from models.checkpoint import original_key_order

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = ("imagenet_10_384_t4", "imagenet_10_512_t1", "imagenet_10_512_t4",
           "imagenet_10_768_t1", "imagenet_10_768_t4")
ORIGINAL_EVAL = {
    # imagenet/utils.py:143-148: crop_pct 224/256 up to 224 px, else 1.0; resize int(size / pct)
    "crop_pct_up_to_224": 224 / 256,
    "crop_pct_above_224": 1.0,
    "interpolation": transforms.InterpolationMode.BICUBIC,  # utils.py:150 PIL.Image.BICUBIC
    "mean": (0.485, 0.456, 0.406),  # utils.py:122 IMAGENET_DEFAULT_MEAN (timm 0.6.12)
    "std": (0.229, 0.224, 0.225),  # utils.py:123 IMAGENET_DEFAULT_STD
    "batch_scale": 2.5,  # test.py:227 batch_size=int(args.batch_size*2.5), drop_last False
    "batch_size": 64,  # conf/*.yml batch_size (per GPU)
    "autocast": torch.float16,  # utils.py:256 torch.cuda.amp.autocast()
    "loss_mean": "batch",  # utils.py:264 metric_logger.update(loss=loss.item()), n=1
    "batchnorm_layers": True,  # the model is evaluated as built: BatchNorm layers run
}
# (width, height, file format, PIL mode) of the pictures written to the test's val/ folder
PICTURES = [(300, 200, "JPEG", "RGB"), (200, 331, "PNG", "RGB"), (257, 256, "JPEG", "RGB"),
            (640, 97, "PNG", "L"), (225, 224, "PNG", "RGB"), (180, 240, "JPEG", "RGB")]


def original_eval_transform(size: int) -> transforms.Compose:
    """imagenet/utils.py:141-156 with the settings of ORIGINAL_EVAL, built from torchvision."""
    pct = ORIGINAL_EVAL["crop_pct_up_to_224" if size <= 224 else "crop_pct_above_224"]
    return transforms.Compose([
        transforms.Resize(int(size / pct), interpolation=ORIGINAL_EVAL["interpolation"]),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(ORIGINAL_EVAL["mean"], ORIGINAL_EVAL["std"]),
    ])


def picture_path(root: Path, index: int) -> Path:
    """Where picture ``index`` of PICTURES lies: class ``index % 2`` of ``root/val``."""
    fmt = PICTURES[index][2]
    return root / "val" / f"n0000000{index % 2}" / f"ILSVRC2012_val_{index:08d}.{fmt.lower()}"


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/val/<class>/<picture>``: the layout imagenet/utils.py:113 reads."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for index, (width, height, fmt, mode) in enumerate(PICTURES):
        path = picture_path(root, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(path, fmt)
    return root


def eval_config(name: str, data_dir: Path, *more: str):
    argv = ["eval", "--model", "maxformer_10_384", "--config", name, "--checkpoint", "x.pth.tar",
            "--data-dir", str(data_dir), *more]
    return config_from_args(build_parser().parse_args(argv))


@pytest.mark.parametrize("size", [224, 160, 288])
@pytest.mark.parametrize("name", RECIPES)
def test_eval_transform_is_the_originals(name: str, size: int, imagenet_folder: Path) -> None:
    """Every picture comes out of our evaluation data exactly as out of the original's
    transform (resize of the shorter side to int(size / crop_pct), bicubic, centre crop)."""
    more = () if size == 224 else ("--img-size", str(size))
    cfg = eval_config(name, imagenet_folder, *more)
    _, val_set, _ = build_datasets(cfg, need_train=False)
    reference = original_eval_transform(size)
    assert len(val_set) == len(PICTURES)
    for (path, _), (image, _) in zip(val_set.samples, val_set, strict=True):
        with Image.open(path) as picture:
            expected = reference(picture.convert("RGB"))
        assert image.shape == (3, size, size)
        assert torch.equal(image, expected), path


def test_resize_follows_the_originals_formula(imagenet_folder: Path) -> None:
    """The shorter side is resized to 256 at 224 px (a 300 x 200 picture to 384 x 256, then
    its centre 224 x 224), and to the size itself above 224 px (crop_pct 1)."""
    for size, short in ((224, 256), (160, 182), (288, 288)):
        reference = original_eval_transform(size)
        assert reference.transforms[0].size == short
    cfg = eval_config("imagenet_10_384_t4", imagenet_folder)
    _, val_set, _ = build_datasets(cfg, need_train=False)
    path = next(p for p, _ in val_set.samples if p.endswith("00000000.jpeg"))
    with Image.open(path) as picture:
        resized = picture.resize((384, 256), Image.BICUBIC)
    crop = torch.from_numpy(np.asarray(resized.crop((80, 16, 304, 240)), dtype=np.float32))
    mean, std = torch.tensor(ORIGINAL_EVAL["mean"]), torch.tensor(ORIGINAL_EVAL["std"])
    expected = (crop.permute(2, 0, 1) / 255 - mean[:, None, None]) / std[:, None, None]
    got = val_set[val_set.samples.index((path, 0))][0]
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", RECIPES)
def test_eval_batch_autocast_and_loss_are_the_originals(name: str, imagenet_folder: Path) -> None:
    cfg = eval_config(name, imagenet_folder)
    assert cfg.batch_size == ORIGINAL_EVAL["batch_size"]
    assert eval_batch_size(cfg) == int(ORIGINAL_EVAL["batch_size"] * ORIGINAL_EVAL["batch_scale"])
    assert eval_batch_size(eval_config(name, imagenet_folder, "--batch-size", "10")) == 25
    options = evaluation_options(cfg, torch.device("cuda"))
    assert options == {"amp_dtype": ORIGINAL_EVAL["autocast"], "loss_mean":
                       ORIGINAL_EVAL["loss_mean"], "fold_bn": not ORIGINAL_EVAL["batchnorm_layers"]}
    assert evaluation_options(cfg, torch.device("cpu"))["amp_dtype"] is None


CPU = DistContext(0, 1, torch.device("cpu"))


def test_loss_is_the_mean_of_batch_means_or_of_images() -> None:
    """Five samples in batches of 2, 2 and 1: "batch" weighs the last batch's one sample as
    much as each batch of two (the original's MetricLogger), "image" weighs samples equally."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.2, 0.7], [4.0, 0.0]])
    targets = torch.tensor([0, 0, 1, 1, 1])
    per_image = F.cross_entropy(logits.double(), targets, reduction="none")
    by_batch = (per_image[:2].mean() + per_image[2:4].mean() + per_image[4]) / 3
    loader = eval_loader(TensorDataset(logits, targets), 2, 0, CPU)
    for mean, expected in (("batch", by_batch), ("image", per_image.mean())):
        metrics = evaluate(nn.Identity(), loader, CPU, loss_mean=mean)
        assert metrics["loss"] == pytest.approx(float(expected), rel=1e-6)
        assert metrics["acc1"] == pytest.approx(100 * 3 / 5)


def batchnorm_calls(model: nn.Module, fold_bn: bool) -> int:
    calls = []
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(lambda *_: calls.append(1))
    data = TensorDataset(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    evaluate(model, eval_loader(data, 2, 0, CPU), CPU, fold_bn=fold_bn)
    return len(calls)


def test_batchnorm_layers_run_when_not_folded() -> None:
    model = timm.create_model("maxformer_cifar", embed_dims=16, num_heads=2, T=1,
                              lif_backend="torch")
    assert batchnorm_calls(model, fold_bn=False) > 0
    assert batchnorm_calls(model, fold_bn=True) == 0


def firing(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """``model`` in eval mode with activity that depends on the input (a fresh network is
    silent): every BatchNorm sets its output to N(2, 1), so that about half of the LIF
    neurons after it fire at the first step, its statistics measured on uniform noise."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # the cumulative average
            nn.init.constant_(module.weight, 1.0)
            nn.init.constant_(module.bias, 2.0)
    with torch.no_grad():
        for _ in range(3):
            model.train()(torch.rand(8, *shape, generator=generator))
    return model.eval()


def test_eval_command_on_a_legacy_file_scores_as_the_original(
    imagenet_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`maxformer eval --config imagenet_...` on a file saved under other names (the published
    checkpoints' case): loaded by order, every picture transformed as the original, the
    BatchNorms run, batches of int(2 x 2.5) = 5 (6 pictures: 5 and 1), loss the mean of the
    two batch means."""
    kwargs = {"embed_dims": 64, "T": 1, "num_classes": 2, "lif_backend": "torch"}
    model = firing(timm.create_model("maxformer_imagenet", **kwargs), (3, 64, 64))
    state_dict = model.state_dict()
    legacy = {f"old{i}.w": state_dict[key] for i, key in enumerate(original_key_order(model))}
    checkpoint = tmp_path / "10-64-T1.pth.tar"
    torch.save({"state_dict": legacy, "epoch": 199}, checkpoint)
    report = tmp_path / "eval.json"
    argv = ["eval", "--config", "imagenet_10_384_t4", "--model", "maxformer_imagenet",
            "--set", "model_kwargs={embed_dims: 64}", "--T", "1", "--img-size", "64",
            "--batch-size", "2", "--checkpoint", str(checkpoint), "--data-dir",
            str(imagenet_folder), "--device", "cpu", "--no-progress", "--json", str(report),
            "--lif-backend", "torch", "--workers", "0"]
    with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
        assert main(argv) == 0
    assert any("loaded its" in r.getMessage() and "by order" in r.getMessage()
               for r in caplog.records)
    got = json.loads(report.read_text())
    reference = original_eval_transform(64)
    images, targets = [], []
    for index in range(len(PICTURES)):
        with Image.open(picture_path(imagenet_folder, index)) as picture:
            images.append(reference(picture.convert("RGB")))
        targets.append(index % 2)
    order = sorted(range(len(PICTURES)), key=lambda i: (i % 2, i))  # ImageFolder's order
    inputs, labels = torch.stack(images)[order], torch.tensor(targets)[order]
    with torch.no_grad():
        logits = model(inputs)
    assert logits.std(0).min() > 0.01  # the network's output depends on its input
    losses = F.cross_entropy(logits.double(), labels, reduction="none")
    assert got["images"] == len(PICTURES)
    assert got["acc1"] == pytest.approx(100 * float((logits.argmax(1) == labels).double().mean()))
    assert got["loss"] == pytest.approx(float((losses[:5].mean() + losses[5]) / 2), rel=1e-5)
