"""The README's worked example: a release candidate gated against the stored baseline.

The accepted model is the quick-start PGD-AT CNN. ``CANDIDATE=fine-tuned`` swaps in a candidate
made from it by three epochs of standard (clean) fine-tuning, a common way to buy back clean
accuracy, which costs robustness. ``CANDIDATE=fine-tuned-1`` fine-tunes one epoch at a tenth of
the learning rate: a candidate that differs from the accepted model on a few samples.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn


@pytest.fixture(scope="session")
def candidate(robust_model_factory, robust_train_data):  # type: ignore[no-untyped-def]
    accepted = robust_model_factory("pgd-at")
    recipes = {"fine-tuned": (3, 0.05), "fine-tuned-1": (1, 0.005)}
    epochs, lr = recipes.get(os.environ.get("CANDIDATE", ""), (0, 0.0))
    if not epochs:
        return accepted
    model = copy.deepcopy(accepted).train()
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = robust_train_data.images, robust_train_data.labels
    for _ in range(epochs):
        for start in range(0, len(x), 64):
            loss = nn.functional.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
