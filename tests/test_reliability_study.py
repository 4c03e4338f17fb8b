"""A study stops when asked, keeps variants apart, stays in its folder, writes only its own."""

import signal

import pytest
import torch
import yaml

from models.app.cli import main
from models.app.errors import RunInterrupted
from models.app.study import cell_state, markdown, read_study, run_study
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
