"""Regimes of IF and LIF neurons: where their spike output is the low-pass filter of theory.

For IF and LIF (several tau) neurons of the project (``models.neurons``: threshold 1, hard
reset to 0, decay_input), over a grid of input bias (sub-threshold to strongly firing) and
input noise (Gaussian white, per step), the gain at each temporal frequency relative to the
gain at the lowest one, by three methods (``spectral.regimes``): the closed form of the
sub-threshold membrane, the paper's firing-rate linearisation (membrane filter times the
slope ``k`` of the measured rate curve), and simulation of the spike output. A sinusoid of
amplitude ``--amplitude`` rides on the bias.

Outputs ``neuron_regimes.json`` (every number) and ``neuron_regimes.png``:
(a) per noise level, the high-frequency gain (mean relative gain over omega >= pi/2, dB)
    against the firing rate, simulated (markers; left out where the spike gain at the lowest
    frequency is below ``MIN_LOW_GAIN``: a mode-locked or silent neuron) and closed form /
    linearised (dashed; the two have the same relative gain);
(b) per noise level, how far the linearisation is from the simulated gain, at the lowest
    frequency (dots) and at the worst frequency (line);
(c) example gain curves at one noise level: simulated spike gain (markers) and linearised
    gain (lines), absolute;
(d) the sub-threshold check: the simulated membrane gain over the closed form.

The JSON's ``verdict`` says, per noise and bias, whether LIF keeps more high frequency than
IF, at equal bias and at equal firing rate. Run ``python -m analysis.neuron_regimes --help``.
"""

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from models.neurons import if_multistep, lif_multistep
from spectral import measure_neuron_response, neuron_transfer
from spectral.regimes import (
    high_frequency_gain_db,
    linearised_response,
    rate_slope,
    relative_gain,
)

TAUS = (2.0, 4.0, 8.0)
BIASES = (0.25, 0.5, 0.75, 0.9, 1.1, 1.5, 2.0, 3.0, 5.0, 8.0)
NOISES = (0.05, 0.2, 0.5, 1.0)
SUBTHRESHOLD_BIAS = 0.3  # LIF membrane check (IF: 0, its membrane would grow without end)
RATE_DELTA = 0.05  # half-width of the central difference of the rate curve
MIN_LOW_GAIN = 0.02  # below it the spike output ignores the slowest drive: no relative gain
UNREACHABLE = 1e9  # a threshold the membrane never reaches (the sub-threshold check)


def label(tau: float | None) -> str:
    return "IF" if tau is None else f"LIF tau={tau:g}"


