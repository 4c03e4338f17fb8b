"""A user's own data: an image folder from training to its spectra, representative samples,
non-finite outputs reported as such, Grad-CAM's min-max maps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from models.app.analysis.images import held_out_images, picture_folder
from models.app.cli import main
from models.app.config import TrainConfig, build_config
from models.app.datasets import DATASETS, unknown_dataset
from models.app.errors import UserError
from models.app.samples import stratified_order
from models.app.training.distributed import setup
from models.app.training.engine import evaluate
from models.gradcam import grad_cam, min_max

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
TINY = ["--epochs", "1", "--batch-size", "10", "--T", "1", "--set",
        "model_kwargs={embed_dims: 16}", "--no-progress"]


def write_digits(root, per_class, split, size=28):
    """Grey pictures whose class is the row of a bright bar: ``root/split/<k>/<i>.png``."""
    rng = np.random.default_rng(len(split) * 100 + per_class)
    for k in range(CLASSES):
        folder = root / split / str(k)
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
            pixels[2 + 2 * k: 4 + 2 * k] = 250
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory):
    """A Max-Former trained one epoch with --dataset folder on a relative --data-dir of grey
    28x28 pictures (10 classes); the run folder."""
    top = tmp_path_factory.mktemp("own")
    write_digits(top / "pictures", 3, "train")
    write_digits(top / "pictures", 2, "val")
    before = os.getcwd()
    os.chdir(top)
    try:
        assert main(["train", "--dataset", "folder", "--data-dir", "pictures",
                     "--output", str(top / "run"), *TINY]) == 0
    finally:
        os.chdir(before)
    return top / "run"


def test_a_grey_folder_trains_at_its_size_with_one_channel(grey_run):
    config = yaml.safe_load((grey_run / "config.yaml").read_text())
    assert (config["dataset"], config["img_size"], config["in_chans"]) == ("folder", 28, 1)
    assert config["num_classes"] == CLASSES
    assert os.path.isabs(config["data_dir"])
    assert len(config["mean"]) == len(config["std"]) == 1 and 0 < config["mean"][0] < 1
    assert config["hflip"] == 0.5 and config["scale"] == [0.08, 1.0]  # not the digits recipe
    checkpoint = torch.load(grey_run / "checkpoint-last.pt", weights_only=False)
    assert checkpoint["model"]["head.weight"].shape[0] == CLASSES
    first_conv = next(v for k, v in checkpoint["model"].items() if v.ndim == 4)
    assert first_conv.shape[1] == 1


def test_every_command_reads_the_folder_checkpoint_from_another_folder(
        grey_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    checkpoint = str(grey_run / "checkpoint-last.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--no-progress"]) == 0
    assert f"folder ({2 * CLASSES} images)" in capsys.readouterr().out
    assert main(["energy", "--checkpoint", checkpoint, "--no-progress"]) == 0
    assert "28x28 px" in capsys.readouterr().out
    assert main(["spectra", "--checkpoint", checkpoint, "--twins", "--cam", "--samples", "10",
                 "--output", "spectra", "--no-progress"]) == 0
    report = json.loads((tmp_path / "spectra" / "spectra.json").read_text())
    assert len(report["networks"]) == 3 and report["sample_seed"] == 0
    assert (tmp_path / "spectra" / "cam.png").is_file()


def test_spectra_reads_only_the_held_out_split(tmp_path, grey_run, capsys):
    import shutil
    config = yaml.safe_load((grey_run / "config.yaml").read_text())
    only_val = tmp_path / "only_val"
    shutil.copytree(os.path.join(config["data_dir"], "val"), only_val / "val")
    checkpoint = str(grey_run / "checkpoint-last.pt")
    assert main(["spectra", "--checkpoint", checkpoint, "--data-dir", str(only_val),
                 "--samples", "4", "--output", str(tmp_path / "s"), "--no-progress"]) == 0


def test_a_moved_folder_names_where_its_path_came_from(grey_run, tmp_path, capsys):
    checkpoint = torch.load(grey_run / "checkpoint-last.pt", weights_only=False)
    checkpoint["config"]["data_dir"] = str(tmp_path / "gone")
    torch.save(checkpoint, tmp_path / "moved.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "moved.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "gone" in err and "data_dir of the run's config" in err and "--data-dir" in err


def test_stratified_samples_hold_every_class_equally(tmp_path):
    write_digits(tmp_path, 3, "val")
    images = held_out_images("folder", 20, 28, str(tmp_path), None)
    labels = [images.items[i][1] for i in range(len(images.items))]
    assert sorted(labels) == sorted(list(range(CLASSES)) * 2)
    assert sorted(labels[:CLASSES]) == list(range(CLASSES))  # one per class first (--cam)
    assert "seed 0" in images.source
    pictures = picture_folder(tmp_path / "val", 20, 28, 1, (0.5,), (0.5,), 1)
    assert sorted(p.parent.name for p in pictures.items.files) == sorted(
        [str(k) for k in range(CLASSES)] * 2)


def test_stratified_order_closed_form():
    labels = [0] * 6 + [1] * 3 + [2]
    order = stratified_order(labels, 7, seed=3)
    assert [labels[i] for i in order] == [0, 1, 2, 0, 1, 0, 1]
    assert len(set(order)) == 7 and order == stratified_order(labels, 7, seed=3)
    assert sorted(stratified_order(labels, 100, seed=0)) == list(range(10))


class Logits(nn.Module):
    """Logits given per image: row i of ``table`` for image i (its first pixel's value)."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, x):
        return self.table[x[:, 0, 0, 0].long()]


def test_eval_counts_non_finite_logits_and_scores_the_finite_ones():
    table = torch.tensor([[2.0, 0.0], [0.0, 2.0], [float("nan"), 1.0], [float("inf"), 0.0]])
    images = torch.arange(4.0)[:, None, None, None].expand(4, 1, 2, 2)
    loader = [(images, torch.tensor([0, 0, 1, 0]))]
    metrics = evaluate(Logits(table), loader, setup("cpu"))
    assert (metrics["images"], metrics["finite"], metrics["non_finite"]) == (4, 2, 2)
    assert metrics["acc1"] == 50.0
    expected = F.cross_entropy(table[:2], torch.tensor([0, 0]))
    assert metrics["loss"] == pytest.approx(float(expected))
    nan_only = evaluate(Logits(table), [(images[2:], torch.tensor([1, 0]))], setup("cpu"))
    assert nan_only["non_finite"] == 2 and np.isnan(nan_only["acc1"])


def test_an_all_nan_network_eval_says_so(capsys):
    from models.app.commands.eval import _scores

    metrics = {"non_finite": 5, "finite": 0, "acc1": float("nan"), "acc5": float("nan"),
               "loss": float("nan")}
    assert _scores(metrics) == "no accuracy: all 5 images gave NaN/inf logits"
    partial = {"non_finite": 1, "finite": 4, "acc1": 50.0, "acc5": 100.0, "loss": 0.5}
    assert _scores(partial).startswith("1 images gave NaN/inf logits; over the 4 finite")


class Ramp(nn.Module):
    """A single-channel map pooled by ``pool``, then one linear logit per class of its mean."""

    def __init__(self, pool):
        super().__init__()
        self.features = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[3.0], [-1.0]]))

    def forward(self, x):
        return self.head(self.features(x).mean((-2, -1)))


