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


def _pictures(folder: Path, fault: str) -> Path:
    """A folder ``a/`` of one good 16x16 RGB picture and one ``fault``: a truncated PNG, or a
    PNG whose header declares 400 M pixels (a decompression bomb; PIL refuses it unread)."""
    from PIL import Image

    (folder / "a").mkdir(parents=True)
    Image.new("RGB", (16, 16), (9, 99, 199)).save(folder / "a" / "good.png")
    bad = folder / "a" / "bad.png"
    if fault == "truncated":
        Image.effect_noise((16, 16), 64).save(bad)
        bad.write_bytes(bad.read_bytes()[:120])
    else:
        Image.new("1", (20000, 20000)).save(bad)
    return bad


@pytest.mark.parametrize("fault", ["truncated", "bomb"])
def test_a_broken_picture_in_images_is_one_line_naming_it(tmp_path, capsys, fault):
    bad = _pictures(tmp_path / "pictures", fault)
    argv = ["spectra", "--model", "maxformer_cifar", "--images", str(tmp_path / "pictures"),
            "--samples", "2", "--output", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    assert str(bad) in _one_line(capsys)


def test_a_broken_picture_in_a_dataset_folder_is_one_line_naming_it(tmp_path, capsys):
    for split in ("train", "val"):
        bad = _pictures(tmp_path / "data" / split, "truncated")
    argv = ["train", "--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--epochs",
            "1", "--no-progress", "--set", "model_kwargs={embed_dims: 16}", "--T", "1",
            "--batch-size", "2", "--output", str(tmp_path / "run")]
    assert main(argv) == 2
    err = _one_line(capsys)
    assert "cannot read picture" in err and bad.name in err


@pytest.mark.parametrize("body, spec, says", [
    ("", ":f", "expected module:function"),
    ("def f(width):\n    return None\n", "nets.py:f", "required arguments (width)"),
    ("def f():\n    raise RuntimeError('no weights here')\n", "nets.py:f",
     "f() raised RuntimeError: no weights here"),
    ("raise ImportError('broken module')\n", "nets.py:f", "raised ImportError: broken module"),
])
def test_a_module_function_model_that_cannot_build_is_one_line(tmp_path, capsys, monkeypatch,
                                                                body, spec, says):
    (tmp_path / "nets.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    assert main(["spectra", "--model", spec, "--output", str(tmp_path / "out")]) == 2
    assert says in _one_line(capsys)


@pytest.mark.parametrize("extra", [[], ["--dataset", "fake"]])
def test_energy_of_a_model_without_time_steps_counts_one_step(capsys, extra):
    """An ANN of timm (no ``T``) on images: one time step, MACs only, not "event frames"."""
    assert main(["energy", "--model", "resnet10t", "--img-size", "32", "--batch-size", "1",
                 "--batches", "1", "--no-progress", *extra]) == 0
    out = capsys.readouterr().out
    assert "counted as one time step" in out and "T=1" in out


def test_an_allocation_the_cpu_refuses_is_one_line(capsys):
    """torch's CPU allocator raises a RuntimeError (not MemoryError) for a 43 GB input."""
    assert main(["energy", "--model", "maxformer_cifar", "--img-size", "60000",
                 "--no-progress"]) == 2
    assert "out of memory" in _one_line(capsys)


@pytest.mark.parametrize("command", ["eval", "spectra"])
def test_ctrl_c_in_eval_and_spectra_is_one_line(tmp_path, capsys, command):
    from models.zoo import SpikingBackbone

    def hook(module, args):
        if isinstance(module, SpikingBackbone):
            raise KeyboardInterrupt

    if command == "eval":
        assert main([*TRAIN, "--output", str(tmp_path / "run")]) == 0
        capsys.readouterr()
    argv = {"eval": ["eval", "--checkpoint", str(tmp_path / "run" / "checkpoint-last.pt"),
                     "--no-progress"],
            "spectra": ["spectra", "--model", "maxformer_cifar", "--dataset", "digits",
                        "--samples", "2", "--output", str(tmp_path / "out"), "--no-progress"]}
    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        assert main(argv[command]) == 130
    finally:
        handle.remove()
    assert "interrupted by SIGINT" in _one_line(capsys)
