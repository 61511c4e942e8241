"""A zoo of models that only *look* robust: gradient masking, randomness, saturated or
non-logit outputs, batch dependence. Each wraps an ordinary (weak) model; the soundness checks
must report every one of them, under every attack. They are written as a defender might, not
around the checks: other masked models will be tried against the same checks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Wrapper(nn.Module):
    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base


class QuantizedInput(Wrapper):
    """Input quantised to 8 levels per channel: a piecewise-constant input, zero gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(torch.round(x * 7) / 7)
        return out


class ScaledLogits(Wrapper):
    """Logits multiplied by 1e4: the same decisions; the softmax saturates in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x) * 1e4
        return out


class NoisyInput(Wrapper):
    """Gaussian noise added to the input at every forward pass (a randomized 'defence')."""

    def __init__(self, base: nn.Module, sigma: float = 0.15) -> None:
        super().__init__(base)
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x + self.sigma * torch.randn_like(x))
        return out


class OneHotLookup(Wrapper):
    """Logits replaced by a scaled one-hot of the argmax, kept attached to the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x)
        hard = nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).float() * 10
        return hard + 0 * logits


class _NaNBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.full_like(grad, float("nan"))


class NaNGradient(Wrapper):
    """Finite outputs, NaN input gradient (an identity whose backward returns NaN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(_NaNBackward.apply(x))
        return out


class NoGradPath(Wrapper):
    """Forward under torch.no_grad(): no gradient path from the output to the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out: torch.Tensor = self.base(x)
        return out


class Probabilities(Wrapper):
    """Softmax probabilities instead of logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x).softmax(dim=1)


class BatchStatistics(Wrapper):
    """Standardises each batch with its own statistics: a sample's output depends on its batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=0, keepdim=True)
        out: torch.Tensor = self.base((x - mean) * 2 + 0.5)
        return out


ZOO = {
    "quantized": QuantizedInput,
    "scaled-logits": ScaledLogits,
    "noisy-input": NoisyInput,
    "one-hot-lookup": OneHotLookup,
    "nan-gradient": NaNGradient,
    "no-gradient-path": NoGradPath,
    "probabilities": Probabilities,
    "batch-statistics": BatchStatistics,
}


class _ReversedBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return -grad


class ReversedGradient(Wrapper):
    """Finite, non-zero, but wrong gradients: the input gradient points away from the boundary."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(_ReversedBackward.apply(x))
        return out


ZOO["reversed-gradient"] = ReversedGradient


class OneClass(Wrapper):
    """The base's logits plus a fixed margin for one class: the same answer for every input.

    Not in :data:`ZOO`: the soundness checks rightly pass it (its gradient is the base's, its logits
    are logits); its flaw is that it is degenerate (:mod:`pytest_robust.degeneracy`): its robust
    accuracy is the share of that class in the data, whatever the attack.
    """

    def __init__(self, base: nn.Module, label: int = 1, margin: float = 3.0) -> None:
        super().__init__(base)
        self.label = label
        self.margin = margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.base(x)
        bias = torch.zeros(logits.shape[1], dtype=logits.dtype, device=logits.device)
        bias[self.label] = self.margin
        return logits + bias
