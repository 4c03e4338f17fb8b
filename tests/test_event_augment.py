"""Event-clip augmentation: one operation per clip, alike on every frame; frame sampling."""

import pytest
import torch
from torch import nn

from models.app.config import build_config, read_recipe
from models.app.errors import UserError
from models.app.event_augment import affine, augment_clip, cutout, sample_frames
from models.app.training.distributed import DistContext
from models.app.training.engine import TrainingState, TrainStep, train_one_epoch


def dot_clip(row: int, col: int, steps: int = 3, size: int = 16) -> torch.Tensor:
    clip = torch.zeros(steps, 2, size, size)
    clip[..., row, col] = 1.0
    return clip


@pytest.mark.parametrize(
    "operation, magnitude, where",
    [("translate_x", 3.7, (5, 9)), ("translate_y", -2.2, (3, 6)), ("translate_x", 0.4, (5, 6))],
)
def test_translation_moves_every_frame_by_whole_pixels(operation, magnitude, where):
    moved = affine(dot_clip(5, 6), operation, magnitude)
    assert torch.equal(moved, dot_clip(*where))


def test_rotation_turns_and_shear_samples_nearest_values():
    clip = (torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    assert torch.equal(affine(clip, "rotate", 90.0), torch.rot90(clip, -1, (-2, -1)))  # clockwise
    sheared = affine(clip, "shear_x", 0.3)
    assert set(sheared.unique().tolist()) <= {0.0, 1.0} and not torch.equal(sheared, clip)
    with pytest.raises(ValueError, match="shear_x"):
        affine(clip, "zoom", 1.0)


def test_cutout_zeroes_one_square_in_every_frame():
    torch.manual_seed(0)
    out = cutout(torch.ones(4, 2, 20, 20), area=0.09)
    zeros = out == 0
    assert int(zeros[0, 0].sum()) == 36
    assert all(torch.equal(zeros[t, c], zeros[0, 0]) for t in range(4) for c in range(2))
    rows, cols = zeros[0, 0].nonzero().unbind(1)
    assert rows.max() - rows.min() == 5 and cols.max() - cols.min() == 5


def test_augment_clip_treats_all_frames_alike_and_sometimes_changes_nothing():
    torch.manual_seed(1)
    frame = torch.rand(1, 2, 24, 24) + 0.5
    clip = frame.repeat(5, 1, 1, 1)
    unchanged = 0
    for _ in range(120):
        out = augment_clip(clip)
        assert out.shape == clip.shape
        assert all(torch.equal(out[t], out[0]) for t in range(5))
        unchanged += torch.equal(out, clip)
    assert 0 < unchanged < 60  # identity is one operation in six


def test_sample_frames_keeps_time_order():
    torch.manual_seed(2)
    clips = torch.arange(12.0).reshape(1, 12, 1, 1, 1).repeat(3, 1, 2, 4, 4)
    kept = sample_frames(clips, 5)
    assert kept.shape == (3, 5, 2, 4, 4)
    order = kept[:, :, 0, 0, 0]
    assert torch.equal(order, order[:1].expand(3, 5)) and (order[0].diff() > 0).all()
    with pytest.raises(ValueError, match="between 1 and the clips' 12"):
        sample_frames(clips, 13)


def test_training_sees_t_train_frames():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            seen.append(x.shape[1])
            return self.fc(x.mean((1, 3, 4)))

    model = Probe()
    loader = [(torch.rand(2, 8, 2, 4, 4), torch.tensor([0, 2]))] * 3
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainingState(model, optimizer, scheduler=None)
    step = TrainStep(state, model, nn.CrossEntropyLoss(), frames_per_clip=3)
    train_one_epoch(step, loader, DistContext(0, 1, torch.device("cpu")))
    assert seen == [3, 3, 3]


def test_event_options_are_checked():
    assert build_config(read_recipe("dvsgesture"), {}).event_augment is True
    with pytest.raises(UserError, match="T_train is for event frames"):
        build_config({}, {"T_train": 2})
    with pytest.raises(UserError, match="event_augment is for event frames"):
        build_config({}, {"event_augment": True})
    with pytest.raises(UserError, match="between 1 and T"):
        build_config(read_recipe("dvsgesture"), {"T_train": 17})
