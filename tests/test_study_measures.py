"""A study's network-level measures (its ``measures`` key): settings, summaries, the report."""

import csv
import math

import numpy as np
import pytest
import yaml
from PIL import Image

from models.app.analysis.cell_measures import (
    MEASURES,
    band_noise_summary,
    read_measures,
    transfer_summary,
)
from models.app.cli import main
from models.app.errors import UserError
from models.app.study import STUDY_YAML, read_study, study_record
from spectral import LayerTransfer

pytestmark = pytest.mark.usefixtures("one_thread")

OMEGA = np.array([math.pi / 2, math.pi])
# |H| of the sub-threshold LIF (tau 2: (1/2) / |1 - e^{-j omega} / 2|) and of IF
# (1 / |1 - e^{-j omega}| = 1 / (2 sin(omega / 2))) at pi relative to pi / 2, in dB
LIF_DB = 20 * math.log10((0.5 / 1.5) / (0.5 / math.sqrt(1.25)))
IF_DB = 20 * math.log10(0.5 / (1 / (2 * math.sin(math.pi / 4))))


def layer(name: str, neurons: int, gain: list[float], floor: list[float]) -> LayerTransfer:
    gain = np.array(gain)
    return LayerTransfer(name=name, module_type="MultiStepNeuron", neuron=True,
                         neurons=neurons, gain=gain, gain_db=20 * np.log10(gain / gain[0]),
                         phase=np.zeros(2), floor=np.array(floor), slope=1.0,
                         spectrum=np.zeros(3))


LAYERS = [
    layer("patch_embed1.lif", 1, [2.0, 1.0], [0.02, 0.2]),
    layer("stage1.0.mlp.fc2_lif", 3, [1.0, 10.0], [0.1, 0.1]),
    layer("patch_embed2.lif2", 5, [4.0, 4.0], [0.4, 0.04]),
    layer("head_lif", 6, [1.0, 0.1], [0.01, 0.01]),
]


@pytest.mark.parametrize("filt, per_layer", [((2.0, True), LIF_DB), ((None, True), IF_DB),
                                             (None, 0.0)])
def test_transfer_summary_of_synthetic_layers_equals_the_closed_form(filt, per_layer):
    columns = transfer_summary(OMEGA, LAYERS, filt)
    chosen = {"first": (LAYERS[0], 1), "stage1": (LAYERS[1], 3), "stage2": (LAYERS[2], 5),
              "classifier": (LAYERS[3], 6)}  # each stage's last layer; the first layer
    assert set(columns) == {f"{kind}_db_{where}" for kind in ("transfer", "eq12", "floor")
                            for where in chosen}
    for where, (probe, neurons) in chosen.items():
        assert columns[f"transfer_db_{where}"] == pytest.approx(
            20 * math.log10(probe.gain[1] / probe.gain[0]), abs=1e-12)
        assert columns[f"eq12_db_{where}"] == pytest.approx(neurons * per_layer, abs=1e-9)
        assert columns[f"floor_db_{where}"] == pytest.approx(
            20 * math.log10(probe.floor[1] / probe.gain[0]), abs=1e-12)
    assert columns["transfer_db_stage1"] == pytest.approx(20.0)
    assert columns["floor_db_first"] == pytest.approx(-20.0)


def test_band_noise_summary_is_the_mean_drop_per_band():
    columns = band_noise_summary(0.9, np.array([[0.8, 0.6], [0.9, 0.7]]))
    assert columns == pytest.approx({"bandnoise_clean": 0.9, "bandnoise_drop_low": 0.2,
                                     "bandnoise_drop_high": 0.1}, abs=1e-12)


