"""Datasets load from tiny stand-ins written in each real on-disk format; shards are exact."""

import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.app.config import build_config
from models.app.data import build_datasets, digits_split, eval_loader, train_loader
from models.app.errors import UserError
from models.app.training.distributed import DistContext

CPU = torch.device("cpu")


def cfg_for(dataset, data_dir=None, **kw):
    base = {"dataset": dataset, "data_dir": str(data_dir) if data_dir else None, "hflip": 0.0}
    return build_config(base, kw)


def unnormalise(x, cfg, info):
    mean = torch.tensor(info.mean)[:, None, None]
    std = torch.tensor(info.std)[:, None, None]
    return x * std + mean


def write_cifar(root, hundred=False, n=4):
    """A torchvision-layout CIFAR folder: pickled dicts of uint8 rows and labels."""
    rng = np.random.default_rng(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + [
        "test_batch"
    ]
    label_key = "fine_labels" if hundred else "labels"
    written = {}
    for name in names:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 100 if hundred else 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: labels}, f)
        written[name] = (data, labels)
    if hundred:
        meta = {"fine_label_names": [f"c{i}" for i in range(100)]}
        meta_name = "meta"
    else:
        meta = {"label_names": [f"c{i}" for i in range(10)]}
        meta_name = "batches.meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f)
    return folder, written


def test_digits_split_is_fixed_stratified_and_disjoint():
    cfg = cfg_for("digits", img_size=8, crop_pct=1.0)
    train, val, info = build_datasets(cfg)
    assert (len(train), len(val), info.num_classes, info.in_chans) == (1437, 360, 10, 1)
    train2, _, _ = build_datasets(cfg)
    assert np.array_equal(train.images, train2.images)
    counts = Counter(val.targets)
    assert min(counts.values()) >= 35 and max(counts.values()) <= 37  # 20% of ~180 per class
    seen = {img.tobytes() for img in train.images}
    overlap = sum(img.tobytes() in seen for img in val.images)
    assert overlap <= 5  # a few digits are pixel-identical duplicates in the source data
    x, y = val[0]
    assert x.shape == (1, 8, 8)
    # 8x8 at img_size 8: the image comes back unchanged (0..16 scaled to 0..255)
    assert torch.allclose(unnormalise(x, cfg, info)[0] * 255, torch.tensor(val.images[0]).float(),
                          atol=1e-3)


@pytest.fixture
def digits_cache(tmp_path, monkeypatch):
    """The digits split cached under ``tmp_path`` (``XDG_CACHE_HOME``), read anew."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    digits_split.cache_clear()
    yield tmp_path / "maxformer"
    digits_split.cache_clear()


def test_the_cached_digits_split_is_scikit_learns(digits_cache):
    """First use writes the cache; a later process reads it (a damaged file is made again) and
    gets scikit-learn's own stratified split, array for array."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(np.arange(len(digits.target)), test_size=0.2,
                                           stratify=digits.target, random_state=0)
    for damage in (None, b"not an npz file"):
        if damage:
            next(digits_cache.iterdir()).write_bytes(damage)
        digits_split.cache_clear()
        split = digits_split()
        for part, index in (("train", train_idx), ("test", test_idx)):
            scaled = np.round(digits.images[index] * (255 / 16))  # 0..16 to 0..255
            assert split[f"{part}_images"].dtype == np.uint8
            assert np.array_equal(split[f"{part}_images"], scaled)
            assert np.array_equal(split[f"{part}_targets"], digits.target[index])
        assert [p.suffix for p in digits_cache.iterdir()] == [".npz"]


def test_a_warm_digits_cache_does_not_import_scikit_learn(digits_cache):
    digits_split()
    code = ("import sys\nfrom models.app.data import DigitsDataset\n"
            "print(len(DigitsDataset(True)), len(DigitsDataset(False)), 'sklearn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[1])
    assert done.stdout.split() == ["1437", "360", "False"]


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_pickles_load(tmp_path, hundred):
    folder, written = write_cifar(tmp_path, hundred)
    cfg = cfg_for("cifar100" if hundred else "cifar10", tmp_path, crop_pct=1.0,
                  interpolation="bilinear")
    train, val, info = build_datasets(cfg)
    assert len(train) == (4 if hundred else 20) and len(val) == 4
    assert info.num_classes == (100 if hundred else 10)
    data, labels = written["test" if hundred else "test_batch"]
    x, y = val[1]
    assert x.shape == (3, 32, 32) and y == labels[1]
    pixels = torch.tensor(data[1]).reshape(3, 32, 32).float() / 255
    assert torch.allclose(unnormalise(x, cfg, info), pixels, atol=1e-4)


def test_cifar_missing_names_path_and_files(tmp_path):
    folder, _ = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    expected = r"cifar-10-batches-py: expected data_batch_1.*missing data_batch_3 \(use --download"
    with pytest.raises(UserError, match=expected):
        build_datasets(cfg_for("cifar10", tmp_path))
    with pytest.raises(UserError, match="no CIFAR-100 batches"):
        build_datasets(cfg_for("cifar100", tmp_path))


def test_cifar_malformed_pickle(tmp_path):
    folder, _ = write_cifar(tmp_path)
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="malformed CIFAR batch"):
        build_datasets(cfg_for("cifar10", tmp_path))


