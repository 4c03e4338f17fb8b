"""The layout's import rules (shared/design.md), read from every module's imports (AST)."""

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("models", "spectral", "analysis", "benchmarks")
APPLICATION = "models.app"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (relative imports resolved), at any depth of the code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


MODULES = {
    module_name(path): imports_of(path)
    for top in PROJECT
    for path in sorted((ROOT / top).rglob("*.py"))
}


def project_imports(name: str) -> set[str]:
    """The project modules (or names inside them) that module ``name`` imports."""
    return {i for i in MODULES[name] if i.split(".")[0] in PROJECT}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_rules_see_every_package():
    assert {"models.neurons.modules", "models.app.cli", "spectral.feature"} <= set(MODULES)
    assert "models.neurons" in project_imports("models.layers.spiking")


def test_spectral_imports_no_project_package():
    bad = {m: project_imports(m) for m in MODULES if within(m, "spectral")}
    assert {m: i for m, i in bad.items() if any(not within(x, "spectral") for x in i)} == {}


def test_neurons_import_nothing_of_models_outside_themselves():
    bad = {
        m: sorted(x for x in project_imports(m) if not within(x, "models.neurons"))
        for m in MODULES
        if within(m, "models.neurons")
    }
    assert {m: i for m, i in bad.items() if i} == {}


@pytest.mark.parametrize("forbidden", [APPLICATION, "analysis", "benchmarks"])
def test_the_library_never_imports_the_application(forbidden):
    library = [m for m in MODULES if within(m, "models") and not within(m, APPLICATION)]
    bad = {m: sorted(x for x in project_imports(m) if within(x, forbidden)) for m in library}
    assert {m: i for m, i in bad.items() if i} == {}


def unit(name: str) -> str | None:
    """The sub-package (or top-level module) of ``models`` that ``name`` belongs to."""
    parts = name.split(".")
    return parts[1] if parts[0] == "models" and len(parts) > 1 else None


def test_no_two_subpackages_of_models_import_each_other():
    edges = {
        (unit(m), unit(x))
        for m in MODULES
        if unit(m) is not None
        for x in project_imports(m)
        if unit(x) is not None and unit(x) != unit(m) and unit(x) in
        {unit(n) for n in MODULES if unit(n) is not None}
    }
    units = {a for a, _ in edges} | {b for _, b in edges}
    reach = {u: {b for a, b in edges if a == u} for u in units}
    for _ in units:  # transitive closure
        for u in units:
            reach[u] |= set(itertools.chain.from_iterable(reach[v] for v in reach[u]))
    assert sorted(u for u in units if u in reach[u]) == []


def test_tests_do_not_borrow_helpers_from_benchmarks():
    borrowers = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name.startswith("test_benchmarks"):
            continue
        if any(within(i, "benchmarks") for i in imports_of(path)):
            borrowers.append(path.name)
    assert borrowers == []


def test_spectral_names_load_their_module_on_first_use():
    """``spectral`` offers every name of its modules, each imported when first used: the
    training loop's high-frequency ratio does not pay for scipy.signal (seconds to import)."""
    code = ("import sys, spectral\n"
            "from spectral import high_frequency_ratio\n"
            "print('scipy.signal' in sys.modules)\n"
            "from spectral import lif_cutoff\n"
            "print('scipy.signal' in sys.modules)\n"
            "print(all(getattr(spectral, n) is not None for n in spectral.__all__))\n"
            "import importlib\n"
            "names = {m: set(importlib.import_module('spectral.' + m).__all__)\n"
            "         for m in ('feature', 'fourier', 'neuron', 'probe', 'temporal')}\n"
            "print(set(spectral.__all__) == set().union(*names.values()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.split() == ["False", "True", "True", "True"]
