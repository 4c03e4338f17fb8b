"""Faults during a run: NaN weights behind a finite loss, non-finite optimizer state, a full
disk; a checkpoint is written only when it is good, and the last good one is named."""

import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import TINY_ARGS, at_training_forward, rows, tiny, tiny_run

from models.app.cli import main
from models.app.errors import TrainingDiverged
from models.app.training.checkpointing import BEST, LAST
from models.app.training.trainer import train
from models.checkpoint import non_finite_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"train_samples": 160}
BATCHES = 10  # 160 samples / 16


@contextlib.contextmanager
def gradient_fault(forward: int, factor: float):
    """Multiply the gradient of the first convolution's weight by ``factor`` in the backward
    pass of the ``forward``-th training batch (a fault a finite loss does not show)."""
    def corrupt(model):
        weight = model.patch_embed1.proj_conv.weight
        handle = weight.register_hook(lambda grad: (handle.remove(), grad * factor)[1])

    with at_training_forward(forward, corrupt):
        yield


def test_nan_weights_behind_a_finite_loss_stop_the_run_at_that_step(tmp_path):
    """A NaN in the first layer's weights makes its neurons silent (NaN >= threshold is
    false), so the loss stays finite; the step that made them is where the run stops."""
    with gradient_fault(BATCHES + 3, float("nan")), pytest.raises(TrainingDiverged) as stop:
        train(tiny(epochs=2, **SAMPLES), output=tmp_path)
    message = str(stop.value)
    assert "weights became NaN or infinite in the optimizer step of batch 3 of epoch 2" in message
    assert f"last good checkpoint: {tmp_path / LAST} (epoch 1)" in message
    for name in (LAST, BEST):
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        state = {part: checkpoint[part] for part in ("model", "optimizer")}
        assert checkpoint["epoch"] == 1 and non_finite_tensors(state) == []
    assert [r["epoch"] for r in rows(tmp_path)] == ["1"]


def test_infinite_optimizer_state_is_never_saved(tmp_path):
    """A gradient of 1e30 squares to infinity in Adam's second moment while the weights stay
    finite (the step is 0/inf): the checkpoint at the epoch's end is refused instead."""
    with gradient_fault(3, 1e30), pytest.raises(TrainingDiverged) as stop:
        train(tiny(epochs=1, **SAMPLES), output=tmp_path)
    message = str(stop.value)
    assert "NaN or infinity in optimizer.state." in message and "exp_avg_sq" in message
    assert "no checkpoint was written yet" in message
    assert not (tmp_path / LAST).exists() and not (tmp_path / BEST).exists()


def test_eval_refuses_a_checkpoint_with_non_finite_weights(tmp_path, capsys):
    tiny_run(tmp_path / "run", **SAMPLES)
    checkpoint = torch.load(tmp_path / "run" / LAST, weights_only=True)
    checkpoint["model"]["stage2.0.mlp.fc1_conv.weight"][0, 0] = float("nan")
    broken = tmp_path / "broken.pt"
    torch.save(checkpoint, broken)
    assert main(["eval", "--checkpoint", str(broken), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{broken} holds non-finite weights" in err and "stage2.0.mlp.fc1_conv.weight" in err
    assert len(err.strip().splitlines()) == 1


def _limit_file_size():
    """Writes past 200 kB fail with EFBIG (as a full disk fails with ENOSPC)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_full_disk_while_saving_is_one_line_and_leaves_no_partial_file(tmp_path):
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "models.app", "train", "--output", str(run), "--epochs", "1",
         "--set", "train_samples=32", *TINY_ARGS],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and f"cannot write {run / LAST}: File too large" in err[0], err
    assert not (run / LAST).exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "output, message",
    [
        ("/proc/no_such_folder", "cannot make run folder /proc/no_such_folder"),
        ("{file}", "is a file, not a folder"),
        ("{file}/run", "cannot make run folder"),
    ],
)
def test_an_output_that_cannot_be_a_run_folder_is_one_line(tmp_path, capsys, output, message):
    file = tmp_path / "file"
    file.write_text("a file")
    argv = ["train", "--output", output.format(file=file), "--epochs", "1", *TINY_ARGS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert file.read_text() == "a file"
