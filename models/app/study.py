"""Studies: grids of ordinary training runs (variants x seeds), resumable, with one report.

A study is a YAML file (shipped ones in ``models/app/studies``, by name)::

    description: what the study asks
    base: digits                  # a recipe (shipped name or YAML path), or a mapping of keys
    set: {epochs: 10}             # config keys of every cell
    variants:                     # a list of variants: a name and config keys ...
      - {name: avg-pool, model_kwargs: {mixers: [avg_pool, avg_pool, avg_pool]}}
      - {name: relu, neuron: relu}
    seeds: [0, 1, 2]              # the config key `seed` of each cell
    measure_images: 256           # held-out images the measures use (default 256)
    measures: {transfer: {omegas: 4}, heatmap: {}, bandnoise: {}}   # optional, see below

``variants`` may instead map axis names to lists of variants: the cells are then every
combination of one variant per axis. An axis (or ``variants`` itself) may be the name of
another study, whose variants it takes. A cell's config is the base recipe, then ``set``,
then its variants' keys in axis order (``model_kwargs`` merged key by key), then its seed.

Each cell is an ordinary run folder ``<study folder>/<variant>/seed<seed>`` written by
:func:`models.app.training.trainer.train`; a finished cell also holds ``cell.json``, its
measures on the first ``measure_images`` held-out images with the final weights: top-1, per
stage the firing rate and high-frequency ratio (:func:`stage_spectra`), and the energy per
image (:mod:`models.energy`); with ``measures``, also the network-level summaries of the named
measures (temporal transfer, Fourier heat map, band noise) at their own small settings
(:mod:`models.app.analysis.cell_measures`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import itertools
import json
import math
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from models.app.config import (
    RESUMABLE_CHANGES,
    TrainConfig,
    build_config,
    dataset_defaults,
    merge_keys,
    read_recipe,
)
from models.app.datasets import DATASETS
from models.app.errors import RunInterrupted, UserError, shown
from models.app.files import (
    atomic_write,
    atomic_write_text,
    load_yaml,
    named_yaml,
    read_yaml_mapping,
    shipped_names,
)

if TYPE_CHECKING:
    import torch

STUDY_DIR = Path(__file__).resolve().parent / "studies"
STUDY_KEYS = ("description", "base", "set", "variants", "seeds", "measure_images", "measures")
MACHINE_KEYS = tuple(key for key in RESUMABLE_CHANGES if key != "epochs")
"""Config keys a cell may change when it resumes (where the data is, how it is read)."""
CELL_JSON = "cell.json"
STUDY_YAML = "study.yaml"
LOCK_FILE = ".study-lock"
TIMING_COLUMNS = ("train_seconds",)
"""Columns of ``study.csv`` that depend on the machine, not on the run."""
STATES = ("pending", "partial", "trained", "done")


@dataclass(frozen=True)
class Variant:
    """One combination of axis entries: ``labels`` (axis -> entry name) and its keys."""

    labels: dict[str, str]
    settings: dict[str, Any]

    @property
    def name(self) -> str:
        return ", ".join(self.labels.values())

    @property
    def slug(self) -> str:
        return "_".join(slug(label) for label in self.labels.values())


@dataclass(frozen=True)
class Cell:
    """One run of a study: a variant at a seed, its config and its folder (relative)."""

    index: int
    variant: Variant
    seed: int
    config: TrainConfig

    @property
    def folder(self) -> Path:
        return Path(self.variant.slug) / f"seed{self.seed}"


@dataclass
class Study:
    """A parsed and validated study (see the module docstring)."""

    name: str
    description: str
    base: dict[str, Any]
    settings: dict[str, Any]
    axes: list[str]
    variants: list[Variant]
    seeds: list[int]
    measure_images: int
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)


def slug(text: str) -> str:
    """A folder name for ``text``: runs of other characters than letters, digits, ``.``,
    ``-`` and ``+`` become ``-``; leading dots are dropped (no ``..``, no hidden folder),
    and what is left empty is ``-``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-").lstrip(".").lower() or "-"


def study_names() -> list[str]:
    """Names of the studies shipped in ``models/app/studies``."""
    return shipped_names(STUDY_DIR)


def _load_spec(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    path = named_yaml(name_or_path, STUDY_DIR, "study")
    spec = read_yaml_mapping(path, "study")
    unknown = sorted(set(spec) - set(STUDY_KEYS))
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(map(str, unknown))} in study {path}; "
            f"valid keys: {', '.join(STUDY_KEYS)}"
        )
    return path, spec


