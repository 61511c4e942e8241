"""Shared fixtures of the project's own tests: tiny data and models that train in a second."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings
from torch import nn

from pytest_robust.data.dataset import ImageDataset
from pytest_robust.training import seeded

pytest_plugins = ["pytester"]

# CI explores the same hypothesis examples on every run (reproducible failures, no flakes);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _torch_warm() -> Iterator[None]:
    """Import torch's lazily loaded parts (and pandas, scikit-learn) once in this process.

    pytester's in-process runs drop modules first imported inside them; torch cannot re-import
    some of those (operator libraries register once), so load them here, before any inner run.
    """
    import pandas  # noqa: F401  -- the same for pandas: an inner --robust-report run imports it
    import sklearn.metrics  # noqa: F401

    threads = torch.get_num_threads()
    net = nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _own_result_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and the pytester runs inside it) caches evaluation results in a folder of its own.

    The result cache is on by default; shared, one test's inner run would answer another's
    evaluations from disk. Trained checkpoints stay shared (``PYTEST_ROBUST_CACHE_DIR``).
    """
    monkeypatch.setenv("PYTEST_ROBUST_RESULT_CACHE_DIR", str(tmp_path_factory.mktemp("results")))


def make_blobs(n: int, *, size: int = 8, seed: int = 0, classes: int = 2) -> ImageDataset:
    """Class k: a bright square at one of ``classes`` positions on a noisy background."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    x = torch.rand((n, 3, size, size), generator=g) * 0.5
    half = size // 2
    for k in range(classes):
        r, c = divmod(k, 2)
        sel = labels == k
        x[sel, :, r * half // 2 : r * half // 2 + half, c * half : c * half + half] += 0.15
    x = x.clamp(0, 1)
    names = tuple(["benign", "malignant", "c2", "c3", "c4", "c5"][:classes])
    return ImageDataset(images=x, labels=labels, classes=names, name="blobs", synthetic=True)


def tiny_net(size: int = 8, classes: int = 2) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 32), nn.ReLU(), nn.Linear(32, classes))


def fit(model: nn.Module, data: ImageDataset, steps: int = 300, lr: float = 3e-3) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(data.images[idx]), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def blobs() -> ImageDataset:
    return make_blobs(256, seed=3)


@pytest.fixture(scope="session")
def trained_tiny(blobs: ImageDataset) -> nn.Module:
    with seeded(0):
        net = tiny_net()
    return fit(net, make_blobs(1024, seed=7))
