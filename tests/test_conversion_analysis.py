"""Analysis of converted networks over time steps: chunked runs give the gradients and
Grad-CAM of one call, firing-rate spectra approach the ANN's as T grows, and the analysis
commands read converted checkpoints (and refuse --twins on them in one line)."""

import json

import pytest
import torch
from test_conversion import tiny_ann
from test_convert_command import saved_checkpoint

from models.app.cli import main
from models.conversion import ChunkedNetwork, convert, forward_in_chunks
from models.gradcam import grad_cam
from models.neurons import ConvertedIF, MultiStepReLU
from spectral import SpectrumProbe


def converted(name: str = "maxformer_cifar") -> tuple[torch.nn.Module, torch.Tensor]:
    """A tiny float64 network converted with the 100th percentile of its activations on the
    images returned with it (so the IF neurons' rates can reach the ANN's activations)."""
    ann = tiny_ann(name).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return convert(ann, [x], percentile=100.0, backend="torch"), x


def test_chunks_give_the_gradients_of_one_call():
    """Each chunk is recomputed in backward from its starting state, whose membranes carry
    the gradient back to the chunks before: the input gradient of one call at T steps."""
    snn, x = converted()

    def input_grad(chunk: int) -> torch.Tensor:
        images = x.clone().requires_grad_(True)
        logits = forward_in_chunks(snn, images, 12, chunk=chunk)
        (grad,) = torch.autograd.grad(logits[:, 0].sum(), images)
        return grad

    whole = input_grad(12)
    assert float(whole.abs().max()) > 0
    torch.testing.assert_close(input_grad(5), whole, rtol=0, atol=1e-12)


def test_grad_cam_in_chunks_equals_grad_cam_of_one_call():
    snn, x = converted()
    layer = snn.stage3[-1]
    snn.T = 12
    heat, classes = grad_cam(snn, x, layer)
    chunked, chunked_classes = grad_cam(ChunkedNetwork(snn, 12, chunk=5), x, layer,
                                        every_call=True)
    assert torch.equal(classes, chunked_classes)
    assert float(heat.amax()) == 1.0
    torch.testing.assert_close(chunked, heat, rtol=0, atol=1e-9)
    last_chunk_only, _ = grad_cam(ChunkedNetwork(snn, 12, chunk=5), x, layer)
    assert float((last_chunk_only - heat).abs().max()) > 1e-3


def rate_spectra(model: torch.nn.Module, x: torch.Tensor, T: int | None) -> dict:
    """Per neuron with maps of the input's size (by name): the spectrum of its time-averaged
    output (firing-rate maps of the converted network at T steps, in chunks; the ANN's
    activations for T None)."""
    neurons = ConvertedIF if T else MultiStepReLU
    probe = SpectrumProbe(model, types=neurons, time_mean=True)
    with probe, torch.no_grad():
        forward_in_chunks(model, x, T, chunk=32) if T else model(x)
    return {layer.name: layer.output for layer in probe.results
            if layer.output is not None and layer.output.size == tuple(x.shape[-2:])}


@pytest.mark.parametrize("name", ["max_resnet18", "maxformer_cifar"])
def test_firing_rate_spectra_approach_the_anns_as_T_grows(name):
    """Rates times thresholds tend to the ANN's activations (every activation is at most its
    threshold here), and the relative log amplitude and the high-frequency ratio ignore
    scale: their largest distance to the ANN's over the first stage's neurons falls towards
    0 as T grows."""
    snn, x = converted(name)
    reference = rate_spectra(tiny_ann(name).double(), x, None)
    assert len(reference) >= 4

    def distance(T: int) -> float:
        spectra = rate_spectra(snn, x, T)
        assert spectra.keys() == reference.keys()
        return max(max(float(abs(s.delta_log_amplitude - reference[k].delta_log_amplitude)
                             .max()), abs(s.high_frequency_ratio
                                          - reference[k].high_frequency_ratio))
                   for k, s in spectra.items())

    distances = [distance(T) for T in (4, 16, 64, 256)]
    assert distances[0] > distances[1] > distances[2] > distances[3]
    assert distances[3] < distances[0] / 8
    assert distances[3] < 0.05


def test_spectra_bandnoise_and_cam_read_a_converted_checkpoint_at_a_chosen_T(tmp_path, capsys):
    source = saved_checkpoint(tmp_path / "relu.pt", "relu")
    out = tmp_path / "converted.pt"
    assert main(["convert", "--checkpoint", str(source), "--output", str(out), "--T", "4",
                 "--calibration-batches", "1", "--no-progress"]) == 0
    assert main(["spectra", "--checkpoint", str(out), "--T", "40", "--time-mean", "--cam", "2",
                 "--samples", "6", "--no-progress", "--output", str(tmp_path / "spectra")]) == 0
    report = json.loads((tmp_path / "spectra" / "spectra.json").read_text())
    assert report["time_mean"] is True
    assert (tmp_path / "spectra" / "cam.png").stat().st_size > 0
    types = {layer["module_type"] for layer in report["layers"]}
    assert {"ConvertedIF", "GatedMaxPool"} <= types
    assert "ANN: " in report["networks"][0]["weights"]
    assert main(["bandnoise", "--checkpoint", str(out), "--T", "40", "--samples", "6",
                 "--band", "0:0.5", "--level", "0.2", "--no-progress",
                 "--output", str(tmp_path / "bandnoise")]) == 0


@pytest.mark.parametrize("neuron, needle", [
    ("qcfs", "trained clips"),
    ("if_converted", "folded into its weights"),
])
def test_twins_of_a_qcfs_or_converted_checkpoint_are_refused_in_one_line(
        tmp_path, capsys, neuron, needle):
    checkpoint = saved_checkpoint(tmp_path / "qcfs.pt", "qcfs")
    if neuron == "if_converted":
        converted_path = tmp_path / "converted.pt"
        assert main(["convert", "--checkpoint", str(checkpoint), "--output",
                     str(converted_path), "--no-progress"]) == 0
        checkpoint = converted_path
        capsys.readouterr()
    for command in ("spectra", "heatmap"):
        assert main([command, "--checkpoint", str(checkpoint), "--twins", "--samples", "4",
                     "--no-progress", "--output", str(tmp_path / command)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err
        assert not (tmp_path / command).exists()
    if neuron == "if_converted":
        assert f"--checkpoint {tmp_path / 'qcfs.pt'}" in err
