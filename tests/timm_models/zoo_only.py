"""pytest plugin: timm's own `tests/test_models.py`, unedited, on this project's model zoo only.

Load it with `-p zoo_only` (this folder on `PYTHONPATH`) when running the file from timm's
source distribution (`.ci/run` shows how). It works without touching timm's file:

- `timm.list_models`, which the test file calls at import to parametrise its per-model tests,
  lists the zoo's models (those named in `TIMM_ZOO_MODELS`, comma-separated; default all). The
  positive `filter` and `module` arguments, which pick timm's families, are ignored; exclusion
  filters, tags, `pretrained` and `name_matches_cfg` apply as in timm.
- timm's generic API tests, parametrised with a few of timm's models, run on those of
  `GENERIC_MODELS` that are selected.
- Only the tests in `PER_MODEL_TESTS` and `GENERIC_TESTS` are collected; the rest are
  deselected (reported by pytest): tests of timm's own families, TorchScript (the zoo does not
  support it, see README), and pretrained-weight downloads (no network in tests).

A conftest.py cannot do this: one inside the project's tests/ would change `timm.list_models`
for the project's own suite, and one elsewhere cannot reach the parametrisation of timm's file.
"""

import os

import pytest
import timm

from models.zoo import ZOO_MODULES, zoo_model_names

PER_MODEL_TESTS = {
    "forward": ["test_model_forward"],
    "backward": ["test_model_backward"],
    "default config": ["test_model_default_cfgs", "test_model_default_cfgs_non_std"],
    "features": ["test_model_forward_features", "test_model_forward_intermediates_features"],
    "forward intermediates": ["test_model_forward_intermediates"],
    "pruning": ["test_prune_intermediate_layers_contract"],
    "fx": ["test_model_forward_fx", "test_model_backward_fx"],
}
"""timm's tests that run on every model `timm.list_models` gives, by kind."""

GENERIC_TESTS = (
    "test_features_only_grad_checkpointing_backward",
    "test_prune_intermediate_layers_params_used",
    "test_head_hidden_size",
    "test_features_only_feature_cls_class",
    "test_forward_after_prune_intermediate_layers",
    "test_forward_intermediates_stop_early_final_norm",
    "test_model_init_weights_after_to_empty",
    "test_headless_checkpoint_reload",
)
"""timm's tests of the model API written for any model but parametrised with some of timm's
(their arguments after `model_name` are model keyword arguments: none for ours). Not among
them, as they do not apply:

- `test_reset_classifier_keeps_pool`: it asks that max and average pooling give different
  pre-logits on a freshly built model in eval mode. Such a spiking network is silent (while
  BatchNorm has its initial running statistics the first layers' few spikes die out and the
  head's neurons never fire), so its spike rates are 0 with either pooling.
  `tests/test_timm_api.py` checks the same contract on a network with BatchNorm statistics
  of a batch.
- `test_prune_intermediate_layers_last_feature`: it takes a model's pooled output for its
  pooled features, where these models fire neurons in between.
- `test_catavgmax_unsupported`: the zoo supports concatenated pooling.
"""

GENERIC_MODELS = (
    "maxformer_cifar", "ms_qkformer_cifar", "max_resnet18", "spikformer_4_384", "sdt_2_512"
)

_TIMM_LIST_MODELS = timm.list_models


def selected_models() -> list[str]:
    """The zoo's models named in `TIMM_ZOO_MODELS` (all when unset); unknown names fail."""
    zoo = zoo_model_names()
    wanted = [n for n in os.environ.get("TIMM_ZOO_MODELS", "").replace(",", " ").split() if n]
    unknown = sorted(set(wanted) - set(zoo))
    if unknown:
        raise pytest.UsageError(
            f"TIMM_ZOO_MODELS names {unknown}, not models of the zoo; valid: {', '.join(zoo)}"
        )
    return wanted or zoo


SELECTED = frozenset(selected_models())


def zoo_list_models(
    filter: str | list[str] = "",
    module: str | list[str] = "",
    pretrained: bool = False,
    exclude_filters: str | list[str] = "",
    name_matches_cfg: bool = False,
    include_tags: bool | None = None,
) -> list[str]:
    """`timm.list_models` over the selected zoo models (the positive `filter` and `module`
    are ignored)."""
    names = _TIMM_LIST_MODELS(
        module=[zoo_module.__name__.rsplit(".", 1)[-1] for zoo_module in ZOO_MODULES],
        pretrained=pretrained,
        exclude_filters=exclude_filters,
        name_matches_cfg=name_matches_cfg,
        include_tags=include_tags,
    )
    return [name for name in names if name.split(".")[0] in SELECTED]


timm.list_models = zoo_list_models  # before pytest imports timm's test file


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "timeout(seconds): timm's time limit of a test (kept by pytest-timeout)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give timm's generic API tests the zoo's models instead of timm's (before pytest reads
    their parametrisation)."""
    if metafunc.function.__name__ not in GENERIC_TESTS:
        return
    markers = metafunc.definition.own_markers
    for i, mark in enumerate(markers):
        if mark.name != "parametrize":
            continue
        argnames = mark.args[0]
        names = [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else argnames
        if names[0] == "model_name":
            rest = ({},) * (len(names) - 1)
            chosen = [name for name in GENERIC_MODELS if name in SELECTED]
            values = [(name, *rest) if rest else name for name in chosen]
            markers[i] = pytest.mark.parametrize(argnames, values).mark


def _wanted(item: pytest.Item) -> bool:
    """A per-model test, or a generic one on a selected model (not on an empty selection)."""
    name = getattr(item, "originalname", None)
    if name in GENERIC_TESTS:
        return item.callspec.params.get("model_name") in SELECTED
    return any(name in names for names in PER_MODEL_TESTS.values())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the per-model and generic tests; deselect the others."""
    keep = [item for item in items if _wanted(item)]
    dropped = [item for item in items if not _wanted(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
