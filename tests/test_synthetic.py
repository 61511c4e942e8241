"""The embedded synthetic dermoscopy generator: determinism, streams, ranges, labels, learnability."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from pytest_robust.data.synthetic import CLASSES, GENERATOR_VERSION, generate_synthetic
from pytest_robust.errors import RobustDataError
from pytest_robust.models import small_cnn
from pytest_robust.quickstart import QUICKSTART_TRAINING
from pytest_robust.training import Recipe, seeded, train


def test_same_seed_gives_identical_tensors() -> None:
    a = generate_synthetic(8, size=32, seed=3)
    b = generate_synthetic(8, size=32, seed=3)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert a.fingerprint() == b.fingerprint()


def test_different_seed_gives_different_images() -> None:
    a = generate_synthetic(8, size=32, seed=3)
    b = generate_synthetic(8, size=32, seed=4)
    for i in range(8):
        assert not torch.equal(a.images[i], b.images[i])


def test_image_i_does_not_depend_on_n() -> None:
    short = generate_synthetic(10, size=32, seed=1, split="train")
    long = generate_synthetic(20, size=32, seed=1, split="train")
    assert torch.equal(short.images, long.images[:10])
    assert torch.equal(short.labels, long.labels[:10])


def test_train_and_test_splits_are_disjoint() -> None:
    train = generate_synthetic(16, size=32, seed=0, split="train").images.flatten(1)
    test = generate_synthetic(16, size=32, seed=0, split="test").images.flatten(1)
    closest = torch.cdist(train, test).min()
    assert closest > 1.0, "a test image (nearly) repeats a training image"


def test_shape_dtype_range_and_metadata() -> None:
    ds = generate_synthetic(6, size=40, seed=2, split="train")
    assert ds.images.shape == (6, 3, 40, 40)
    assert ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64
    assert float(ds.images.min()) >= 0.0
    assert float(ds.images.max()) <= 1.0
    assert ds.classes == CLASSES == ("benign", "malignant")
    assert ds.synthetic is True
    assert ds.name == "synthetic-dermoscopy"
    assert json.loads(json.dumps(ds.source)) == ds.source
    assert ds.source["version"] == GENERATOR_VERSION
    assert {k: ds.source[k] for k in ("n", "size", "seed", "split")} == {
        "n": 6,
        "size": 40,
        "seed": 2,
        "split": "train",
    }


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_labels_are_balanced_in_every_pair(n: int) -> None:
    labels = generate_synthetic(n, size=16, seed=0).labels
    assert abs(int(labels.sum()) * 2 - n) <= 1
    pairs = labels[: n - n % 2].view(-1, 2)
    assert torch.equal(pairs.sum(dim=1), torch.ones(n // 2, dtype=torch.int64))
    if n >= 50:  # which member of a pair is malignant is random, not a fixed pattern
        assert 0 < int(pairs[:, 0].sum()) < n // 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"n": -3}, "n must be >= 1"),
        ({"n": 2.5}, "n must be an integer"),
        ({"n": 4, "size": 15}, "size must be >= 16"),
        ({"n": 4, "size": True}, "size must be an integer"),
        ({"n": 4, "seed": -1}, "seed must be >= 0"),
        ({"n": 4, "split": "validation"}, "unknown split 'validation'"),
        ({"n": 4, "split": ["test"]}, r"unknown split \['test'\]"),
    ],
)
def test_invalid_arguments_raise_data_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(RobustDataError, match=match):
        generate_synthetic(**kwargs)  # type: ignore[arg-type]


def test_same_lesion_at_any_resolution() -> None:
    small = generate_synthetic(6, size=32, seed=5).images
    large = generate_synthetic(6, size=128, seed=5).images
    down = F.avg_pool2d(large, 4)  # exact 4x4 box average: 128 px → 32 px
    for i in range(6):
        same = np.corrcoef(small[i].flatten().numpy(), down[i].flatten().numpy())[0, 1]
        other = np.corrcoef(small[i].flatten().numpy(), down[(i + 1) % 6].flatten().numpy())[0, 1]
        assert same > 0.97
        assert same > other + 0.1


def test_malignant_lesions_are_darker_on_average() -> None:
    ds = generate_synthetic(200, size=32, seed=0)
    centre = ds.images[:, :, 8:24, 8:24].mean(dim=(1, 2, 3))
    assert float(centre[ds.labels == 0].mean()) - float(centre[ds.labels == 1].mean()) > 0.04


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=5),
    size=st.integers(min_value=16, max_value=48),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    split=st.sampled_from(["train", "test"]),
)
def test_property_any_valid_arguments(n: int, size: int, seed: int, split: str) -> None:
    ds = generate_synthetic(n, size=size, seed=seed, split=split)
    assert ds.images.shape == (n, 3, size, size)
    assert ds.images.dtype == torch.float32
    assert bool(torch.isfinite(ds.images).all())
    assert 0.0 <= float(ds.images.min()) <= float(ds.images.max()) <= 1.0
    assert float(ds.images.std()) > 0.01
    assert set(ds.labels.tolist()) <= {0, 1}
    assert abs(int(ds.labels.sum()) * 2 - n) <= 1
    assert torch.equal(generate_synthetic(1, size=size, seed=seed, split=split).images[0], ds.images[0])


@pytest.mark.slow
def test_quickstart_model_learns_the_task_but_not_perfectly() -> None:
    """The quick-start recipe (32 px, 2048 images, 8 epochs, Adam 2e-3) on the synthetic set."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        start = time.perf_counter()
        train_set = generate_synthetic(2048, size=32, seed=0, split="train")
        test = generate_synthetic(512, size=32, seed=0, split="test")
        with seeded(0):
            model = small_cnn()
        train(model, train_set, QUICKSTART_TRAINING[Recipe.STANDARD], progress=False)
        with torch.no_grad():
            accuracy = float((model(test.images).argmax(dim=1) == test.labels).float().mean())
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    assert 0.85 <= accuracy < 1.0, f"clean accuracy {accuracy:.3f} after {elapsed:.1f} s"
