"""Every input a user gives ends, when wrong, in one line and exit status 2; ``--set`` reads
values as a user means them."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.app.cli import main
from models.app.config import build_config, parse_assignments, read_recipe

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-4", 5e-4), ("1e3", 1000.0),
                                         ("+2.5e-2", 0.025)])
def test_scientific_notation_is_a_number(text, value):
    overrides = parse_assignments([f"lr={text}"])
    assert overrides == {"lr": value} and isinstance(overrides["lr"], float)
    assert build_config(read_recipe("digits"), overrides).lr == value


def test_set_model_kwargs_merges_key_by_key_with_the_recipe():
    """cifar10 sets embed_dims 384 and mlp_ratio 4: --set of embed_dims keeps mlp_ratio."""
    cfg = build_config(read_recipe("cifar10"), parse_assignments(["model_kwargs={embed_dims: 64}"]))
    assert cfg.model_kwargs == {"embed_dims": 64, "mlp_ratio": 4.0}


def _legacy_checkpoint(path: Path) -> bytes:
    torch.save({"model": {"w": torch.zeros(100)}}, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def _zip_checkpoint(path: Path) -> bytes:
    torch.save({"model": {"w": torch.zeros(100)}}, path)
    return path.read_bytes()


def _damaged(data: bytes, at: int) -> bytes:
    flipped = bytearray(data)
    flipped[at] ^= 0xFF
    return bytes(flipped)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: b"epoch,acc1\n1,2\n",  # a CSV
        lambda p: bytes(range(256)) * 12,  # bytes that are no pickle
        lambda p: _legacy_checkpoint(p)[:200],  # truncated legacy format (IndexError)
        lambda p: _legacy_checkpoint(p)[:10],
        lambda p: _zip_checkpoint(p)[:300],  # truncated zip
        lambda p: _damaged(_zip_checkpoint(p), -30),  # damaged central directory
        lambda p: _damaged(_zip_checkpoint(p), -60),
    ],
    ids=["csv", "random", "legacy-200", "legacy-10", "zip-300", "zip-damage-30",
         "zip-damage-60"],
)
def test_a_file_that_is_no_checkpoint_is_one_line_naming_it(tmp_path, capsys, make):
    path = tmp_path / "model.pt"
    data = make(path)
    path.write_bytes(data)
    assert main(["eval", "--checkpoint", str(path), "--no-progress"]) == 2
    err = _one_line(capsys)
    assert str(path) in err and "could run code" not in err, err


def test_a_dangling_symlink_output_is_not_called_a_file(tmp_path, capsys):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "gone")
    assert main(["train", "--output", str(link), "--epochs", "1", "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "is a symbolic link to" in err and "does not exist" in err and "is a file" not in err


BOMB = "lr: [&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]" + "".join(
    f", &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdefghi", "bcdefghij", strict=True)
) + "]\n"
"""A recipe of 400 bytes whose ``lr`` holds 10 ** 10 numbers through aliases."""


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_a_yaml_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(BOMB)
    assert len(BOMB) < 500
    done = subprocess.run(
        [sys.executable, "-m", "models.app", "train", "--config", str(recipe),
         "--output", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_limit_memory,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr[-2000:]
    assert "aliases expand to more than" in err[0] and str(recipe) in err[0]


def test_a_pickle_that_shares_a_list_many_times_is_refused(tmp_path, capsys):
    shared = [0] * 10
    for _ in range(9):  # 10 ** 10 numbers in a few kB
        shared = [shared] * 10
    path = tmp_path / "bomb.pt"
    torch.save({"model": {}, "config": {"lr": shared}}, path)
    assert path.stat().st_size < 10_000
    assert main(["eval", "--checkpoint", str(path), "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "hold more than" in err and str(path) in err


TRAIN = ["train", "--epochs", "1", "--no-progress", "--set", "model_kwargs={embed_dims: 16}",
         "--T", "1", "--img-size", "8", "--batch-size", "16", "--set", "train_samples=32"]


@pytest.mark.parametrize("fault, code, says", [
    (MemoryError, 2, "error: out of memory; lower --batch-size"),
    (KeyboardInterrupt, 130, "interrupted by SIGINT"),
])
def test_out_of_memory_and_ctrl_c_are_one_line(tmp_path, capsys, fault, code, says):
    """A CPU out-of-memory, or a Ctrl-C that is not the first (which stops after the batch),
    in the middle of a forward pass."""
    from models.zoo import SpikingBackbone

    def hook(module, args):
        if isinstance(module, SpikingBackbone) and module.training:
            raise fault

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        assert main([*TRAIN, "--output", str(tmp_path / "run")]) == code
    finally:
        handle.remove()
    err = _one_line(capsys)
    assert says in err and not (tmp_path / "run").exists()


def test_an_error_shows_a_large_value_by_type_and_size():
    from models.app.errors import UserError

    nested = [[0.5] * 10] * 10
    with pytest.raises(UserError) as wrong:
        build_config(read_recipe("digits"), {"lr": nested})
    assert str(wrong.value) == "config key lr expects <class 'float'>, got a list of 10 items"


@pytest.mark.parametrize("kwargs", ["{embed_dims: -8}", "{mlp_ratio: -1}"])
def test_negative_model_sizes_are_one_line(tmp_path, capsys, kwargs):
    argv = ["train", "--set", f"model_kwargs={kwargs}", "--epochs", "1", "--no-progress",
            "--output", str(tmp_path / "run")]
    assert main(argv) == 2
    err = _one_line(capsys)
    assert "cannot build maxformer_cifar" in err and "negative dimension" in err
