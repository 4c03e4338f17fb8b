"""Frequency response of IF and LIF neurons: closed form, simulation, cascades and a toy.

Panels of ``neuron_response.png`` (frequencies normalised as omega / pi):

(a) sub-threshold gain in dB of IF and LIF (tau 1.5, 2, 4, 8), closed form with the
    membrane of spikingjelly's nodes (threshold out of reach) measured on it;
    spike outputs below come from the project's neurons (``models.neurons``);
(b) spiking regime (threshold 1, hard reset): spike-output gain relative to the gain at
    the lowest drive frequency, measured around a bias that fires one spike every 3.5 steps,
    with drive amplitude 0.1 and a white-noise dither of standard deviation 0.2 (units of
    the threshold), next to the membrane's closed form taken relative to the same frequency;
(c) the -3 dB cut-off of the LIF filter against tau;
(d) the gain of a cascade of L LIF layers (tau 2);
(e, f) the toy: a sum of three sinusoids through ReLU and through a LIF neuron with
    beta = 1 - 1/tau = 0.25, in time and as amplitude spectra.

The numbers go to ``neuron_response.json``. Figures are drawn without pyplot, on
matplotlib's headless Agg canvas. Run ``python -m analysis.neuron_response --help``.
"""

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from spikingjelly.activation_based import neuron as sj_neuron

from models.neurons import if_multistep, lif_multistep
from spectral import (
    cascade_transfer,
    lif_cutoff,
    measure_neuron_response,
    neuron_transfer,
)

TAUS = (1.5, 2.0, 4.0, 8.0)
TOY_TAU = 4.0 / 3.0  # beta = 1 - 1/tau = 0.25
TOY_OMEGAS = (0.05 * math.pi, 0.3 * math.pi, 0.8 * math.pi)
SPIKE_INTERVAL = 3.5  # steps between spikes at the spiking operating point, without drive
SPIKE_AMPLITUDE = 0.1  # sinusoidal drive around that operating point
SPIKE_NOISE = 0.2  # white-noise dither of the operating point


