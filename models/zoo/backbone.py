"""The timm model API that every spiking network of the zoo shares.

A network is a stem that makes its input time-major (`[T, B, C, H, W]`), a list of stages and
a head. What timm and its tools call follows timm's conventions:

- `forward_features(x)` -> `[B, C, H, W, T]`: timm's NCHW layout of the last stage's membrane
  potential, with the time steps last (`.mean(-1)` is the time-averaged map);
- `forward_head(features, pre_logits)`: global pooling (`global_pool`), the head's neurons,
  the average over time, dropout (`drop_rate`) and the classifier; with `global_pool=""` and
  no classifier, spike rates `[B, C, H, W]`;
- `forward_intermediates(...)`: the outputs of the feature levels (the stages, and a stem
  with an output of its own) in timm's `output_fmt="NCHW"` (averaged over time) by default;
  `output_fmt="TNCHW"` keeps the time axis, `[T, B, C, H, W]`;
- `features_only=True`: the level outputs of `forward_intermediates` (NCHW); with
  `feature_cls="hook"`, what the level modules return, `[T, B, C, H, W]`.

While training, the neurons' spikes that autograd saves for backward (the inputs of
convolutions, linear layers and spike-matrix products) are kept in 1 bit per element and
restored exactly (`models.spike_storage`); set `pack_saved_spikes = False` to keep them as
they are (more memory, fewer passes over it). Under `torch.compile` the compiler chooses what
to keep instead. torch.fx traces the models with the neurons as leaf calls; TorchScript cannot
compile them (use `torch.compile` or `torch.export`).
"""

import contextlib
from collections.abc import Callable

import torch
from timm.layers import SelectAdaptivePool2d, get_device_dtype
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from models.layers import BlockSequence
from models.spike_storage import compact_spikes
from models.zoo.inputs import to_time_major

Stage = Callable[[Tensor], Tensor]

INTERMEDIATE_FORMATS = ("NCHW", "TNCHW")
"""`output_fmt` of `forward_intermediates`: averaged over time, or time-major."""


def factory_device(device: torch.device | str | None) -> contextlib.AbstractContextManager:
    """The context a model builds its layers in: on `device`, or where torch's default is."""
    return contextlib.nullcontext() if device is None else torch.device(device)


def head_pool(pool_type: str) -> SelectAdaptivePool2d:
    """timm's global pooling of frames `[N, C, H, W]` -> `[N, C']` (`[N, C, H, W]` for "")."""
    return SelectAdaptivePool2d(pool_type=pool_type, flatten=bool(pool_type))


