"""The analysis scripts run on small settings and write sane figures and numbers."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from analysis import feature_spectra, fig8_peers, neuron_response
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