@pytest.mark.parametrize("pool", [1, 2])
def test_grad_cam_is_the_min_max_scaled_map_in_closed_form(pool):
    """Logit 0 is 3 mean(A): the channel's weight is positive, so the map is ReLU(A) = A
    (positive), upsampled, then scaled by its minimum and maximum."""
    x = (torch.arange(64.0).reshape(1, 1, 8, 8) / 10 + 1).repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    model = Ramp(pool).eval()
    heat, classes = grad_cam(model, x, model.features, classes=torch.tensor([0, 0]))
    a = F.interpolate(F.avg_pool2d(x, pool), size=(8, 8), mode="bilinear",
                      align_corners=False)[:, 0]
    low = a.flatten(1).amin(1)[:, None, None]
    high = a.flatten(1).amax(1)[:, None, None]
    assert torch.allclose(heat, (a - low) / (high - low), atol=1e-6)
    assert heat.flatten(1).amin(1).tolist() == [0.0, 0.0]
    assert heat.flatten(1).amax(1).tolist() == [1.0, 1.0]


def test_min_max_of_constant_and_nan_maps():
    maps = torch.stack([torch.full((2, 2), 3.0), torch.tensor([[0.0, 2.0], [1.0, 4.0]]),
                        torch.tensor([[0.0, float("nan")], [1.0, 4.0]])])
    out = min_max(maps)
    assert out[0].eq(0).all() and torch.equal(out[1], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert out[2].isnan().all()


def test_grad_cam_equals_pytorch_grad_cam():
    """pytorch-grad-cam (optional test dependency) on the same CNN gives the same maps."""
    gradcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, 2, 1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model.eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([0, 2, 3])
    ours, _ = grad_cam(model, x, model[3], classes=classes)
    with gradcam.GradCAM(model=model, target_layers=[model[3]]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    assert np.allclose(ours.numpy(), theirs, atol=1e-4)


def test_datasets_by_timm_names():
    assert {"folder", "torch/mnist", "torch/fashion_mnist", "torch/cifar10"} <= set(DATASETS)
    message = unknown_dataset("nope")
    assert "torch/mnist" in message and "--dataset folder --data-dir" in message
    with pytest.raises(UserError, match="--dataset folder --data-dir"):
        TrainConfig(dataset="nope")
    assert TrainConfig(dataset="").dataset == "folder"
    assert build_config({}, {"dataset": "cifar10"}).dataset == "cifar10"


def test_the_torch_free_constants_are_timms():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from models.app.datasets import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
    from models.zoo import build

    assert (IMAGENET_MEAN, IMAGENET_STD) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert (CIFAR_MEAN, CIFAR_STD) == (build.CIFAR_MEAN, build.CIFAR_STD)


@pytest.mark.parametrize("argv", [["--help"], ["spectra", "--help"],
                                  ["train", "--dataset", "nope"]])
def test_answers_without_importing_torch_or_timm(argv):
    code = ("import sys\nfrom models.app.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
            "except SystemExit as exit_:\n    code = exit_.code\n"
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules), code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip().splitlines()[-1] == f"[] {2 if 'nope' in argv else 0}"
    if "nope" in argv:
        assert "torch/mnist" in done.stderr and "--dataset folder" in done.stderr


def test_the_torch_free_name_lists_are_the_registries():
    from models.app import options
    from models.layers import NEURONS
    from models.neurons import BACKENDS

    assert (options.NEURONS, options.BACKENDS) == (NEURONS, BACKENDS)


def test_a_torchvision_dataset_without_its_files_says_download(tmp_path):
    from models.app.data import build_datasets

    with pytest.raises(UserError, match=r"no torch/mnist in .*use --download"):
        build_datasets(build_config({}, {"dataset": "torch/mnist", "data_dir": str(tmp_path),
                                         "img_size": 28}))
