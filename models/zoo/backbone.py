"""The timm model API that every spiking network of the zoo shares.

A network is a stem that makes its input time-major (`[T, B, C, H, W]`), a list of stages and
a head. While training, the neurons' spikes that autograd saves for backward (the inputs of
convolutions, linear layers and spike-matrix products) are kept in 1 bit per element and
restored exactly (`models.spike_storage`); set `pack_saved_spikes = False` to keep them as
they are (more memory, fewer passes over it). Under `torch.compile` the compiler chooses what
to keep instead.
"""

from collections.abc import Callable

import torch
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from models.spike_storage import compact_spikes

Stage = Callable[[Tensor], Tensor]


class SpikingBackbone(nn.Module):
    """Subclasses define `_stem`, `_stages`, `forward_head`, `num_features`, `num_stages`,
    and name their linear classifier in `classifier_name`."""

    classifier_name = "head"
    pack_saved_spikes = True

    def _stem(self, x: Tensor) -> Tensor:
        """Images `[B, C, H, W]` or frames `[B, T, C, H, W]` -> `[T, B, C', H', W']`."""
        raise NotImplementedError

    def _stages(self) -> list[Stage]:
        """One callable per stage, `[T, B, C, H, W] -> [T, B, C', H', W']`."""
        raise NotImplementedError

    def _stage_module_names(self, index: int) -> list[str]:
        """Names of the submodules that make up stage `index`."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
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

    def forward_features(self, x: Tensor) -> Tensor:
        """Images `[B, C, H, W]` or frames `[B, T, C, H, W]` -> `[T, B, C', H / s, W / s]`."""
        with compact_spikes(self, self._packing()):
            x = self._stem(x)
            for stage in self._stages():
                x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Images `[B, C, H, W]` or frames `[B, T, C, H, W]` -> logits `[B, num_classes]`."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "TNCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs (membrane potentials) as well as the final features.

        `output_fmt="TNCHW"` keeps the time axis, `[T, B, C, H, W]`; `"NCHW"` averages over it.
        `indices`: the last n stages if an int, all if None, else the listed stage indices.
        """
        if output_fmt not in ("TNCHW", "NCHW"):
            raise ValueError(f"unknown output_fmt {output_fmt!r}; valid: 'TNCHW', 'NCHW'")
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        stages = self._stages()[: max_index + 1] if stop_early else self._stages()
        intermediates = []
        with compact_spikes(self, self._packing()):
            x = self._stem(x)
            for i, stage in enumerate(stages):
                x = stage(x)
                if i in take_indices:
                    intermediates.append(x.mean(0) if output_fmt == "NCHW" else x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last one `indices` takes (as in `forward_intermediates`)
        and, with `prune_head`, the classifier; returns the indices taken. `prune_norm` is
        accepted for timm's API: these networks have no final norm."""
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        for index in range(max_index + 1, self.num_stages):
            for name in self._stage_module_names(index):
                delattr(self, name)
        self.num_stages = max_index + 1
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_head:
            self.num_features = self.head_hidden_size = self.feature_info[-1]["num_chs"]
            self.reset_classifier(0)
        return take_indices

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a fresh one for `num_classes` (0: no head, features out)."""
        self.num_classes = num_classes
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        setattr(self, self.classifier_name, head)
