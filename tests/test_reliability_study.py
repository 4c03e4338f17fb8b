"""A study stops when asked, keeps variants apart, stays in its folder, writes only its own."""

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from models.app.cli import main
from models.app.errors import RunInterrupted
from models.app.study import STUDY_YAML, cell_state, markdown, read_study, run_study, study_record
from models.zoo import SpikingBackbone

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"model_kwargs": {"embed_dims": 16}, "T": 1, "img_size": 8, "epochs": 1,
        "train_samples": 32, "batch_size": 16}


def _spec(tmp_path, variants, **more):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": "digits", "set": TINY, "variants": variants,
                                    "seeds": [0], "measure_images": 8, **more}))
    return path


def test_a_signal_after_a_cells_last_batch_stops_the_study(tmp_path):
    """SIGTERM in the final evaluation of the first cell (after its last training batch): the
    cell ends done, the second one never starts."""
    study = read_study(str(_spec(tmp_path, [{"name": "a"}, {"name": "b"}])))
    trained = 0

    def hook(module, args):
        nonlocal trained
        if isinstance(module, SpikingBackbone):
            trained += module.training
            if not module.training and trained == 2:  # the 2 batches done: evaluating
                trained += 1
                signal.raise_signal(signal.SIGTERM)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        with pytest.raises(RunInterrupted, match="SIGTERM after cell 1") as stop:
            run_study(study, tmp_path / "study", log=lambda line: None)
    finally:
        handle.remove()
    assert stop.value.exit_code == 128 + signal.SIGTERM
    states = [cell_state(tmp_path / "study" / c.folder) for c in study.cells]
    assert states == ["done", "pending"]


def test_variants_whose_labels_read_the_same_stay_apart_in_the_report(tmp_path):
    spec = _spec(tmp_path, {"x": [{"name": "p, q"}, {"name": "p"}],
                            "y": [{"name": "r"}, {"name": "q, r"}]})
    study = read_study(str(spec))
    names = [v.name for v in study.variants]
    assert names.count("p, q, r") == 2
    rows = [{"cell": c.index + 1, "variant": c.variant.name, **c.variant.labels, "seed": 0,
             "state": "done", "top1": float(10 * c.index), "energy_mj": 1.0}
            for c in study.cells]
    text = markdown(study, rows)
    assert "| p, q + r | 1 | 0.00 |" in text and "| p + q, r | 1 | 30.00 |" in text
    assert "2 seeds" not in text and "| 2 |" not in text


@pytest.mark.parametrize("name", ["..", ".", "../escape", ".hidden"])
def test_a_variant_name_cannot_leave_the_study_folder(tmp_path, name):
    study = read_study(str(_spec(tmp_path, [{"name": name}, {"name": "b"}])))
    root = (tmp_path / "study").resolve()
    for cell in study.cells:
        folder = (root / cell.folder).resolve()
        assert folder.parent.parent == root and not cell.folder.parts[0].startswith(".")


@pytest.mark.parametrize("report", [False, True])
def test_a_study_refuses_a_folder_it_did_not_make(tmp_path, capsys, report):
    spec = _spec(tmp_path, [{"name": "a"}])
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "study.md").write_text("my notes")
    argv = ["study", str(spec), "--output", str(foreign), *(["--report"] if report else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{foreign} is not a study folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in foreign.iterdir()) == ["study.md"]
    assert (foreign / "study.md").read_text() == "my notes"


def test_a_study_output_that_is_a_file_is_one_line(tmp_path, capsys):
    spec = _spec(tmp_path, [{"name": "a"}])
    file = tmp_path / "file"
    file.write_text("x")
    assert main(["study", str(spec), "--output", str(file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file, not a folder" in err and len(err.splitlines()) == 1


def _without_permission_override() -> None:
    """In the child before exec: as root, drop the capabilities that let root write into a
    folder without write permission (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a ``chmod 555``
    folder is read-only to it as to any user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.parametrize("report", [False, True])
def test_a_read_only_study_output_is_one_line(tmp_path, report):
    """A study folder the user cannot write: the study (an empty folder) or its report (a
    folder holding study.yaml) ends in one line naming the file, exit 2, the folder unchanged."""
    spec = _spec(tmp_path, [{"name": "a"}])
    root = tmp_path / "study"
    root.mkdir()
    if report:
        (root / STUDY_YAML).write_text(yaml.safe_dump(study_record(read_study(str(spec)))))
    before = sorted(p.name for p in root.iterdir())
    root.chmod(0o555)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "models.app", "study", str(spec), "--output", str(root),
             "--no-progress", *(["--report"] if report else [])],
            cwd=Path(__file__).parents[1], capture_output=True, text=True,
            preexec_fn=_without_permission_override, timeout=300)
    finally:
        root.chmod(0o755)
    err = done.stderr.strip()
    assert done.returncode == 2, err
    written = "study.csv" if report else STUDY_YAML
    assert err.startswith("maxformer study: error: cannot write") and len(err.splitlines()) == 1
    assert f"{root / written}: Permission denied" in err
    assert sorted(p.name for p in root.iterdir()) == before
