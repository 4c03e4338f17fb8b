"""The `bands` dataset: fixed images, class information only in the band, blur removes it."""

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn

from models.app.bands import NUM_CLASSES, QUADRANT_SETS, generate_bands, radius_grid
from models.app.config import build_config
from models.app.data import build_datasets
from models.app.errors import UserError

HIGH, LOW = (0.5, 1.0), (0.125, 0.25)


def quadrant_power(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Mean square of `images [N, S, S]` band-passed to `low <= r <= high` (r > 0), per
    quadrant (top left, top right, bottom left, bottom right): `[N, 4]`."""
    size = images.shape[-1]
    radius = radius_grid(size)
    keep = (radius > 0) & (radius >= low) & (radius <= high)
    passed = np.fft.ifft2(np.fft.fft2(images) * keep).real ** 2
    h = size // 2
    quadrants = (passed[:, :h, :h], passed[:, :h, h:], passed[:, h:, :h], passed[:, h:, h:])
    return np.stack([q.mean(axis=(1, 2)) for q in quadrants], axis=1)


def test_same_seed_same_images_and_balanced_classes():
    images, labels = generate_bands(200, HIGH, 32, seed=3)
    again, again_labels = generate_bands(200, HIGH, 32, seed=3)
    other, _ = generate_bands(200, HIGH, 32, seed=4)
    assert images.shape == (200, 32, 32) and images.dtype == np.float32
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert not np.allclose(images, other)
    assert Counter(labels.tolist()) == {k: 20 for k in range(NUM_CLASSES)}
    assert len(set(QUADRANT_SETS)) == NUM_CLASSES == 10


@pytest.mark.parametrize("band", [HIGH, LOW])
def test_band_and_clutter_have_equal_power_and_split_the_spectrum(band):
    images, _ = generate_bands(100, band, 32, seed=0)
    inside = quadrant_power(images, *band).mean(axis=1)
    below = quadrant_power(images, 1e-9, np.nextafter(band[0], 0)).mean(axis=1)
    total = (images.astype(np.float64) ** 2).mean(axis=(1, 2))
    # Parseval: all the power lies in the band or below it, half in each (clutter of
    # comparable power)
    np.testing.assert_allclose(inside, 0.5, rtol=1e-5)
    np.testing.assert_allclose(below, 0.5, rtol=1e-5)
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


@pytest.mark.parametrize("band", [HIGH, LOW])
def test_power_in_the_band_separates_the_classes_and_nothing_else_does(band):
    x_train, y_train = generate_bands(1000, band, 32, seed=0)
    x_test, y_test = generate_bands(500, band, 32, seed=1)

    def accuracy(low, high):
        features = [np.log(quadrant_power(x, low, high)) for x in (x_train, x_test)]
        classifier = LogisticRegression(max_iter=2000).fit(features[0], y_train)
        return classifier.score(features[1], y_test)

    assert accuracy(*band) >= 0.98
    assert accuracy(1e-9, np.nextafter(band[0], 0)) <= 0.2  # the clutter: chance is 0.1


def _gaussian_blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """5x5 Gaussian blur of `x [N, 1, H, W]` (reflected borders)."""
    taps = torch.exp(-(torch.arange(5.0) - 2) ** 2 / (2 * sigma**2))
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :])[None, None]
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel)


def _train_cnn(images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(1, 16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(1, 32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.GroupNorm(1, 32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, NUM_CLASSES),
    )
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(2):
        for batch in torch.randperm(len(images)).split(50):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.usefixtures("one_thread")
def test_blur_removes_the_high_band_and_keeps_the_low_band():
    accuracies = {}
    for band in (HIGH, LOW):
        x_train, y_train = (torch.from_numpy(a) for a in generate_bands(2000, band, 32, seed=0))
        x_test, y_test = (torch.from_numpy(a) for a in generate_bands(500, band, 32, seed=1))
        model = _train_cnn(x_train[:, None], y_train)
        with torch.no_grad():
            for name, inputs in (("sharp", x_test[:, None]), ("blurred", _gaussian_blur(
                    x_test[:, None]))):
                accuracies[band, name] = (model(inputs).argmax(1) == y_test).float().mean().item()
    assert accuracies[HIGH, "sharp"] > 0.9 and accuracies[LOW, "sharp"] > 0.9, accuracies
    assert accuracies[HIGH, "blurred"] < 0.25, accuracies  # near chance (0.1)
    assert accuracies[LOW, "blurred"] > 0.9, accuracies


def test_dataset_of_the_training_config():
    cfg = build_config({"dataset": "bands", "band": [0.25, 0.5], "img_size": 16}, {})
    train, test, info = build_datasets(cfg)
    assert (len(train), len(test), info.num_classes, info.in_chans) == (5000, 1000, 10, 1)
    x, y = test[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and 0 <= y < 10
    images, labels = generate_bands(1000, (0.25, 0.5), 16, seed=1)  # the test split's draw
    assert torch.equal(test.images[:, 0], torch.from_numpy(images))
    assert test.targets == labels.tolist()
    assert not torch.equal(train.images[:1000], test.images)


@pytest.mark.parametrize(("keys", "message"), [
    ({"dataset": "bands", "band": [0.9, 0.1]}, r"0 <= low < high <= sqrt\(2\).*\[0.9, 0.1\]"),
    ({"dataset": "bands", "band": [0.5]}, r"band must be \[low, high\]"),
    ({"dataset": "digits", "band": [0.1, 0.2]}, "band is for dataset bands, not 'digits'"),
    ({"dataset": "bands", "band": [0.05, 0.1], "img_size": 8}, "holds no frequency of a 8x8"),
])
def test_bad_band_is_a_user_error(keys, message):
    with pytest.raises(UserError, match=message):
        build_config(keys, {})
