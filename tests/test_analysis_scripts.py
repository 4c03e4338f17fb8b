"""The analysis scripts run on small settings and write sane figures and numbers."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from analysis import (
    conversion_cam,
    conversion_tables,
    feature_spectra,
    fig8_peers,
    neuron_response,
)
from models.app.cli import main as cli_main
from spectral import lif_cutoff

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_outputs(folder, stem):
    assert (folder / f"{stem}.png").read_bytes()[:8] == PNG_SIGNATURE
    return json.loads((folder / f"{stem}.json").read_text())


@pytest.mark.parametrize("script", [neuron_response, feature_spectra, fig8_peers])
def test_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_neuron_response(tmp_path):
    argv = ["--out", str(tmp_path), "--neurons", "4", "--steps", "256", "--points", "4"]
    neuron_response.main([*argv, "--layers", "3", "--toy-steps", "256"])
    report = read_outputs(tmp_path, "neuron_response")
    assert len(report["omega_over_pi"]) == 4
    assert set(report["subthreshold"]) == {
        "IF",
        "LIF tau=1.5",
        "LIF tau=2",
        "LIF tau=4",
        "LIF tau=8",
    }
    for entry in report["subthreshold"].values():
        np.testing.assert_allclose(
            entry["measured_gain_db"], entry["closed_form_gain_db"], atol=0.1
        )
    for entry in report["spiking"].values():
        assert 0.05 < entry["firing_rate"] < 0.6
        assert np.all(np.isfinite(entry["relative_gain_db"]))
    cutoff = report["cutoff"]
    np.testing.assert_allclose(
        cutoff["omega_c_over_pi"], lif_cutoff(np.array(cutoff["tau"])) / math.pi
    )
    gains = report["cascade"]["gain_db_at_half_pi"]
    assert len(gains) == 3
    np.testing.assert_allclose(gains, gains[0] * np.arange(1, 4))  # dB add up in a cascade
    amplitudes = report["toy"]["signals"]["input"]["amplitude_at_toy_omegas"]
    np.testing.assert_allclose(amplitudes, 1.0, rtol=0.02)  # three unit sines


def spectra_run(folder, pictures, method="radial"):
    """A small real ``maxformer spectra`` run: random resnet18 on two pictures."""
    code = cli_main(["spectra", "--model", "resnet18", "--images", str(pictures), "--img-size",
                     "32", "--layers", "layer1.*.act*", "--method", method, "--no-progress",
                     "--output", str(folder)])
    assert code == 0
    return folder / "spectra.json"


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_feature_spectra_draws_networks_of_several_runs(tmp_path, pictures):
    a, b = spectra_run(tmp_path / "a", pictures), spectra_run(tmp_path / "b", pictures)
    out = tmp_path / "compare.png"
    report = feature_spectra.main([str(a), str(b), "--out", str(out)])
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert [n["network"] for n in report["networks"]] == ["resnet18 (a)", "resnet18 (b)"]
    runs = [json.loads(path.read_text()) for path in (a, b)]
    assert len(report["layers"]) == sum(len(r["layers"]) for r in runs) == 8
    assert {r["network"] for r in report["layers"]} == {"resnet18 (a)", "resnet18 (b)"}
    only = feature_spectra.main([str(a), str(b), "--networks", "resnet18 (b)", "--out",
                                 str(tmp_path / "b.png")])
    assert [r["layer"] for r in only["layers"]] == [r["layer"] for r in runs[1]["layers"]]
    with pytest.raises(SystemExit, match="exists"):
        feature_spectra.main([str(a), "--out", str(out)])
    with pytest.raises(ValueError, match=r"unknown networks \['vgg'\]"):
        feature_spectra.main([str(a), "--networks", "vgg", "--out", str(tmp_path / "c.png")])


def test_feature_spectra_refuses_runs_of_different_methods(tmp_path, pictures):
    a = spectra_run(tmp_path / "a", pictures)
    b = spectra_run(tmp_path / "b", pictures, method="diagonal")
    with pytest.raises(ValueError, match="differ in \\(method, cutoff\\)"):
        feature_spectra.main([str(a), str(b), "--out", str(tmp_path / "x.png")])


def test_fig8_peers_draws_the_three_models_of_the_zoo_on_random_weights(tmp_path, capsys):
    out = tmp_path / "fig8"
    argv = ["--img-size", "32", "--T", "1", "--samples", "1", "--cam", "1", "--no-progress"]
    report = fig8_peers.main([*argv, "--out", str(out)])
    assert read_outputs(out, "fig8_peers") == json.loads(json.dumps(report))
    names = ["SDT-8-512", "MS-QKFormer-10-512", "Max-Former-10-512"]
    assert [n["network"] for n in report["networks"]] == names
    assert [n["model"] for n in report["networks"]] == ["sdt_8_512", "ms_qkformer_10_512",
                                                        "maxformer_10_512"]
    assert list(report["missing"]) == ["swformer_8_512"]
    for network in report["networks"]:
        assert network["random_weights"]
        assert network["weights"].endswith("BatchNorm statistics of 1 image")
        layers = [r for r in report["layers"] if r["network"] == network["network"]]
        assert max(r["firing_rate"] or 0.0 for r in layers) > 0.0  # not a silent network
        ratios = [r["output"]["high_frequency_ratio"] for r in layers if r["output"]]
        assert ratios and all(0.0 <= ratio <= 1.0 for ratio in ratios)
    assert [c["layer"] for c in report["cam"]] == ["block.7", "stage3", "stage3"]
    with pytest.raises(SystemExit) as refused:  # figures are never replaced
        fig8_peers.main([*argv, "--out", str(out)])
    assert refused.value.code == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("pair", ["swformer_8_512=w.pth", "sdt_8_512", "resnet18=w.pth"])
def test_fig8_peers_refuses_checkpoints_of_other_models(tmp_path, pair, capsys):
    with pytest.raises(SystemExit) as refused:
        fig8_peers.main(["--checkpoint", pair, "--out", str(tmp_path / "x")])
    assert refused.value.code == 2
    assert "MODEL=FILE with MODEL one of sdt_8_512, ms_qkformer_10_512" in capsys.readouterr().err


def test_fig8_peers_reads_the_checkpoint_it_is_given(tmp_path, capsys):
    missing = tmp_path / "8_512.pth"
    with pytest.raises(SystemExit) as refused:
        fig8_peers.main(["--checkpoint", f"sdt_8_512={missing}", "--img-size", "32",
                         "--out", str(tmp_path / "x")])
    assert refused.value.code == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing left behind


def spectra_report(neuron, T, layers, time_mean=False):
    """A spectra.json of one network: ``layers`` maps name -> (stage, high-frequency ratio,
    relative log amplitude profile)."""
    return {"time_mean": time_mean,
            "networks": [{"network": "net", "neuron": neuron, "T": T}],
            "layers": [{"layer": name, "stage": stage, "output": {
                "high_frequency_ratio": ratio, "delta_log_amplitude": profile[-1],
                "profile": {"delta_log_amplitude": profile}}}
                for name, (stage, ratio, profile) in layers.items()]}


def test_conversion_tables_compare_spectra_layers_of_the_same_name(tmp_path):
    ann = spectra_report("relu", 1, {"a": (1, 0.5, [0.0, -1.0, -2.0]), "b": (2, 0.2, [0.0, -0.5])})
    run = spectra_report("if_converted", 64, {"a": (1, 0.4, [0.0, -1.3, -2.1]),
                                              "b": (2, 0.2, [0.0, None]),
                                              "c": (2, 0.9, [0.0, 5.0])}, time_mean=True)
    found = conversion_tables.comparison(
        conversion_tables.analysed_layers(ann, tmp_path), conversion_tables.analysed_layers(
            run, tmp_path))
    assert found["layers"] == 2 and found["stage_ratio"] == [0.4, 0.2]
    assert found["ratio_distance"] == pytest.approx(0.05)
    assert found["profile_distance"] == pytest.approx(0.15)  # (0.3 + 0) / 2; None is left out
    assert found["summary_delta"] == pytest.approx(-2.1)  # the mean of -2.1 and None
    paths = []
    for name, report in (("ann", ann), ("t64", run)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "spectra.json")
        paths[-1].write_text(json.dumps(report))
    rows = conversion_tables.table(paths).splitlines()
    assert rows[2] == "| ann | relu | 1 | no | 2 | 0.500 / 0.200 | -1.250 | 0.000 | 0.000 |"
    assert rows[3] == ("| t64 | if_converted | 64 | yes | 2 | 0.400 / 0.200 | -2.100 | 0.050 | "
                       "0.150 |")


def test_conversion_tables_gradient_share_counts_the_frequencies_at_half_nyquist_and_above():
    """Flat amplitude on the 8 x 8 grid: of the 63 non-DC frequencies, the 8 with u^2 + v^2
    < 4 lie below radius 0.5 (radius = hypot(u, v) / 4)."""
    grid = list(range(-4, 4))
    flat = {"u": grid, "v": grid, "amplitude": [[1.0] * 8 for _ in grid]}
    assert conversion_tables.gradient_high_share(flat, 8) == pytest.approx(55 / 63)


def test_conversion_tables_band_noise_differences_from_the_first_run(tmp_path):
    def write(name, network):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "report.json"
        path.write_text(json.dumps(network))
        return path

    bands = {"bands": [[0, 0.5], [0.5, 1.5]], "levels": [0.1, 0.2]}
    ann = write("ann", {**bands, "networks": [{"neuron": "relu", "T": 1, "clean_accuracy": 1.0,
                                               "accuracy": [[1.0, 0.9], [0.8, 0.5]]}]})
    snn = write("t8", {**bands, "networks": [{"neuron": "if_converted", "T": 8,
                                              "clean_accuracy": 0.9,
                                              "accuracy": [[0.9, 0.9], [0.6, 0.1]]}]})
    rows = conversion_tables.table([ann, snn]).splitlines()
    assert rows[0].startswith("| run | neuron | T | clean | [0.00, 0.50) at 0.1 | "
                              "[0.50, 1.50) at 0.1 | [0.00, 0.50) at 0.2 |")
    assert rows[3] == "| t8 | if_converted | 8 | 0.90 | 0.90 | 0.60 | 0.90 | 0.10 | 0.175 |"


def test_conversion_cam_is_zero_against_itself_and_falls_with_T():
    """An ANN run in chunks at T = 2 is itself (its steps are equal; halving is exact), so
    the distance is 0; its conversion (thresholds: the largest activations on these images)
    comes closer to it as T grows."""
    import torch
    from test_conversion import tiny_ann

    from models.conversion import convert

    ann = tiny_ann("max_resnet18").double()
    images = torch.randn(4, 1, 16, 16, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    assert conversion_cam.cam_distances(ann, ann, images, [2]) == [0.0]
    snn = convert(ann, [images], percentile=100.0, backend="torch")
    near, far = conversion_cam.cam_distances(ann, snn, images, [256, 4])
    assert near < far / 2