class SpikingBackbone(nn.Module):
    """Subclasses build their layers (under `factory_device(device)`), call `_init_head`,
    and define `_levels`, `_level_module_names`, `_pool_and_fire`, `group_matcher` (and
    `_stem` for layers before the first level); they name their linear classifier in
    `classifier_name`.

    A feature level is an entry of `feature_info`: a stage, or a stem with an output of its
    own (the event Max-Former's); `forward_intermediates`, `features_only` and
    `prune_intermediate_layers` count in levels."""

    classifier_name = "head"
    pack_saved_spikes = True
    in_chans: int
    T: int | None
    stride: int
    event_input = False
    """Whether the data are event clips of any length (a static frame is repeated `T` times)."""
    num_features: int
    feature_info: list[dict]

    def _init_head(self, num_classes: int, global_pool: str, drop_rate: float) -> None:
        """The head after the stages: pooling, dropout and the classifier."""
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.global_pool = head_pool(global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.head_drop = nn.Dropout(drop_rate)
        head = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        setattr(self, self.classifier_name, head)

    def _stem(self, x: Tensor) -> Tensor:
        """Time-major input `[T, B, C, H, W]` -> the first level's input."""
        return x

    def _levels(self) -> list[Stage]:
        """One callable per feature level, `[T, B, C, H, W] -> [T, B, C', H', W']`."""
        raise NotImplementedError

    def _level_module_names(self, index: int) -> list[str]:
        """Dotted names of the submodules that make up feature level `index`."""
        raise NotImplementedError

    def _pool_and_fire(self, x: Tensor) -> Tensor:
        """The head's pooling and neurons: `[T, B, C, H, W]` -> spikes `[T, B, C']` (or
        `[T, B, C, H, W]` without pooling)."""
        raise NotImplementedError

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups in depth order, for timm's layer-wise learning-rate decay."""
        raise NotImplementedError

    def _packing(self) -> bool:
        """Pack while training eagerly; under `torch.compile` the compiler decides what is
        kept (and a saved-tensor hook would break its graph)."""
        return (
            self.pack_saved_spikes
            and self.training
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        )

    def _run(
        self, x: Tensor, take_indices: list[int], last: int, time_major: bool
    ) -> tuple[Tensor, list[Tensor]]:
        """The output `[T, B, C, h, w]` of level `last` (after levels `0..last`), and the
        outputs of the levels in `take_indices`, `[T, B, C, H, W]` if `time_major`, else
        `[B, C, H, W]` averaged over time."""
        intermediates = []
        with compact_spikes(self, self._packing()):
            x = to_time_major(x, self.in_chans, self.T, self.stride, self.event_input)
            x = self._stem(x)
            for i, level in enumerate(self._levels()[: last + 1]):
                x = level(x)
                if i in take_indices:
                    intermediates.append(x if time_major else x.mean(0))
        return x, intermediates

    def forward_features(self, x: Tensor) -> Tensor:
        """Images `[B, C, H, W]` or clips `[B, T, C, H, W]` -> `[B, C', H / s, W / s, T]`."""
        features, _ = self._run(x, [], len(self.feature_info) - 1, time_major=False)
        return features.permute(1, 2, 3, 4, 0)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Features `[B, C, h, w, T]` -> logits `[B, num_classes]` (`pre_logits`: spike rates
        `[B, head_hidden_size]`, or `[B, C, h, w]` without pooling)."""
        rates = self.head_drop(self._pool_and_fire(x.permute(4, 0, 1, 2, 3)).mean(0))
        return rates if pre_logits else self.get_classifier()(rates)

    def forward(self, x: Tensor) -> Tensor:
        """Images `[B, C, H, W]` or clips `[B, T, C, H, W]` -> logits `[B, num_classes]`."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Feature-level outputs (membrane potentials) as well as the final features.

        `output_fmt="NCHW"` (timm's default) averages each over time, `[B, C, H, W]`;
        `"TNCHW"` keeps the time axis, `[T, B, C, H, W]`. `indices`: the last n levels if an
        int, all if None, else the listed level indices. The final features are those of
        `forward_features`, `[B, C, h, w, T]`. `norm` is accepted for timm's API: these
        networks have no final norm.
        """
        if output_fmt not in INTERMEDIATE_FORMATS:
            raise ValueError(
                f"unknown output_fmt {output_fmt!r}; valid: {', '.join(INTERMEDIATE_FORMATS)}"
            )
        num_levels = len(self.feature_info)
        take_indices, max_index = feature_take_indices(num_levels, indices)
        last = max_index if stop_early or intermediates_only else num_levels - 1
        final, intermediates = self._run(x, take_indices, last, output_fmt == "TNCHW")
        if intermediates_only:
            return intermediates
        return final.permute(1, 2, 3, 4, 0), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the levels after the last one `indices` takes (as in `forward_intermediates`)
        and, with `prune_head`, the classifier (the pooling and the head's neurons stay);
        returns the indices taken. `prune_norm` is accepted for timm's API: these networks
        have no final norm."""
        num_levels = len(self.feature_info)
        take_indices, max_index = feature_take_indices(num_levels, indices)
        for index in range(max_index + 1, num_levels):
            for name in self._level_module_names(index):
                parent, _, child = name.rpartition(".")
                delattr(self.get_submodule(parent), child)
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_head:
            self.num_features = self.feature_info[-1]["num_chs"]
            self.reset_classifier(0)
        return take_indices

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for `num_classes` (0: none, the head gives spike rates) on the
        model's device and dtype, in its train/eval mode; `global_pool` (timm's pooling
        types: "avg", "max", "avgmax", "catavgmax"; "" for none) replaces the pooling, None
        keeps it."""
        factory = get_device_dtype(self)
        if global_pool is not None:
            self.global_pool = head_pool(global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.num_classes = num_classes
        head = (
            nn.Linear(self.head_hidden_size, num_classes, **factory)
            if num_classes > 0
            else nn.Identity()
        )
        setattr(self, self.classifier_name, head)
        self.global_pool.train(self.training)
        head.train(self.training)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint every block (timm's `--grad-checkpointing`), and in models whose stages
        begin with an embedding (the Max-Former family) every embedding too: each keeps only
        its input for backward and runs again there, with exactly the same results."""
        self.grad_checkpointing = enable
        for module in self.modules():
            if isinstance(module, BlockSequence):
                module.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameters timm's optimizer factory exempts from weight decay beyond biases and
        norms: none."""
        return set()

    def init_weights(self) -> None:
        """(Re)initialise every parameter and buffer as a freshly built model has them (after
        `to_empty`, say)."""
        for module in self.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self._init_weights()

    def _init_weights(self) -> None:
        """The model's own initialisation on top of the layers' defaults."""

    def __prepare_scriptable__(self) -> nn.Module:
        raise RuntimeError(
            f"TorchScript cannot compile {type(self).__name__}: its neurons are custom autograd "
            "functions and Triton kernels; use torch.compile, torch.export or torch.fx"
        )
