"""Faults during a run: NaN weights behind a finite loss, non-finite optimizer state, a full
disk; a checkpoint is written only when it is good, and the last good one is named."""

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import TINY_ARGS, at_training_forward, flatten, rows, tiny, tiny_run, without_timings

from models.app.cli import main
from models.app.errors import TrainingDiverged, UserError
from models.app.training.checkpointing import BEST, LAST, load_resume_point
from models.app.training.trainer import resume_config, train
from models.checkpoint import non_finite_tensors
from models.zoo import SpikingBackbone

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
    assert not run.exists()  # it held no checkpoint: the folder the run made is removed


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


class Killed(BaseException):
    """A kill at a chosen point (a ``BaseException``: nothing on the way catches it)."""


@contextlib.contextmanager
def fault_at_write(name: str, number: int, kind: str):
    """At the ``number``-th rename of a file called ``name`` into place: ``"kill"`` after it
    (the new file is in place, nothing after it runs), ``"full"`` instead of it (a write that
    fails with "No space left")."""
    rename, count = os.replace, 0

    def replace(src, dst):
        nonlocal count
        if Path(dst).name == name:
            count += 1
            if count == number:
                if kind == "full":
                    raise OSError(errno.ENOSPC, "No space left on device")
                rename(src, dst)
                raise Killed
        rename(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        yield


LEARNS = {"train_samples": 320, "lr": 1e-2}
"""Two epochs of which the second is the best (top-1 10% then 14%): it writes both files."""


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    run = tiny_run(tmp_path_factory.mktemp("uninterrupted"), epochs=2, **LEARNS)
    assert json.loads((run / "summary.json").read_text())["best_epoch"] == 2
    return run


def _tensors(path):
    return flatten(torch.load(path, weights_only=True))


def _equal(a, b) -> bool:
    """Equal values; tensors bit for bit (a NaN equals a NaN: the RNG's "no gauss" mark)."""
    if not isinstance(a, torch.Tensor):
        return a == b
    if a.is_floating_point() and b.is_floating_point():
        return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
    return torch.equal(a, b)


def _differences(a, b) -> list[str]:
    """The entries (tensors and values) where two checkpoint files differ."""
    ours, theirs = _tensors(a), _tensors(b)
    assert ours.keys() == theirs.keys()
    return [k for k in ours if not _equal(ours[k], theirs[k])]


def _continue(run, epochs, **recipe):
    """What a user does after a fault: resume from the last checkpoint, or, when there is
    none, the same command again."""
    if (run / LAST).exists():
        point = load_resume_point(run)
        train(resume_config(point.checkpoint["config"], {}), resume=point)
    else:
        train(tiny(epochs=epochs, **recipe), output=run)


def _check_equal(run, uninterrupted, best_epoch):
    assert without_timings(rows(run)) == without_timings(rows(uninterrupted))
    for checkpoint in (LAST, BEST):
        assert _differences(run / checkpoint, uninterrupted / checkpoint) == [], checkpoint
    assert json.loads((run / "summary.json").read_text())["best_epoch"] == best_epoch
    assert torch.load(run / BEST, weights_only=True)["epoch"] == best_epoch


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("uninterrupted"), **SAMPLES)


@pytest.mark.parametrize(
    "name, kind",
    [("config.yaml", "kill"), ("metrics.csv", "kill"), ("metrics.png", "kill"), (LAST, "kill"),
     (BEST, "kill"), ("summary.json", "kill"), (LAST, "full"), (BEST, "full")],
)
def test_a_fault_at_any_write_then_resume_equals_uninterrupted(tmp_path, one_epoch, name, kind):
    """Kill the run right after, or fail with a full disk instead of, each write of its epoch
    (the first is the best: it writes both checkpoints); then the resume (or the same command
    when no checkpoint was saved) ends with the metrics, last and best checkpoints of the
    uninterrupted run, bit for bit."""
    run = tmp_path / "run"
    with fault_at_write(name, 1, kind), pytest.raises((Killed, UserError)):
        train(tiny(epochs=1, **SAMPLES), output=run)
    _continue(run, 1, **SAMPLES)
    _check_equal(run, one_epoch, 1)


def test_a_kill_between_the_checkpoints_of_a_new_best_epoch_then_resume(tmp_path, two_epochs):
    """The last checkpoint names epoch 2 the best while the best file still holds epoch 1:
    the resume rewrites the best file from the last."""
    run = tmp_path / "run"
    with fault_at_write(LAST, 2, "kill"), pytest.raises(Killed):
        train(tiny(epochs=2, **LEARNS), output=run)
    assert torch.load(run / BEST, weights_only=True)["epoch"] == 1
    _continue(run, 2, **LEARNS)
    _check_equal(run, two_epochs, 2)


def test_a_stop_before_the_first_checkpoint_says_so_and_leaves_no_folder(tmp_path, capsys):
    """SIGTERM while the run is set up (the model's first forward pass, in eval mode): the
    message says nothing was saved, the folder it made is gone, the same command runs."""
    run = tmp_path / "run"
    argv = ["train", "--output", str(run), "--epochs", "1", "--set", "train_samples=32",
            *TINY_ARGS]

    def hook(module, args):
        if isinstance(module, SpikingBackbone) and not module.training:
            handle.remove()
            os.kill(os.getpid(), signal.SIGTERM)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        assert main(argv) == 128 + signal.SIGTERM
    finally:
        handle.remove()
    err = capsys.readouterr().err.strip()
    assert "interrupted by SIGTERM before epoch 1; nothing was saved yet" in err, err
    assert "run the same command again" in err and "resumable" not in err
    assert len(err.splitlines()) == 1 and not run.exists()
    assert main(argv) == 0 and (run / LAST).is_file()


def test_a_folder_a_killed_run_left_without_a_checkpoint_is_taken_again(tmp_path, capsys):
    """A SIGKILL before the first checkpoint leaves config.yaml: --resume says what to do,
    and the same --output is taken."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: maxformer_cifar\n")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "stopped before its first checkpoint; start it again with the same command" in err
    argv = ["train", "--output", str(run), "--epochs", "1", "--set", "train_samples=32",
            *TINY_ARGS]
    assert main(argv) == 0 and (run / LAST).is_file()
