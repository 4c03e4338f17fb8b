"""Training runs: learning, run-folder files, exact resume, divergence, config handling."""

import json

import pytest
import torch
import yaml
from runs import TINY, rows, straight_and_resumed, tiny

from models.app.cli import main
from models.app.config import (
    build_config,
    config_keys,
    dataset_defaults,
    read_recipe,
    recipe_names,
)
from models.app.datasets import DATASETS
from models.app.errors import TrainingDiverged, UserError
from models.app.modeling import model_for_config
from models.app.training.checkpointing import LAST
from models.app.training.trainer import resume_config, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_short_default_run_learns_and_writes_run_folder(tmp_path):
    cfg = build_config(read_recipe("digits"), {"epochs": 4})  # the default, shortened
    result = train(cfg, output=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"config.yaml", "metrics.csv", "metrics.png", "checkpoint-last.pt",
                     "checkpoint-best.pt", "summary.json", ".lock"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_acc1"] > 50.0  # chance is 10%
    losses = [float(r["train_loss"]) for r in rows(tmp_path)]
    assert losses[-1] < 0.7 * losses[0]
    assert {k: summary[k] for k in ("model", "dataset", "epochs")} == {
        "model": "maxformer_cifar", "dataset": "digits", "epochs": 4}
    assert summary["best_acc1"] == max(float(r["val_acc1"]) for r in rows(tmp_path))
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert build_config(saved, {}) == dataset_defaults(cfg)  # classes and channels as found
    assert (saved["num_classes"], saved["in_chans"]) == (10, 1)
    ckpt = torch.load(tmp_path / LAST, weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["config"] == saved
    assert all(torch.equal(ckpt["model"][k], v) for k, v in result.model.state_dict().items())


def test_resume_equals_uninterrupted(tmp_path):
    straight_and_resumed(tiny(epochs=2, train_samples=160, ema=True, ema_decay=0.9, aa=None),
                         tmp_path)
    a = torch.load(tmp_path / "straight" / LAST, weights_only=True)
    b = torch.load(tmp_path / "resumed" / LAST, weights_only=True)
    for k, v in a["ema"].items():
        assert torch.equal(v, b["ema"][k]), k


def test_resume_rejects_changed_recipe_keys():
    with pytest.raises(UserError, match="cannot change lr when resuming.*epochs"):
        resume_config(tiny().to_dict(), {"lr": 1.0})


def test_overflowing_weights_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    # one warm-up epoch at a sane lr, then an absurd peak lr makes the weights overflow
    cfg = tiny(epochs=3, train_samples=160, warmup_epochs=1, warmup_lr=1e-3, lr=1e30)
    expected = r"weights became NaN or infinite .* of epoch 2.*last good checkpoint: .*" \
        r"checkpoint-last.pt \(epoch 1\)"
    with pytest.raises(TrainingDiverged, match=expected):
        train(cfg, output=tmp_path)
    ckpt = torch.load(tmp_path / LAST, weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(rows(tmp_path)) == 1


def test_non_finite_loss_on_the_command_line(tmp_path, capsys):
    code = main(["train", "--output", str(tmp_path), "--no-progress", "--epochs", "2",
                 "--set", "train_samples=64", "--set", "warmup_epochs=1", "--lr", "1e30",
                 *[a for k, v in TINY.items() if k not in ("lr", "warmup_epochs")
                   for a in ("--set", f"{k}={json.dumps(v)}")]])
    err = capsys.readouterr().err
    assert code == 2
    assert "maxformer train: error: the weights became" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_config_keys_are_checked():
    with pytest.raises(UserError) as err:
        build_config({}, {"learning_rate": 1e-3})
    assert "learning_rate" in str(err.value) and all(k in str(err.value) for k in config_keys())
    with pytest.raises(UserError, match="epochs expects"):
        build_config({}, {"epochs": "many"})
    with pytest.raises(UserError, match="unknown dataset 'mnist'.*digits, cifar10"):
        build_config({}, {"dataset": "mnist"})


@pytest.mark.parametrize("name", recipe_names())
def test_shipped_recipes_build_their_models(name):
    cfg = build_config(read_recipe(name), {})
    with torch.device("meta"):  # shapes only, no memory
        model = model_for_config(cfg, DATASETS[cfg.dataset])
    assert model.num_classes == DATASETS[cfg.dataset].num_classes


@pytest.mark.parametrize("pack", [True, False])
def test_spike_packing_follows_the_config(pack):
    cfg = build_config({}, {"pack_saved_spikes": pack})
    with torch.device("meta"):
        assert model_for_config(cfg, DATASETS[cfg.dataset]).pack_saved_spikes is pack


def test_imagenet_recipe_builds_the_published_size():
    with torch.device("meta"):
        cfg = build_config(read_recipe("imagenet_10_768_t4"), {})
        model = model_for_config(cfg, DATASETS["imagenet"])
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 63.99  # paper: 63.99M


def test_paper_recipe_values():
    c10 = build_config(read_recipe("cifar10"), {})
    assert (c10.epochs, c10.batch_size, c10.lr, c10.T, c10.aa) == (
        400, 128, 1.5e-3, 4, "rand-m9-n1-mstd0.4-inc1")
    dvs = build_config(read_recipe("dvsgesture"), {})
    assert (dvs.T, dvs.epochs, dvs.lr, dvs.model) == (16, 150, 5e-3, "maxformer_event")


def test_cifar_style_recipe_features_run(tmp_path):
    """RandAugment, random erasing, mixup/cutmix, EMA and clipping on CIFAR-shaped images."""
    cfg = build_config(read_recipe("cifar10"), {
        "dataset": "fake", "num_classes": 10, "img_size": 16, "T": 1, "epochs": 1,
        "warmup_epochs": 0, "cooldown_epochs": 0, "batch_size": 32, "train_samples": 64,
        "model_kwargs": {"embed_dims": 16}, "workers": 0, "ema": True, "clip_grad": 1.0})
    result = train(cfg, output=tmp_path)
    (row,) = rows(tmp_path)
    assert float(row["train_loss"]) > 0 and "ema_acc1" in row
    assert result.summary["epochs"] == 1


def test_event_recipe_trains_on_frames(tmp_path):
    """DVS128 Gesture frames [B, T, 2, H, W] through maxformer_event with mixup and cutmix."""
    from test_data import write_frames

    frames = tmp_path / "data" / "frames_number_2_split_by_number"
    write_frames(frames / "train", 11, 2, 2, 16, seed=0)
    write_frames(frames / "test", 11, 1, 2, 16, seed=1)
    cfg = build_config(read_recipe("dvsgesture"), {
        "data_dir": str(tmp_path / "data"), "T": 2, "img_size": 16, "epochs": 1,
        "warmup_epochs": 0, "cooldown_epochs": 0, "batch_size": 8, "workers": 0,
        "model_kwargs": {"embed_dims": 16}, "mixup_prob": 1.0})
    result = train(cfg, output=tmp_path / "run")
    assert result.summary["dataset"] == "dvsgesture"
    assert 0 < float(rows(tmp_path / "run")[0]["train_loss"]) < 10


def test_stage_statistics_are_logged_every_epoch(tmp_path):
    train(tiny(epochs=2, img_size=16, log_stage_stats=True), output=tmp_path)
    logged = rows(tmp_path)
    assert len(logged) == 2
    for row in logged:
        for stage in (1, 2, 3):
            assert 0.0 <= float(row[f"rate_stage{stage}"]) <= 1.0
            assert 0.0 < float(row[f"hf_ratio_stage{stage}"]) <= 1.0
        assert 0.0 <= float(row["rate_classifier"]) <= 1.0
    assert logged[0]["rate_stage1"] != logged[1]["rate_stage1"]