def test_image_folder_loads(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("ant", "bee", "cat"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / split / cls / f"{i}.png")
    train, val, info = build_datasets(cfg_for("imagenet", tmp_path, img_size=32))
    assert (len(train), len(val), info.num_classes) == (9, 6, 3)
    x, y = val[5]
    assert x.shape == (3, 32, 32) and y == 2
    with pytest.raises(UserError, match="num_classes 1000 does not match"):
        build_datasets(cfg_for("imagenet", tmp_path, num_classes=1000))


def test_image_folder_missing(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a" / "0.png")
    with pytest.raises(UserError, match=r"no image folder at .*val"):
        build_datasets(cfg_for("imagenet", tmp_path))
    with pytest.raises(UserError, match="needs --data-dir"):
        build_datasets(cfg_for("imagenet"))


def write_frames(folder, classes, per_class, T, size, seed):
    """Integrated event frames as spikingjelly saves them: <class>/<name>.npz, key 'frames'."""
    rng = np.random.default_rng(seed)
    written = {}
    for c in range(classes):
        (folder / str(c)).mkdir(parents=True)
        for i in range(per_class):
            frames = rng.integers(0, 5, (T, 2, size, size)).astype(np.float32)
            np.savez_compressed(folder / str(c) / f"sample_{i:03d}.npz", frames=frames)
            written[(c, i)] = frames
    return written


@pytest.mark.parametrize("with_events", [False, True])
def test_dvs_gesture_frames(tmp_path, with_events):
    """Both paths: spikingjelly's DVS128Gesture (events_np present) and frames alone."""
    if with_events:
        (tmp_path / "events_np").mkdir()
    frames = tmp_path / "frames_number_4_split_by_number"
    write_frames(frames / "train", 11, 2, 4, 16, seed=0)
    test_written = write_frames(frames / "test", 11, 1, 4, 16, seed=1)
    cfg = cfg_for("dvsgesture", tmp_path, T=4, img_size=16)
    train, val, info = build_datasets(cfg)
    assert (len(train), len(val), info.num_classes, info.in_chans) == (22, 11, 11, 2)
    x, y = val[7]
    assert x.shape == (4, 2, 16, 16)
    folder = val.base.classes[y]  # folders sort as strings ("10" before "2"), as in spikingjelly
    assert torch.equal(x, torch.from_numpy(test_written[(int(folder), 0)]))
    x, _ = build_datasets(cfg_for("dvsgesture", tmp_path, T=4, img_size=8))[1][0]
    assert x.shape == (4, 2, 8, 8)


def test_cifar10_dvs_nine_to_one_split(tmp_path):
    frames = tmp_path / "frames_number_2_split_by_number"
    written = write_frames(frames, 10, 10, 2, 8, seed=2)
    train, val, _ = build_datasets(cfg_for("cifar10dvs", tmp_path, T=2, img_size=8))
    assert len(train) == 90 and len(val) == 10
    assert Counter(val.targets) == {c: 1 for c in range(10)}
    x, y = val[3]  # the last file of class 3 is held out
    assert y == 3 and torch.equal(x, torch.from_numpy(written[(3, 9)]))


def test_dvs_missing_names_layout(tmp_path):
    with pytest.raises(UserError, match=r"events_np.*frames_number_16_split_by_number"):
        build_datasets(cfg_for("dvsgesture", tmp_path, T=16))


def test_train_shards_disjoint_and_eval_shards_exact():
    cfg = cfg_for("fake", img_size=8, batch_size=16)
    train, val, _ = build_datasets(cfg)
    val = torch.utils.data.Subset(val, range(101))  # uneven over 2 ranks
    seen, evaluated = [], []
    for rank in range(2):
        ctx = DistContext(rank=rank, world_size=2, device=CPU)
        loader = train_loader(train, cfg, ctx)
        loader.sampler.set_epoch(3)
        seen.append({index for epoch, index in loader.sampler})
        evaluated.append(list(eval_loader(val, 16, 0, ctx).dataset.indices))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == len(train)
    assert sorted(evaluated[0] + evaluated[1]) == list(range(101))


def test_fake_data_shape_and_classes():
    train, val, info = build_datasets(cfg_for("fake", img_size=12, num_classes=7))
    assert info.num_classes == 7 and len(train) == 512 and len(val) == 128
    labels = {train[i][1] for i in range(64)}
    x, _ = val[0]
    assert x.shape == (3, 12, 12) and labels <= set(range(7)) and len(labels) > 1


def test_randaugment_posterize_at_the_top_magnitude_does_not_crash():
    """The CIFAR recipe's rand-m9-n1-mstd0.4-inc1 reaches magnitude 10 now and then, where
    timm's increasing posterize keeps 0 bits, which Pillow >= 10 refuses ("bits must be
    between 1 and 8"); that keeps a black image instead."""
    cfg = cfg_for("fake", img_size=16, aa="rand-m10-n3-inc1", scale=[1.0, 1.0])
    train, _, _ = build_datasets(cfg)
    rng = np.random.default_rng(0)
    for i in range(60):  # three of about fifteen operations per image: posterize comes up
        np.random.seed(i)
        image = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        assert train.transform(image).shape == (3, 16, 16)