def _axis_entries(value: Any, where: str, seen: tuple[str, ...]) -> list[tuple[str, dict]]:
    """``(name, keys)`` of each variant of one axis: a list of mappings with a ``name``, or
    the name of another study whose (single-axis) variants it takes."""
    if isinstance(value, str):
        if value in seen:
            raise UserError(f"{where}: studies {' -> '.join((*seen, value))} refer in a circle")
        _, spec = _load_spec(value)
        axes = _axes(spec.get("variants"), f"study {value}", (*seen, value))
        if len(axes) != 1:
            raise UserError(f"{where}: study {value!r} has {len(axes)} axes; use one with one")
        return next(iter(axes.values()))
    if not isinstance(value, list) or not value:
        raise UserError(
            f"{where} must be a non-empty list of variants ({{name: ..., key: value}}) "
            "or the name of a study"
        )
    entries = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str | int | float):
            raise UserError(f"{where}, entry {i + 1}: a variant is a mapping with a name, got "
                            f"{item!r}")
        keys = {k: v for k, v in item.items() if k != "name"}
        if "seed" in keys:
            raise UserError(f"{where}, variant {item['name']!r}: the seeds key sets the seed")
        entries.append((str(item["name"]), keys))
    names = [name for name, _ in entries]
    slugs = [slug(name) for name in names]
    duplicates = sorted({n for n, s in zip(names, slugs, strict=True) if slugs.count(s) > 1})
    if duplicates or "" in slugs:
        raise UserError(f"{where}: variant names must differ as folder names, got {names}")
    return entries


def _axes(value: Any, where: str, seen: tuple[str, ...]) -> dict[str, list[tuple[str, dict]]]:
    """The axes of ``variants``: ``{axis: [(name, keys), ...]}`` (one axis ``variant`` for a
    list)."""
    if isinstance(value, dict) and value:
        return {str(axis): _axis_entries(v, f"{where}, axis {axis}", seen)
                for axis, v in value.items()}
    return {"variant": _axis_entries(value, f"{where}: variants", seen)}


def _seeds(value: Any, where: str) -> list[int]:
    if value is None:
        return [TrainConfig.seed]
    seeds = value if isinstance(value, list) else [value]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"{where}: seeds must be a list of integers, got {value!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: seeds must differ, got {seeds}")
    return seeds


def _check_model(cfg: TrainConfig) -> None:
    """Build the cell's model once, so that an unknown mixer or embedding fails now."""
    from models.app.modeling import model_for_config

    model_for_config(cfg, DATASETS[cfg.dataset])


def read_study(name_or_path: str) -> Study:
    """Read and validate a study: every cell's config and model are built, so that an
    unknown key or value ends here (a `UserError`), before any cell runs."""
    path, spec = _load_spec(name_or_path)
    where = f"study {path.stem}"
    base = spec.get("base", "digits")
    if isinstance(base, str):
        base = read_recipe(base)
    elif not isinstance(base, dict):
        raise UserError(f"{where}: base must be a recipe name, a YAML path or a mapping")
    settings = spec.get("set") or {}
    if not isinstance(settings, dict):
        raise UserError(f"{where}: set must be a mapping of config keys, got {shown(settings)}")
    if "seed" in settings:
        raise UserError(f"{where}: the seeds key sets the seed, not set")
    axes = _axes(spec.get("variants"), where, (path.stem,))
    measure_images = spec.get("measure_images", 256)
    if isinstance(measure_images, bool) or not isinstance(measure_images, int) or (
        measure_images < 1
    ):
        raise UserError(f"{where}: measure_images must be an integer >= 1, got {measure_images!r}")
    from models.app.analysis.cell_measures import read_measures

    measures = read_measures(spec.get("measures"), where)
    variants = []
    for combination in itertools.product(*axes.values()):
        keys: dict[str, Any] = {}
        for _, entry in combination:
            keys = merge_keys(keys, entry)
        labels = dict(zip(axes, (name for name, _ in combination), strict=True))
        variants.append(Variant(labels, keys))
    study = Study(
        name=path.stem, description=str(spec.get("description", "")).strip(), base=base,
        settings=settings, axes=list(axes), variants=variants,
        seeds=_seeds(spec.get("seeds"), where), measure_images=measure_images,
        measures=measures,
    )
    for variant in variants:
        try:
            config = merge_keys(merge_keys(base, settings), variant.settings)
            for seed in study.seeds:
                cfg = build_config(config, {"seed": seed})
                study.cells.append(Cell(len(study.cells), variant, seed, cfg))
            _check_model(study.cells[-1].config)
        except UserError as err:
            raise UserError(f"{where}, variant {variant.name!r}: {err}") from err
    return study


