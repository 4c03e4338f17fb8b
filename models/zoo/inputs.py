"""Input conventions of the models, with clear errors for input they cannot take."""

from timm.layers import register_notrace_function
from torch import Tensor


@register_notrace_function  # one leaf call under torch.fx: its checks branch on the input's shape
def to_time_major(
    x: Tensor, in_chans: int, T: int | None, stride: int, any_clip_length: bool = False
) -> Tensor:
    """Images `[B, C, H, W]` (repeated `T` times) or clips `[B, T', C, H, W]` ->
    `[T, B, C, H, W]`.

    Checks the rank, the channel count, that a clip has `T` steps (any number when `T` is None
    or with `any_clip_length`) and that the image size is a multiple of the network's total
    `stride`.
    """
    if x.dim() == 4:
        if T is None:
            raise ValueError(
                "this model has no T to repeat a static image over; pass clips [B, T, C, H, W]"
            )
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    elif x.dim() == 5:
        if T is not None and not any_clip_length and x.shape[1] != T:
            raise ValueError(f"input has {x.shape[1]} time steps, the model T={T}")
        x = x.transpose(0, 1)
    else:
        raise ValueError(
            f"expected images [B, C, H, W] or clips [B, T, C, H, W], got shape {tuple(x.shape)}"
        )
    channels, height, width = x.shape[2:]
    if channels != in_chans:
        raise ValueError(f"input has {channels} channels, the model expects {in_chans}")
    if height % stride or width % stride:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of the network's stride {stride}"
        )
    return x
