"""Model utilities: normalisation inside the model, the small default CNN, eval mode, devices."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from pytest_robust.errors import RobustConfigError

#: ImageNet statistics, the usual normalisation of timm models.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as a module so it travels with the model."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise RobustConfigError(f"bad normalisation: mean={mean}, std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """Wrap a network that expects normalised input so that it takes pixels in [0, 1].

    Attacks and eps budgets live in pixel space; normalisation is part of the model.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.normalize(x))
        return out


class SmallCNN(nn.Module):
    """A small convolutional classifier: the quick-start model (trains in seconds on a CPU)."""

    def __init__(self, num_classes: int = 2, width: int = 16, in_channels: int = 3) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(
            block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 8 * w)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def small_cnn(num_classes: int = 2, width: int = 16) -> NormalizedModel:
    """The quick-start model: :class:`SmallCNN` behind a [0, 1] → standardised input layer."""
    return NormalizedModel(SmallCNN(num_classes, width), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each one's previous mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else must be a device torch knows."""
    if isinstance(spec, torch.device):
        return spec
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise RobustConfigError(f"unknown device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RobustConfigError(
            f"device {spec!r} requested but CUDA is not available here; use --robust-device=auto or cpu"
        )
    return device


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state (names, shapes, dtypes and values), for manifests."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-less model)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


class ExpectationModel(nn.Module):
    """A randomized model made into the average of ``draws`` of it (expectation over its randomness).

    ``forward`` returns the log of the mean of the softmax probabilities over ``draws`` forward
    passes. Its argmax is the mean-probability decision (what pytest-robust uses for the clean and
    the robust decision of a model declared ``randomized``), and its input gradient averages the
    per-draw gradients (weighted by each draw's probability of the class): gradient attacks on it
    are expectation-over-transformation attacks (Athalye et al. 2018), not attacks on one draw.
    """

    def __init__(self, model: nn.Module, draws: int) -> None:
        super().__init__()
        if draws < 1:
            raise RobustConfigError(f"draws must be >= 1, got {draws}")
        self.model = model
        self.draws = draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([self.model(x).float().softmax(dim=1) for _ in range(self.draws)])
        return probs.mean(dim=0).clamp_min(1e-30).log()


def floating_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (else buffer); None when it has none."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def input_resolution(model: nn.Module) -> float:
    """The spacing at 1.0 of the model's floating-point format when coarser than float32, else 0.

    A float16 model cannot see input changes much below 1e-3, a bfloat16 one below 8e-3: checks that
    take small steps in input space take at least this one.
    """
    dtype = floating_dtype(model)
    if dtype is None or torch.finfo(dtype).eps <= torch.finfo(torch.float32).eps:
        return 0.0
    return float(torch.finfo(dtype).eps)


class ClassifierView(nn.Module):
    """A user's model as the harness sees it: float32 logits, one per class of the data.

    Two conventions are translated, everything else passes through unchanged (a wrong output is
    reported by the caller with the accepted shapes):

    - a **one-logit binary model** (output ``(batch, 1)`` or ``(batch,)``, a sigmoid classifier)
      on data with 2 classes is viewed as the two logits ``[0, z]``: their softmax is
      ``[1 - sigmoid(z), sigmoid(z)]`` and their argmax is class 1 (the positive) exactly when
      ``z > 0``, so the cross-entropy and margin losses of the attacks are the binary ones;
    - a model whose floating-point weights are **float16, bfloat16 or float64** gets its input cast
      to that dtype and its output cast back to float32 (both casts are differentiable: gradient
      attacks see the model's own gradient).

    Fingerprints (weights, structure) are taken of the user's model, never of this view.
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        dtype = floating_dtype(model)
        #: the dtype inputs are cast to (None: float32, or a model without floating-point weights)
        self.input_dtype = dtype if dtype is not None and dtype != torch.float32 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_dtype is not None and x.is_floating_point():
            x = x.to(self.input_dtype)
        out = self.model(x)
        if not isinstance(out, torch.Tensor):
            return out  # type: ignore[no-any-return]  # reported by the caller
        if out.is_floating_point() and out.dtype != torch.float32:
            out = out.float()
        if self.num_classes == 2 and (out.shape == (x.shape[0], 1) or out.shape == (x.shape[0],)):
            z = out.reshape(-1, 1)
            out = torch.cat([torch.zeros_like(z), z], dim=1)
        return out

    def extra_repr(self) -> str:
        dtype = f", input_dtype={self.input_dtype}" if self.input_dtype is not None else ""
        return f"num_classes={self.num_classes}{dtype}"


def as_classifier(model: nn.Module, num_classes: int) -> ClassifierView:
    """``model`` behind a :class:`ClassifierView` for ``num_classes`` classes (not wrapped twice)."""
    if isinstance(model, ClassifierView) and model.num_classes == num_classes:
        return model
    return ClassifierView(model, num_classes)


def structure_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the module tree: each submodule's name, class and its ``extra_repr``."""
    h = hashlib.sha256()
    for name, module in model.named_modules():
        cls = type(module)
        h.update(f"{name}|{cls.__module__}.{cls.__qualname__}|{module.extra_repr()}\n".encode())
    return h.hexdigest()


def behaviour_fingerprint(model: nn.Module, probe: torch.Tensor) -> str:
    """SHA-256 of the model's outputs on ``probe`` (eval mode, no gradient).

    Two models with the same weights but different forward code (a wrapper without parameters of
    its own, a rescaled output, added noise) get different fingerprints.
    """
    with torch.no_grad(), eval_mode(model):
        out = model(probe)
    h = hashlib.sha256()
    if isinstance(out, torch.Tensor):
        t = out.detach().to("cpu", torch.float32).contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    else:
        h.update(repr(type(out)).encode())
    return h.hexdigest()