def neuron_callable(
    tau: float | None, membrane: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A multi-step LIF neuron (IF for ``tau=None``) as a ``[T, N] -> [T, N]`` callable.

    ``membrane=True``: spikingjelly's node with the threshold out of reach, returning its
    membrane potential (``v_seq``; our neurons return spikes only). Otherwise our neuron
    (``models.neurons``, same semantics) with threshold 1 and hard reset to 0: its spikes.
    """
    if not membrane:
        if tau is None:
            return lambda x: if_multistep(x, backend="torch")
        return lambda x: lif_multistep(x, tau=tau, backend="torch")

    def run(x: torch.Tensor) -> torch.Tensor:
        options = dict(v_threshold=1e9, step_mode="m", store_v_seq=True)
        node = sj_neuron.IFNode(**options) if tau is None else sj_neuron.LIFNode(tau, **options)
        node(x)
        return node.v_seq

    return run


def operating_bias(tau: float | None) -> float:
    """Constant input that makes a threshold-1 neuron fire every ``SPIKE_INTERVAL`` steps."""
    if tau is None:
        return 1.0 / SPIKE_INTERVAL
    return 1.0 / (1.0 - (1.0 - 1.0 / tau) ** SPIKE_INTERVAL)


def label(tau: float | None) -> str:
    return "IF" if tau is None else f"LIF tau={tau:g}"


def db(h: np.ndarray) -> np.ndarray:
    return 20.0 * np.log10(np.abs(h))


def amplitude_spectrum(x: np.ndarray, omegas: np.ndarray) -> np.ndarray:
    """Hann-windowed amplitude of ``x [T]`` at ``omegas`` (rad per step); a unit sine gives 1."""
    window = np.hanning(x.size)
    phasors = np.exp(-1j * np.outer(omegas, np.arange(x.size)))
    return 2.0 * np.abs(phasors @ ((x - x.mean()) * window)) / window.sum()


def simulate(args: argparse.Namespace) -> dict:
    omegas = np.linspace(0.04, 0.96, args.points) * math.pi
    drive = dict(steps=args.sim_length, neurons=args.neurons, seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    subthreshold, spiking = {}, {}
    for tau in (None, *TAUS):
        membrane = neuron_callable(tau, membrane=True)
        measured = measure_neuron_response(membrane, omegas, **drive)
        subthreshold[label(tau)] = {
            "tau": tau,
            "measured_gain_db": db(measured).tolist(),
            "closed_form_gain_db": db(neuron_transfer(omegas, tau)).tolist(),
        }
        bias = operating_bias(tau)
        spikes = neuron_callable(tau, membrane=False)
        gain = np.abs(
            measure_neuron_response(
                spikes, omegas, bias=bias, amplitude=SPIKE_AMPLITUDE, noise=SPIKE_NOISE, **drive
            )
        )
        closed = np.abs(neuron_transfer(omegas, tau))
        noise = torch.randn(args.sim_length, args.neurons, generator=generator)
        rate = spikes(bias + SPIKE_NOISE * noise).mean().item()
        spiking[label(tau)] = {
            "tau": tau,
            "bias": bias,
            "amplitude": SPIKE_AMPLITUDE,
            "noise": SPIKE_NOISE,
            "firing_rate": rate,
            "gain": gain.tolist(),
            "relative_gain_db": db(gain / gain[0]).tolist(),
            "closed_form_relative_gain_db": db(closed / closed[0]).tolist(),
        }
    return {
        "omega_over_pi": (omegas / math.pi).tolist(),
        "subthreshold": subthreshold,
        "spiking": spiking,
    }


def toy(steps: int) -> dict:
    t = torch.arange(steps, dtype=torch.float64)
    x = sum(torch.sin(omega * t) for omega in TOY_OMEGAS)
    lif = neuron_callable(TOY_TAU, membrane=False)
    outputs = {
        "input": x,
        "ReLU": torch.relu(x),
        f"LIF spikes (beta = {1 - 1 / TOY_TAU:g})": lif(x[:, None])[:, 0],
    }
    grid = np.linspace(0.0, 1.0, 1 + steps // 2)
    result = {
        "omegas_over_pi": [omega / math.pi for omega in TOY_OMEGAS],
        "spectrum_omega_over_pi": grid.tolist(),
        "signals": {},
    }
    for name, y in outputs.items():
        result["signals"][name] = {
            "amplitude_at_toy_omegas": amplitude_spectrum(y.numpy(), np.array(TOY_OMEGAS)).tolist(),
            "series": y[:64].tolist(),
            "spectrum": amplitude_spectrum(y.numpy(), grid * math.pi).tolist(),
        }
    return result


def plot(results: dict, layers: int, path: Path) -> None:
    fig = Figure(figsize=(16, 9), layout="constrained")
    axes = fig.subplots(2, 3)
    grid = np.linspace(0.005, 1.0, 400)
    points = np.array(results["omega_over_pi"])
    colors = {name: f"C{i}" for i, name in enumerate(results["subthreshold"])}

    ax = axes[0, 0]
    for name, entry in results["subthreshold"].items():
        ax.plot(grid, db(neuron_transfer(grid * math.pi, entry["tau"])), color=colors[name])
        ax.plot(points, entry["measured_gain_db"], "o", color=colors[name], label=name)
    ax.set(title="(a) sub-threshold membrane: closed form, simulated (dots)", ylim=(-25, 30))
    ax.set_ylabel("gain |H| (dB)")

    ax = axes[0, 1]
    for name, entry in results["spiking"].items():
        closed = np.abs(neuron_transfer(grid * math.pi, entry["tau"]))
        reference = np.abs(neuron_transfer(points[0] * math.pi, entry["tau"]))
        ax.plot(grid, db(closed / reference), color=colors[name], alpha=0.5)
        ax.plot(
            points,
            entry["relative_gain_db"],
            "o-",
            color=colors[name],
            label=f"{name}, rate {entry['firing_rate']:.2f}",
        )
    ax.set(
        title="(b) spiking regime: spike output (dots), membrane (lines)",
        ylabel=f"gain relative to omega = {points[0]:.2f} pi (dB)",
        ylim=(-30, 15),
    )

    for ax in axes[0, :2]:
        ax.set(xlabel="normalised frequency omega / pi")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)

    ax = axes[0, 2]
    taus = np.geomspace(1.25, 32.0, 200)
    edge = (1.0 + math.sqrt(2.0)) / 2.0
    ax.semilogx(taus, lif_cutoff(taus) / math.pi, color="C1")
    ax.semilogx(
        [tau for tau in TAUS if tau > edge],
        [lif_cutoff(tau) / math.pi for tau in TAUS if tau > edge],
        "o",
        color="C1",
    )
    ax.axvline(edge, color="gray", ls="--", label=f"no -3 dB point below tau = {edge:.3f}")
    ax.set(
        title="(c) LIF -3 dB cut-off",
        xlabel="membrane time constant tau (steps)",
        ylabel="cut-off omega_c / pi",
        ylim=(0, 1.05),
    )
    ax.set_xticks([1.25, 2, 4, 8, 16, 32], labels=["1.25", "2", "4", "8", "16", "32"])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")

    ax = axes[1, 0]
    for count in range(1, layers + 1):
        ax.plot(grid, db(cascade_transfer(grid * math.pi, count, 2.0)), label=f"L = {count}")
    ax.set(
        title="(d) cascade of L LIF layers (tau = 2, closed form)",
        xlabel="normalised frequency omega / pi",
        ylabel="gain |H|^L (dB)",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    signals = results["toy"]["signals"]
    ax = axes[1, 1]
    for offset, (name, entry) in enumerate(signals.items()):
        ax.step(
            np.arange(len(entry["series"])),
            np.array(entry["series"]) - 4.0 * offset,
            where="mid",
            label=name,
        )
    ax.set(
        title="(e) toy: three sinusoids in, outputs (offset by 4)",
        xlabel="time step t",
        ylabel="value (offset)",
        ylim=(-9, 6),
    )
    ax.legend(fontsize=8, loc="upper center", ncol=3)

    ax = axes[1, 2]
    omega_axis = np.array(results["toy"]["spectrum_omega_over_pi"])
    for name, entry in signals.items():
        ax.semilogy(omega_axis, np.maximum(entry["spectrum"], 1e-6), label=name, lw=1)
    for omega in results["toy"]["omegas_over_pi"]:
        ax.axvline(omega, color="gray", ls=":")
    ax.set(
        title="(f) toy: amplitude spectra (Hann window)",
        ylim=(1e-4, 2),
        xlabel="normalised frequency omega / pi",
        ylabel="amplitude (unit sine = 1)",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    fig.savefig(path, dpi=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.neuron_response",
        description="Frequency response of IF and LIF neurons (closed form and simulation).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/neuron_response"),
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--neurons",
        type=int,
        default=64,
        help="simulated neurons per frequency (default: %(default)s)",
    )
    parser.add_argument(
        "--sim-length",
        type=int,
        default=2048,
        help="recorded time steps per simulation (default: %(default)s)",
    )
    parser.add_argument(  # the old spelling; --steps is never T, nor anything else
        "--steps", dest="sim_length", type=int, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--points",
        type=int,
        default=12,
        help="simulated frequencies in (0, pi) (default: %(default)s)",
    )
    parser.add_argument(
        "--layers", type=int, default=4, help="largest cascade depth L (default: %(default)s)"
    )
    parser.add_argument(
        "--toy-steps",
        type=int,
        default=1024,
        help="length of the toy signal (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = simulate(args)
    results["toy"] = toy(args.toy_steps)
    taus = np.geomspace(1.25, 32.0, 12)
    results["cutoff"] = {
        "tau": taus.tolist(),
        "omega_c_over_pi": (lif_cutoff(taus) / math.pi).tolist(),
        "no_cutoff_below_tau": (1.0 + math.sqrt(2.0)) / 2.0,
    }
    results["cascade"] = {
        "tau": 2.0,
        "layers": list(range(1, args.layers + 1)),
        "gain_db_at_half_pi": [
            float(db(cascade_transfer(math.pi / 2, n, 2.0))) for n in range(1, args.layers + 1)
        ],
    }
    results["settings"] = vars(args)
    plot(results, args.layers, args.out / "neuron_response.png")
    (args.out / "neuron_response.json").write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