# ---------------------------------------------------------------------------------------------
# running


def parse_part(text: str) -> tuple[int, int]:
    """``"i/n"`` (``1 <= i <= n``) as ``(i, n)``: this process takes cells ``i, i + n, ...``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UserError(f"--cells expects i/n with 1 <= i <= n (e.g. 2/4), got {text!r}")
    return int(match[1]), int(match[2])


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when missing or torn (a crash while writing)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def cell_state(folder: Path) -> str:
    """``pending`` (nothing saved), ``partial`` (a resumable checkpoint), ``trained``
    (training finished) or ``done`` (measured: ``cell.json``)."""
    from models.app.training.checkpointing import LAST
    from models.app.training.run_files import SUMMARY_JSON

    if _read_json(folder / CELL_JSON) is not None:
        return "done"
    if _read_json(folder / SUMMARY_JSON) is not None:
        return "trained"
    return "partial" if (folder / LAST).is_file() else "pending"


def _check_saved_config(cell: Cell, folder: Path) -> None:
    """Refuse a cell folder whose saved config differs from the cell's (a changed study)."""
    from models.app.training.run_files import CONFIG_YAML

    path = folder / CONFIG_YAML
    if not path.is_file():
        return
    try:
        saved = load_yaml(path.read_text())
        saved = dataset_defaults(build_config(saved, {})).to_dict()
    except (yaml.YAMLError, UserError, TypeError) as err:
        raise UserError(f"{path} is not a run config ({err}); use another --output") from err
    wanted = dataset_defaults(cell.config).to_dict()  # classes and channels as a run saves them
    changed = sorted(k for k in wanted if k not in MACHINE_KEYS and saved.get(k) != wanted[k])
    if changed:
        first = changed[0]
        raise UserError(
            f"{folder} was trained with another config ({first}: {saved.get(first)!r}, the "
            f"study says {wanted[first]!r}); use another --output for a changed study"
        )