def spike_callable(tau: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The project's neuron (threshold 1, hard reset to 0) as a ``[T, N] -> [T, N]`` spike
    callable; IF for ``tau=None``."""
    if tau is None:
        return lambda x: if_multistep(x, backend="torch")
    return lambda x: lif_multistep(x, tau=tau, backend="torch")


def membrane_callable(tau: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The membrane potential ``[T, N]`` of the project's neuron with the threshold out of
    reach, read one step at a time through ``v_init`` / ``return_state``."""

    def run(x: torch.Tensor) -> torch.Tensor:
        v, trace = None, []
        for step in x.split(1):
            kwargs = dict(v_threshold=UNREACHABLE, backend="torch", v_init=v, return_state=True)
            if tau is None:
                _, v = if_multistep(step, **kwargs)
            else:
                _, v = lif_multistep(step, tau=tau, **kwargs)
            trace.append(v)
        return torch.stack(trace)

    return run


def db(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20.0 * np.log10(x)


def finite(x: float) -> float | None:
    """``x`` for JSON: None for nan and inf."""
    return float(x) if np.isfinite(x) else None


def plain(value):
    """``value`` with every nan or inf float (at any depth) replaced by None, for JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return finite(value)
    return value


def subthreshold(omegas: np.ndarray, drive: dict, taus: Sequence[float]) -> dict:
    """Simulated membrane gain against the closed form, per neuron."""
    result = {}
    for tau in (None, *taus):
        bias = 0.0 if tau is None else SUBTHRESHOLD_BIAS
        measured = measure_neuron_response(membrane_callable(tau), omegas, bias=bias, **drive)
        closed = neuron_transfer(omegas, tau)
        result[label(tau)] = {
            "tau": tau,
            "bias": bias,
            "gain": np.abs(measured).tolist(),
            "closed_form_gain": np.abs(closed).tolist(),
            "max_relative_error": float(np.max(np.abs(np.abs(measured) / np.abs(closed) - 1))),
        }
    return result


def operating_point(
    tau: float | None, bias: float, noise: float, omegas: np.ndarray, args: argparse.Namespace
) -> dict:
    """Rate, rate-curve slope and the three gain curves of one neuron at one bias and noise."""
    neuron = spike_callable(tau)
    drive = dict(steps=args.sim_length, neurons=args.neurons, seed=args.seed)
    rate, slope = rate_slope(neuron, bias, noise, RATE_DELTA, **drive)
    simulated = measure_neuron_response(
        neuron, omegas, bias=bias, amplitude=args.amplitude, noise=noise, **drive
    )
    linearised = np.abs(linearised_response(omegas, tau, slope, omegas[0]))
    closed = relative_gain(neuron_transfer(omegas, tau))
    sim_gain = np.abs(simulated)
    sim_relative = relative_gain(sim_gain)
    passes_low = sim_gain[0] >= MIN_LOW_GAIN
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(db(sim_gain / linearised))
    return {
        "bias": bias,
        "noise": noise,
        "rate": rate,
        "slope": slope,
        "simulated_gain": sim_gain.tolist(),
        "linearised_gain": linearised.tolist(),
        "relative_gain": {
            "closed_form": closed.tolist(),
            "linearised": relative_gain(linearised).tolist(),
            "simulated": sim_relative.tolist(),
        },
        "high_frequency_gain_db": {
            "closed_form": high_frequency_gain_db(omegas, closed),
            "simulated": finite(high_frequency_gain_db(omegas, sim_relative))
            if passes_low else None,
        },
        "linearisation_error_db": {
            "lowest_frequency": finite(error[0]),
            "worst_frequency": finite(np.max(error)),
        },
    }


def _same_rate_hf(points: list[dict], rate: float) -> float | None:
    """IF's simulated high-frequency gain interpolated at firing rate ``rate`` (same noise),
    or None outside the rates IF reached."""
    usable = [(p["rate"], p["high_frequency_gain_db"]["simulated"]) for p in points
              if p["high_frequency_gain_db"]["simulated"] is not None and 0 < p["rate"] < 1]
    usable.sort()
    if len(usable) < 2 or not usable[0][0] <= rate <= usable[-1][0]:
        return None
    rates, gains = zip(*usable, strict=True)
    return float(np.interp(rate, rates, gains))


def verdict(grid: dict, taus: Sequence[float]) -> dict:
    """Whether LIF keeps more high frequency than IF (simulated spike output), per LIF tau,
    noise and bias: at the same bias and at the same firing rate."""
    result = {"same_bias": [], "same_rate": []}
    for tau in taus:
        for noise, points in grid[label(tau)].items():
            if_points = grid["IF"][noise]
            for lif, iff in zip(points, if_points, strict=True):
                a, b = lif["high_frequency_gain_db"]["simulated"], iff["high_frequency_gain_db"][
                    "simulated"]
                if a is not None and b is not None:
                    result["same_bias"].append({
                        "tau": tau, "noise": float(noise), "bias": lif["bias"],
                        "lif_rate": lif["rate"], "if_rate": iff["rate"],
                        "lif_hf_db": a, "if_hf_db": b, "lif_keeps_more": a > b,
                    })
                matched = _same_rate_hf(if_points, lif["rate"]) if a is not None else None
                if matched is not None:
                    result["same_rate"].append({
                        "tau": tau, "noise": float(noise), "bias": lif["bias"],
                        "rate": lif["rate"], "lif_hf_db": a, "if_hf_db": matched,
                        "lif_keeps_more": a > matched,
                    })
    for key in ("same_bias", "same_rate"):
        cases = result[key]
        result[f"{key}_share_lif_keeps_more"] = (
            sum(c["lif_keeps_more"] for c in cases) / len(cases) if cases else None
        )
    return result


def simulate(args: argparse.Namespace) -> dict:
    omegas = np.linspace(0.04, 0.96, args.points) * math.pi
    drive = dict(amplitude=args.amplitude, steps=args.sim_length, neurons=args.neurons,
                 seed=args.seed)
    grid = {
        label(tau): {
            f"{noise:g}": [operating_point(tau, bias, noise, omegas, args) for bias in args.biases]
            for noise in args.noises
        }
        for tau in (None, *args.taus)
    }
    return {
        "omega_over_pi": (omegas / math.pi).tolist(),
        "subthreshold": subthreshold(omegas, drive, args.taus),
        "grid": grid,
        "verdict": verdict(grid, args.taus),
    }


def plot(results: dict, path: Path) -> None:
    grid = results["grid"]
    noises = list(next(iter(grid.values())))
    omegas = np.array(results["omega_over_pi"])
    fig = Figure(figsize=(4.2 * max(len(noises), 4), 13), layout="constrained")
    axes = fig.subplots(3, max(len(noises), 4), squeeze=False)
    colors = {name: f"C{i}" for i, name in enumerate(grid)}
    for col, noise in enumerate(noises):
        ax, err_ax = axes[0, col], axes[1, col]
        for name, by_noise in grid.items():
            points = [p for p in by_noise[noise] if 0 < p["rate"] < 1]
            rates = [p["rate"] for p in points]
            sim = [p["high_frequency_gain_db"]["simulated"] for p in points]
            ax.plot(rates, [np.nan if s is None else s for s in sim], "o-", color=colors[name],
                    label=name, ms=4)
            ax.axhline(by_noise[noise][0]["high_frequency_gain_db"]["closed_form"],
                       color=colors[name], ls="--", lw=1)
            for key, style in (("lowest_frequency", "o"), ("worst_frequency", "-")):
                values = [p["linearisation_error_db"][key] for p in points]
                err_ax.semilogy(rates, [np.nan if v is None else max(v, 1e-3) for v in values],
                                style, color=colors[name], ms=4)
        ax.set(title=f"(a) noise {noise}: high-frequency gain", xlabel="firing rate",
               ylabel="mean gain at omega >= pi/2 re lowest (dB)", xlim=(0, 1))
        err_ax.set(title=f"(b) noise {noise}: linearisation vs simulation",
                   xlabel="firing rate", ylabel="|error| (dB): lowest freq (dots), worst (line)",
                   xlim=(0, 1))
        for a in (ax, err_ax):
            a.grid(alpha=0.3)
    axes[0, len(noises) - 1].legend(fontsize=8, loc="lower right",
                       title="simulated; dashed: closed form = linearised")
    for col in range(len(noises), axes.shape[1]):
        axes[0, col].set_visible(False)
        axes[1, col].set_visible(False)

    example_noise = noises[min(2, len(noises) - 1)]
    names = list(grid)
    wanted = [(names[0], 0.3), (names[min(1, len(names) - 1)], 0.3),
              (names[min(1, len(names) - 1)], 0.03)][: axes.shape[1] - 1]
    for col, (name, target) in enumerate(wanted):
        points = [p for p in grid[name][example_noise] if 0 < p["rate"] < 1]
        if not points:
            axes[2, col].set_visible(False)
            continue
        p = min(points, key=lambda q: abs(q["rate"] - target))
        ax = axes[2, col]
        ax.semilogy(omegas, p["simulated_gain"], "o", color=colors[name], label="simulated")
        ax.semilogy(omegas, p["linearised_gain"], "-", color=colors[name], label="linearised")
        ax.set(title=f"(c) {name}, bias {p['bias']:g}, noise {example_noise}, "
               f"rate {p['rate']:.2f}", xlabel="omega / pi", ylabel="spike gain |G|")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    for col in range(len(wanted), axes.shape[1] - 1):
        axes[2, col].set_visible(False)
    ax = axes[2, -1]
    for name, entry in results["subthreshold"].items():
        ratio = np.array(entry["gain"]) / np.array(entry["closed_form_gain"])
        ax.plot(omegas, 100 * (ratio - 1), "o-", color=colors[name], label=name, ms=4)
    ax.set(title="(d) sub-threshold membrane: simulated / closed form", xlabel="omega / pi",
           ylabel="error (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.neuron_regimes",
        description="Where IF and LIF spike outputs are low-pass: closed form, firing-rate "
        "linearisation and simulation over bias and noise.",
    )
    parser.add_argument("--out", type=Path, default=Path("out/neuron_regimes"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--taus", type=float, nargs="+", default=list(TAUS),
                        help="LIF time constants (default: %(default)s)")
    parser.add_argument("--biases", type=float, nargs="+", default=list(BIASES),
                        help="input biases, units of the threshold (default: %(default)s)")
    parser.add_argument("--noises", type=float, nargs="+", default=list(NOISES),
                        help="input noise standard deviations (default: %(default)s)")
    parser.add_argument("--amplitude", type=float, default=0.1,
                        help="sinusoidal drive amplitude (default: %(default)s)")
    parser.add_argument("--points", type=int, default=12,
                        help="simulated frequencies in (0, pi) (default: %(default)s)")
    parser.add_argument("--sim-length", type=int, default=2048,
                        help="recorded time steps per simulation (default: %(default)s)")
    parser.add_argument("--neurons", type=int, default=64,
                        help="simulated neurons per frequency (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = simulate(args)
    results["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    plot(results, args.out / "neuron_regimes.png")
    (args.out / "neuron_regimes.json").write_text(json.dumps(plain(results), indent=1))
    return results


if __name__ == "__main__":
    main()
