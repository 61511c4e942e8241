"""Pieces of the inner pytest runs that the plugin tests make through ``pytester``."""

from __future__ import annotations

import textwrap

import pytest

#: the top of an inner conftest: imports; ``blobs(n, seed, shift)``, two classes of 8x8 images (a
#: brighter square marks the positive class); ``tiny_model(train, steps)``, an MLP that learns them
#: in about a second
PRELUDE = textwrap.dedent(
    """
    import pytest, torch
    from torch import nn
    from pytest_robust.data.dataset import ImageDataset

    def blobs(n, seed, shift=0.15):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 2
        x = torch.rand((n, 3, 8, 8), generator=g) * 0.5
        x[y == 1, :, 2:6, 2:6] += shift
        return ImageDataset(images=x.clamp(0, 1), labels=y, classes=("benign", "malignant"),
                            name="blobs", synthetic=True)

    def tiny_model(train=512, steps=200):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, 2))
        data = blobs(train, 2)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for i in range(steps):
            idx = torch.arange(i * 64, i * 64 + 64) % train
            loss = nn.functional.cross_entropy(net(data.images[idx]), data.labels[idx])
            opt.zero_grad(); loss.backward(); opt.step()
        return net.eval()
    """
)


def smoke_args(pytester: pytest.Pytester) -> list[str]:
    """The options of a quick, isolated inner run: smoke profile, one CPU thread, its own caches."""
    return [
        "--robust-profile=smoke",
        "--robust-device=cpu",
        "--robust-threads=1",
        f"--robust-cache-dir={pytester.path / 'cache'}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
    ]


def run_smoke(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner run in a subprocess with :func:`smoke_args`, soundness checks as warnings, ``args``."""
    return pytester.runpytest_subprocess(*smoke_args(pytester), "--robust-soundness=warn", *args)