def test_measure_settings_fill_defaults_and_refuse_bad_values():
    assert read_measures(None, "study s") == {}
    assert read_measures(["heatmap"], "study s") == {"heatmap": MEASURES["heatmap"]}
    chosen = read_measures({"transfer": {"omegas": 3}, "bandnoise": {"levels": [1]}}, "s")
    assert chosen["transfer"] == {**MEASURES["transfer"], "omegas": 3}
    assert chosen["bandnoise"]["levels"] == [1.0]
    for value, message in (
        ({"fourier": {}}, "unknown measure 'fourier'; valid measures: transfer, heatmap, "
                          "bandnoise"),
        ({"heatmap": {"strides": 2}}, "unknown setting(s) strides of measures.heatmap; valid: "),
        ({"heatmap": {"stride": 0}}, "measures.heatmap.stride must be an integer >= 1, got 0"),
        ({"transfer": {"eps": -0.1}}, "measures.transfer.eps must be a number > 0, got -0.1"),
        ({"bandnoise": {"levels": []}}, "measures.bandnoise.levels must be a non-empty list"),
        ({"transfer": {"T": 8, "warmup": 6}}, "leaves fewer than 4 measured steps"),
        ({"transfer": {"omegas": 1}}, "measures.transfer.omegas must be >= 2"),
        ("transfer", "measures must be a list of names or a mapping"),
    ):
        with pytest.raises(UserError, match="^study s: ") as err:
            read_measures(value, "study s")
        assert message in str(err.value)


def test_a_bad_measure_is_one_line_before_any_cell(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"variants": [{"name": "a"}],
                                    "measures": {"heatmap": {"eps": "big"}}}))
    assert main(["study", str(spec), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == ("maxformer study: error: study bad: measures.heatmap.eps must be a number "
                   "> 0, got 'big'\n")
    assert not (tmp_path / "out").exists()


def test_the_shipped_studies_without_measures_record_what_they_did():
    study = read_study("pooling")
    assert study.measures == {}
    assert "measures" not in study_record(study)


def test_a_tiny_study_records_the_network_measures(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "base": "digits",
        "set": {"model_kwargs": {"embed_dims": 16}, "T": 2, "epochs": 1, "train_samples": 160,
                "batch_size": 16},
        "variants": [{"name": "lif"}, {"name": "relu", "neuron": "relu"}],
        "seeds": [0],
        "measure_images": 16,
        "measures": {"transfer": {"images": 2, "T": 12, "warmup": 4, "omegas": 2},
                     "heatmap": {"images": 8, "batch_size": 8},
                     "bandnoise": {"images": 16, "levels": [0.5]}},
    }))
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output", str(folder), "--no-progress"]) == 0
    with open(folder / "study.csv", newline="") as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    wheres = ("first", "stage1", "stage2", "stage3", "classifier")
    expected = [f"{kind}_db_{where}" for where in wheres for kind in ("transfer", "eq12", "floor")]
    expected += [f"heatmap_{side}" for side in ("clean_error", "error_low", "loss_low",
                                               "error_high", "loss_high")]
    expected += ["bandnoise_clean", "bandnoise_drop_low", "bandnoise_drop_high"]
    for row in rows.values():
        assert row["state"] == "done"
        assert all(row[column] != "" for column in expected), row
    # Eq. 12 for the first LIF neuron (one neuron, tau 2) at pi re pi/2; none for ReLU
    assert float(rows["lif"]["eq12_db_first"]) == pytest.approx(LIF_DB, abs=1e-9)
    assert all(float(rows["relu"][f"eq12_db_{where}"]) == 0.0 for where in wheres)
    for row in rows.values():
        for column in ("heatmap_clean_error", "bandnoise_clean"):
            assert 0.0 <= float(row[column]) <= 1.0
    text = (folder / "study.md").read_text()
    assert "## Temporal transfer (Eq. 11-12)" in text
    assert "## Sensitivity to spatial frequencies" in text
    assert yaml.safe_load((folder / STUDY_YAML).read_text())["measures"]["transfer"]["T"] == 12
    with Image.open(folder / "study.png") as image:
        assert image.height > 1000  # the second row of panels
