"""Input conventions of the models, with clear errors for input they cannot take."""

from torch import Tensor


def to_time_major(
    x: Tensor, in_chans: int, T: int | None, stride: int, event_input: bool = False
) -> Tensor:
    """Images `[B, C, H, W]` (repeated `T` times) or frames `[B, T, C, H, W]` -> `[T, B, C, H, W]`.

    Checks the rank, the channel count, the number of time steps (when `T` is set) and that the
    image size is a multiple of the network's total `stride`. `event_input` refuses images.
    """
    if event_input and x.dim() != 5:
        raise ValueError(
            f"event input must be [B, T, C, H, W] (batch first), got shape {tuple(x.shape)}"
        )
    if x.dim() == 4:
        if T is None:
            raise ValueError(
                "this model has no T to repeat a static image over; pass frames [B, T, C, H, W]"
            )
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    elif x.dim() == 5:
        if T is not None and x.shape[1] != T:
            raise ValueError(f"input has {x.shape[1]} time steps, the model T={T}")
        x = x.transpose(0, 1)
    else:
        raise ValueError(
            f"expected images [B, C, H, W] or frames [B, T, C, H, W], got shape {tuple(x.shape)}"
        )
    channels, height, width = x.shape[2:]
    if channels != in_chans:
        raise ValueError(f"input has {channels} channels, the model expects {in_chans}")
    if height % stride or width % stride:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of the network's stride {stride}"
        )
    return x