@contextlib.contextmanager
def cell_lock(folder: Path) -> Iterator[bool]:
    """Hold an exclusive lock on the cell ``folder`` (created if missing); yields False when
    another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def stage_spectra(model: torch.nn.Module, images: torch.Tensor, T: int | None) -> dict[str, float]:
    """Per stage the firing rate (``rate_stageN``, and ``rate_classifier``) and the
    high-frequency ratio of the stage output (``hf_ratio_stageN``) on ``images [B, ...]``.

    The one place a study measures spectra: today through
    :func:`models.app.training.stage_stats.stage_statistics` (``models.energy`` and
    ``spectral.high_frequency_ratio``, cut-off 0.5 of Nyquist)."""
    from models.app.training.stage_stats import stage_statistics

    return stage_statistics(model, images, T)


def _with_T(cfg: TrainConfig, info: Any, model: torch.nn.Module, device: torch.device,
            T: int) -> torch.nn.Module:
    """``model`` (built from ``cfg``) rebuilt for ``T`` time steps with the same weights, in
    eval mode on ``device``."""
    from models.app.modeling import model_for_config

    clips = model_for_config(build_config(cfg.to_dict(), {"T": T}), info)
    clips.load_state_dict(model.state_dict())
    return clips.to(device).eval()


def measure_cell(cell: Cell, folder: Path, images: int, device: str = "auto",
                 measures: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The measures of a trained cell (see the module docstring) as one flat dict; ``measures``
    (a study's, see `read_measures`) adds the network-level summaries."""
    import torch

    from models.app.analysis.cell_measures import network_measures
    from models.app.data import build_datasets
    from models.app.modeling import model_for_config
    from models.app.options import resolve_device
    from models.app.training.checkpointing import LAST
    from models.app.training.run_files import METRICS_CSV, SUMMARY_JSON
    from models.checkpoint import read_checkpoint
    from models.energy import measure_energy

    summary = _read_json(folder / SUMMARY_JSON) or {}
    with open(folder / METRICS_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    _, val_set, info = build_datasets(cell.config)
    model = model_for_config(cell.config, info)
    model.load_state_dict(read_checkpoint(folder / LAST)["model"])
    dev = resolve_device(device)
    model.to(dev).eval()
    chosen = measures or {}
    count = min(images, len(val_set))
    needed = min(max([images, *(m["images"] for m in chosen.values())]), len(val_set))
    items = [val_set[i] for i in range(needed)]
    held_out = torch.stack([x for x, _ in items]).to(dev)
    labels = torch.as_tensor([y for _, y in items]).to(dev)
    batch = held_out[:count]
    measures = {
        "top1": summary["final_acc1"],
        "top5": summary["final_acc5"],
        "loss": summary["final_loss"],
        "best_top1": summary["best_acc1"],
        "best_epoch": summary["best_epoch"],
        "energy_mj": measure_energy(model, batch, cell.config.T).energy_mj,
        **stage_spectra(model, batch, cell.config.T),
        **network_measures(model, held_out, labels, chosen, partial(
            _with_T, cell.config, info, model, dev), cell.seed),
        "params": sum(p.numel() for p in model.parameters()),
        "measured_images": count,
        "train_seconds": round(sum(float(r["epoch_seconds"]) for r in rows), 1),
    }
    return {"variant": cell.variant.name, **cell.variant.labels, "seed": cell.seed, **measures}


def _progress(cells: list[Cell], cell: Cell, text: str, log: Callable[[str], None]) -> None:
    log(f"[cell {cell.index + 1}/{len(cells)}] {cell.variant.name}, seed {cell.seed}: {text}")


def _run_cell(study: Study, cell: Cell, folder: Path, progress: bool, device: str,
              log: Callable[[str], None]) -> None:
    from models.app.training.checkpointing import load_resume_point, position
    from models.app.training.trainer import train

    state = cell_state(folder)
    if state in ("pending", "partial"):
        point = None
        if state == "partial":
            point = load_resume_point(folder)
            done = position(point.epoch, point.batches)
            _progress(study.cells, cell, f"resuming after {done} ({folder})", log)
        else:
            _progress(study.cells, cell, f"training ({folder})", log)
        train(cell.config, output=folder, resume=point, progress=progress, device=device,
              restart=True)
    measures = measure_cell(cell, folder, study.measure_images, device, study.measures)
    atomic_write_text(folder / CELL_JSON, json.dumps(measures, indent=2) + "\n")
    _progress(
        study.cells, cell,
        f"top-1 {measures['top1']:.2f}%, {measures['energy_mj']:.3g} mJ per image, "
        f"{measures['train_seconds']:.0f} s of training",
        log,
    )


def run_study(
    study: Study,
    root: Path,
    part: tuple[int, int] = (1, 1),
    progress: bool = False,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> None:
    """Run this process's part ``(i, n)`` of the cells (``i, i + n, ...``, 1-based) under
    ``root``: finished cells are skipped, interrupted ones resume, cells another process holds
    are left to it. Raises `RunInterrupted` on SIGINT/SIGTERM (rerun to continue)."""
    i, n = part
    mine = study.cells[i - 1 :: n]
    check_study_folder(root, study, new=True)
    for cell in study.cells:
        _check_saved_config(cell, root / cell.folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot make study folder {root}: {err.strerror or err}") from err
    atomic_write_text(root / STUDY_YAML, yaml.safe_dump(study_record(study), sort_keys=False))
    from models.app.training.trainer import StopSignals

    try:
        with StopSignals() as stop:
            for cell in mine:
                _stop_if_asked(stop, f"before cell {cell.index + 1}")
                folder = root / cell.folder
                if cell_state(folder) == "done":
                    _progress(study.cells, cell, "done before, skipped", log)
                    continue
                with cell_lock(folder) as mine_now:
                    if not mine_now:
                        _progress(study.cells, cell, "running in another process, skipped", log)
                        continue
                    _run_cell(study, cell, folder, progress, device, log)
                _stop_if_asked(stop, f"after cell {cell.index + 1} (it is done)")
    except RunInterrupted as err:
        raise RunInterrupted(f"{err}; or rerun the study to resume it", err.exit_code - 128) \
            from err
    except KeyboardInterrupt as err:
        raise RunInterrupted("interrupted by SIGINT; rerun the study to resume it",
                             signal.SIGINT) from err


def _stop_if_asked(stop: Any, where: str) -> None:
    """Raise :class:`RunInterrupted` when ``stop`` (a ``StopSignals``) caught a signal."""
    if stop.requested():
        raise RunInterrupted(f"interrupted by {signal.Signals(stop.signum).name} {where}",
                             stop.signum)


def check_study_folder(root: Path, study: Study, new: bool) -> None:
    """Refuse a ``root`` that is not ``study``'s folder: a file, or a folder that holds other
    files than the study's cell folders but no ``study.yaml`` (a study writes it first).
    ``new``: a missing or empty folder is fine (the study makes it)."""
    if root.exists() and not root.is_dir():
        raise UserError(f"study folder {root} is a file, not a folder; give another --output")
    if root.is_symlink() and not root.exists():
        raise UserError(f"study folder {root} is a symbolic link to {os.readlink(root)}, which "
                        "does not exist")
    held = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) \
        if root.is_dir() else []
    cells = {cell.folder.parts[0] for cell in study.cells}
    if (root / STUDY_YAML).is_file() or (held and set(held) <= cells) or (new and not held):
        return
    if not root.exists():
        raise UserError(f"no study folder at {root}: run the study first")
    shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
    raise UserError(f"{root} is not a study folder (it holds {shown or 'nothing'} but no "
                    f"{STUDY_YAML}); a study never writes into another folder: give another "
                    "--output")


def study_record(study: Study) -> dict[str, Any]:
    """What ``study.yaml`` of a study folder records: the study and its resolved cells."""
    return {
        "study": study.name, "description": study.description, "axes": study.axes,
        "seeds": study.seeds, "measure_images": study.measure_images,
        **({"measures": study.measures} if study.measures else {}),
        "cells": [
            {"variant": c.variant.name, "seed": c.seed, "folder": str(c.folder),
             "settings": c.variant.settings}
            for c in study.cells
        ],
    }


# ---------------------------------------------------------------------------------------------
# the report


def collect(study: Study, root: Path, device: str = "auto") -> list[dict[str, Any]]:
    """One row per cell: its state, and its measures when trained (a trained cell without
    ``cell.json`` is measured now, unless another process holds it)."""
    from models.app.training.checkpointing import load_resume_point

    rows = []
    for cell in study.cells:
        folder = root / cell.folder
        state = cell_state(folder)
        if state == "trained":
            with cell_lock(folder) as held:
                if held:
                    measures = measure_cell(cell, folder, study.measure_images, device,
                                            study.measures)
                    atomic_write_text(folder / CELL_JSON, json.dumps(measures, indent=2) + "\n")
                    state = "done"
        row: dict[str, Any] = {"cell": cell.index + 1, "variant": cell.variant.name,
                               **cell.variant.labels, "seed": cell.seed, "state": state,
                               "epochs": cell.config.epochs}
        if state == "done":
            measures = _read_json(folder / CELL_JSON) or {}
            row["epochs_done"] = cell.config.epochs
            row.update({k: v for k, v in measures.items() if k not in row})
        elif state == "partial":
            row["epochs_done"] = load_resume_point(folder).epoch
        else:
            row["epochs_done"] = 0
        row["folder"] = str(cell.folder)
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return [c for c in columns if c != "folder"] + ["folder"]


def stage_columns(rows: list[dict[str, Any]], prefix: str) -> list[str]:
    """Columns ``<prefix><stage>`` of ``rows``, in order of first appearance."""
    return [c for c in _columns(rows) if c.startswith(prefix)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value) of ``values``."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def _fmt(values: list[float], spec: str) -> str:
    """``mean ± std`` of ``values`` in format ``spec`` (the std without a forced sign); — without
    values, n/a for nan."""
    values = [v for v in values if v not in (None, "")]
    if not values:
        return "—"
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    return (f"{mean:{spec}}" if math.isnan(std)
            else f"{mean:{spec}} ± {std:{spec.replace('+', '')}}")


def display_names(study: Study) -> list[str]:
    """The name each variant has in the report: its labels joined with ``, ``, or, where two
    variants would read the same (``p, q`` + ``r`` and ``p`` + ``q, r``), with `` + ``."""
    names = [v.name for v in study.variants]
    return [name if names.count(name) == 1 else " + ".join(v.labels.values())
            for name, v in zip(names, study.variants, strict=True)]


def _by_variant(study: Study, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The done rows of each variant (by the variant of the row's cell, not its text), under
    its :func:`display_names` name."""
    done = [r for r in rows if r["state"] == "done"]
    return {name: [r for r in done if study.cells[r["cell"] - 1].variant is v]
            for name, v in zip(display_names(study), study.variants, strict=True)}


def _table(header: list[str], lines: list[list[str]]) -> str:
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def _stage_name(column: str, prefix: str) -> str:
    return column[len(prefix):].replace("stage", "stage ")


def markdown(study: Study, rows: list[dict[str, Any]]) -> str:
    """``study.md``: a summary table, a pivot of top-1 for two axes, and a table per variant
    (mean ± standard deviation over seeds)."""
    groups = _by_variant(study, rows)
    done = sum(r["state"] == "done" for r in rows)
    rates, ratios = stage_columns(rows, "rate_"), stage_columns(rows, "hf_ratio_")
    lines = [f"# Study `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [
        f"Cells done: {done} of {len(rows)} (seeds {', '.join(map(str, study.seeds))}). "
        "Mean ± standard deviation over the seeds done; top-1 of the last epoch on the "
        f"held-out set; firing rates, high-frequency ratios (share of non-DC power at radius "
        f">= 0.5 of Nyquist, per stage output) and energy per image (45 nm) on the first "
        f"{study.measure_images} held-out images, final weights; — for a stage without spiking "
        "neurons (the ReLU twin).",
        "",
        "## Summary",
        "",
        _table(
            ["variant", "seeds", "top-1 (%)", "energy (mJ)"]
            + [f"hf {_stage_name(c, 'hf_ratio_')}" for c in ratios],
            [
                [name, str(len(g)), _fmt([r["top1"] for r in g], ".2f"),
                 _fmt([r["energy_mj"] for r in g], ".3g")]
                + [_fmt([r.get(c) for r in g], ".3f") for c in ratios]
                for name, g in groups.items()
            ],
        ),
        "",
    ]
    if len(study.axes) == 2:
        first, second = study.axes
        columns = list(dict.fromkeys(v.labels[second] for v in study.variants))
        table = {}
        for v, name in zip(study.variants, display_names(study), strict=True):
            table.setdefault(v.labels[first], {})[v.labels[second]] = _fmt(
                [r["top1"] for r in groups[name]], ".2f")
        lines += [
            f"## Top-1 (%): {first} by {second}", "",
            _table([first, *columns],
                   [[row, *(cells.get(c, "—") for c in columns)] for row, cells in table.items()]),
            "",
        ]
    lines += _network_tables(study, rows, groups)
    for name, g in groups.items():
        stages = list(dict.fromkeys(
            [_stage_name(c, "hf_ratio_") for c in ratios] + [_stage_name(c, "rate_") for c in rates]
        ))
        lines += [
            f"## {name}", "",
            f"top-1 {_fmt([r['top1'] for r in g], '.2f')} %, energy "
            f"{_fmt([r['energy_mj'] for r in g], '.3g')} mJ per image, "
            f"{len(g)} seed(s) done.", "",
            _table(
                ["stage", "firing rate", "high-frequency ratio"],
                [[s, _fmt([r.get(f"rate_{s.replace(' ', '')}") for r in g], ".3f"),
                  _fmt([r.get(f"hf_ratio_{s.replace(' ', '')}") for r in g], ".3f")]
                 for s in stages],
            ),
            "",
        ]
    return "\n".join(lines)


SENSITIVITY_COLUMNS = (
    ("heatmap_clean_error", "heat map: clean error", ".3f"),
    ("heatmap_error_low", "error increase, low", ".3f"),
    ("heatmap_error_high", "error increase, high", ".3f"),
    ("heatmap_loss_low", "loss increase, low", ".3f"),
    ("heatmap_loss_high", "loss increase, high", ".3f"),
    ("bandnoise_clean", "band noise: clean accuracy", ".3f"),
    ("bandnoise_drop_low", "accuracy drop, low band", ".3f"),
    ("bandnoise_drop_high", "accuracy drop, high band", ".3f"),
)
"""The spatial-sensitivity columns of a study with ``heatmap`` or ``bandnoise`` measures:
(column, header in ``study.md``, format)."""


def _network_tables(study: Study, rows: list[dict[str, Any]],
                    groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The ``study.md`` sections of the network-level measures the rows hold (none without)."""
    lines: list[str] = []
    measured = stage_columns(rows, "transfer_db_")
    if measured:
        where = [c[len("transfer_db_"):] for c in measured]
        settings = study.measures.get("transfer", {})
        lines += [
            "## Temporal transfer (Eq. 11-12)", "",
            f"Drive `eps cos(omega t)` on every pixel (eps {settings.get('eps')}, T "
            f"{settings.get('T')}, warm-up {settings.get('warmup')}, {settings.get('omegas')} "
            f"omegas up to pi, first {settings.get('images')} held-out images). Per stage the "
            "gain of its last probed layer (first: the first probed layer) at omega = pi in dB "
            "relative to its gain at the lowest omega: measured / Eq. 12's prediction / the "
            "lock-in's noise floor at pi (a gain at or below it means nothing).", "",
            _table(["variant", *(w.replace("stage", "stage ") for w in where)],
                   [[name, *(f"{_fmt([r.get(f'transfer_db_{w}') for r in g], '+.1f')} / "
                             f"{_fmt([r.get(f'eq12_db_{w}') for r in g], '+.1f')} / "
                             f"{_fmt([r.get(f'floor_db_{w}') for r in g], '+.1f')}"
                             for w in where)]
                    for name, g in groups.items()]),
            "",
        ]
    present = [c for c in SENSITIVITY_COLUMNS if c[0] in _columns(rows)]
    if present:
        cutoffs = {m.get("cutoff") for m in study.measures.values() if "cutoff" in m}
        lines += [
            "## Sensitivity to spatial frequencies", "",
            "Heat map (Yin et al.): mean error increase over the clean error and mean loss "
            "increase under the Fourier basis images of radius in (0, cutoff) (low) and >= "
            "cutoff (high). Band noise (Park & Kim): clean accuracy minus the accuracy under "
            "Gaussian noise in the band (0, cutoff) (low) or >= cutoff (high), mean over the "
            f"noise levels. Cutoff {', '.join(map(str, sorted(cutoffs)))} of Nyquist.", "",
            _table(["variant", *(header for _, header, _ in present)],
                   [[name, *(_fmt([r.get(c) for r in g], spec) for c, _, spec in present)]
                    for name, g in groups.items()]),
            "",
        ]
    return lines


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")


def _styles(study: Study) -> dict[str, tuple[str, str, str]]:
    """Colour, line style and marker per variant: colour by the first axis, line style by the
    second, marker by the third (one colour per variant for a single axis)."""
    def entries(axis: int) -> list[str]:
        if len(study.axes) <= axis:
            return []
        return list(dict.fromkeys(v.labels[study.axes[axis]] for v in study.variants))

    first, second, third = entries(0), entries(1), entries(2)
    styles = {}
    for v, name in zip(study.variants, display_names(study), strict=True):
        color = f"C{first.index(v.labels[study.axes[0]]) % 10}"
        style = LINE_STYLES[second.index(v.labels[study.axes[1]]) % 4] if second else "-"
        marker = MARKERS[third.index(v.labels[study.axes[2]]) % 5] if third else "o"
        styles[name] = (color, style, marker)
    return styles


def _stage_lines(ax: Any, groups: dict[str, list[dict[str, Any]]],
                 styles: dict[str, tuple[str, str, str]], columns: list[str],
                 label: bool = True, **look: Any) -> None:
    """One line per variant through the mean ± std of ``columns`` over its rows (variants
    without values left out); ``look`` overrides matplotlib keywords of the variant's style."""
    import numpy as np

    for name, g in groups.items():
        stats = [mean_std([r[c] for r in g if r.get(c) not in (None, "")] or [math.nan])
                 for c in columns]
        if all(math.isnan(m) for m, _ in stats):
            continue
        color, style, marker = styles[name]
        ax.errorbar(np.arange(len(columns)), [m for m, _ in stats],
                    yerr=[0 if math.isnan(s) else s for _, s in stats],
                    label=name if label else None,
                    **{"marker": marker, "capsize": 3, "color": color, "ls": style, **look})


def _paired_bars(ax: Any, groups: dict[str, list[dict[str, Any]]],
                 styles: dict[str, tuple[str, str, str]], low: str, high: str) -> None:
    """Per variant two bars, mean ± std of column ``low`` (plain) and ``high`` (hatched)."""
    import numpy as np

    names = [n for n, g in groups.items() if any(r.get(low) is not None for r in g)]
    x = np.arange(len(names))
    for offset, column, hatch, label in ((-0.2, low, "", "low"), (0.2, high, "//", "high")):
        stats = [mean_std([r[column] for r in groups[n]]) for n in names]
        ax.bar(x + offset, [m for m, _ in stats], width=0.4,
               yerr=[0 if math.isnan(s) else s for _, s in stats],
               color=[styles[n][0] for n in names], hatch=hatch, edgecolor="white",
               capsize=2, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=7, title="plain: low, hatched: high", title_fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def figure(study: Study, rows: list[dict[str, Any]]) -> bytes:
    """``study.png``: top-1 per variant, high-frequency ratio and firing rate per stage
    (variants coloured by the first axis, hatched and dashed by the second, marked by the
    third); with network-level
    measures a second row: the temporal transfer at pi per stage beside Eq. 12, the heat map's
    error increase and the band-noise accuracy drop, low against high frequencies."""
    import numpy as np
    from matplotlib.figure import Figure

    groups = {k: g for k, g in _by_variant(study, rows).items() if g}
    styles = _styles(study)
    ratios, rates = stage_columns(rows, "hf_ratio_"), stage_columns(rows, "rate_")
    transfer = stage_columns(rows, "transfer_db_")
    network = transfer or any(c in _columns(rows) for c, _, _ in SENSITIVITY_COLUMNS)
    fig = Figure(figsize=(16, 11.5 if network else 5.5), layout="constrained")
    grid = fig.subplots(2 if network else 1, 3, squeeze=False)
    axes = grid[0]
    names = list(groups)
    tops = [mean_std([r["top1"] for r in g]) for g in groups.values()]
    x = np.arange(len(names))
    hatches = {"-": "", "--": "//", ":": "..", "-.": "xx"}
    axes[0].bar(x, [m for m, _ in tops], yerr=[0 if math.isnan(s) else s for _, s in tops],
                color=[styles[n][0] for n in names],
                hatch=[hatches[styles[n][1]] for n in names], capsize=3, edgecolor="white")
    axes[0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    lowest = min((m - (0 if math.isnan(s) else s) for m, s in tops), default=0.0)
    axes[0].set(title="(a) held-out top-1", ylabel="top-1 (%)",
                ylim=(max(0.0, 10 * math.floor(lowest / 10 - 0.5)), 100))
    for ax, columns, prefix, title in (
        (axes[1], ratios, "hf_ratio_", "(b) high-frequency ratio of each stage's output"),
        (axes[2], rates, "rate_", "(c) firing rate of each stage's neurons"),
    ):
        _stage_lines(ax, groups, styles, columns)
        ax.set_xticks(np.arange(len(columns)), [_stage_name(c, prefix) for c in columns])
        ax.set(title=title, ylim=(0, None))
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    if network:
        ax = grid[1, 0]
        where = [c[len("transfer_db_"):] for c in transfer]
        _stage_lines(ax, groups, styles, transfer)
        _stage_lines(ax, groups, styles, [f"eq12_db_{w}" for w in where], label=False,
                     lw=5, alpha=0.25, marker=None, ls="-")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_xticks(np.arange(len(where)), [w.replace("stage", "stage ") for w in where])
        ax.set(title="(d) gain at omega = pi re the lowest omega (dB, symlog)\n"
                     "thin: measured; broad, pale: Eq. 12", ylabel="dB")
        ax.grid(alpha=0.3)
        for ax, (low, high, title) in zip(grid[1, 1:], (
                ("heatmap_error_low", "heatmap_error_high",
                 "(e) heat map: error increase, low / high frequencies"),
                ("bandnoise_drop_low", "bandnoise_drop_high",
                 "(f) band noise: accuracy drop, low / high band")), strict=True):
            if any(r.get(low) is not None for g in groups.values() for r in g):
                _paired_bars(ax, groups, styles, low, high)
            ax.set_title(title)
    fig.suptitle(f"study {study.name}: mean ± std over seeds")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_report(study: Study, root: Path, device: str = "auto") -> list[Path]:
    """Write ``study.csv`` (one row per cell), ``study.md`` and ``study.png`` under ``root``
    from whatever cells are done; returns their paths."""
    check_study_folder(root, study, new=False)
    rows = collect(study, root, device)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = [root / "study.csv", root / "study.md", root / "study.png"]
    atomic_write_text(paths[0], text.getvalue())
    atomic_write_text(paths[1], markdown(study, rows) + "\n")
    png = figure(study, rows)
    atomic_write(paths[2], lambda f: f.write(png))
    return paths
