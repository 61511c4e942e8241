"""Model construction by name: the study's five timm architectures, any other timm model, ``small_cnn``.

Every model takes pixels in [0, 1]: the normalisation timm's ``pretrained_cfg`` declares for the
architecture (its mean / std) is a layer inside the returned :class:`NormalizedModel`.

A timm classifier head initialised much wider than ``nn.Linear``'s default (more than twice its
standard deviation) is re-drawn with that default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): timm's
EfficientNet-family init scales the head by 1/sqrt(num_classes) instead, which for 2 classes gives
MobileNetV2 / EfficientNet-B2 initial logits of about +-10 and a cross-entropy near 6 that took
most of a 6-epoch CPU training to come down (measured on ISIC at 32 px). ResNet, DenseNet and
ConvNeXt heads are left as timm made them. :data:`MODEL_REVISION` changes whenever construction
changes, and is part of every checkpoint's cache key.

Weights: ``weights=PATH`` loads a local file — ``.safetensors``, or a ``.pth`` / ``.pt`` / ``.bin``
/ ``.ckpt`` state dict read with ``torch.load(weights_only=True)`` (nothing is unpickled). A
classifier head whose shape differs from ``num_classes`` (e.g. ImageNet's 1000 classes) is left
out and stays freshly initialised; :func:`load_weights` reports it and a warning says so.
``pretrained=True`` uses timm's pretrained file from the Hugging Face cache, downloading it when
there is network; offline (``HF_HUB_OFFLINE=1``, or the hub unreachable within a few seconds) it
fails at once with a message saying how to pass a local file instead.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from pytest_robust.cache import file_sha256
from pytest_robust.errors import RobustConfigError, RobustModelError
from pytest_robust.models import IMAGENET_MEAN, IMAGENET_STD, NormalizedModel, small_cnn

__all__ = [
    "REFERENCE_ARCHITECTURES",
    "WeightsReport",
    "create_model",
    "load_weights",
]

log = logging.getLogger(__name__)

#: The reference study's five architectural families, as timm names.
REFERENCE_ARCHITECTURES: Final = (
    "resnet50",
    "densenet121",
    "mobilenetv2_100",
    "efficientnet_b2",
    "convnext_tiny",
)
#: Bumped whenever a name builds a differently initialised model (part of checkpoint cache keys).
MODEL_REVISION: Final = 1
#: Architectures of our own (not in timm) and their classifier module.
OWN_ARCHITECTURES: Final[Mapping[str, str]] = {"small_cnn": "head.2"}
HUB_HOST: Final = "huggingface.co"
PROBE_TIMEOUT_S: Final = 3.0
_TORCH_SUFFIXES: Final = (".pth", ".pt", ".bin", ".ckpt")
_NESTED_KEYS: Final = ("state_dict_ema", "model_ema", "state_dict", "model", "model_state_dict")
_STRIP_PREFIXES: Final = ("module.", "_orig_mod.")
_WEIGHTS_HINT: Final = (
    "pass a local file instead: create_model({arch!r}, num_classes=N, weights='/path/to/model.safetensors') "
    "(a .safetensors file, or a .pth/.bin state dict, which is read with torch.load(weights_only=True)); "
    "a classifier head for another number of classes is left out and reported"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsReport:
    """What :func:`load_weights` loaded: the file, its hash, and the head tensors left out."""

    path: str
    sha256: str
    tensors_loaded: int
    head_skipped: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["head_skipped"] = list(self.head_skipped)
        return d


def create_model(
    arch: str,
    *,
    num_classes: int,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
) -> NormalizedModel:
    """Build ``arch`` for ``num_classes`` classes, taking pixels in [0, 1].

    ``arch`` is ``small_cnn`` or any timm name (see :data:`REFERENCE_ARCHITECTURES`). The global
    torch RNG initialises the weights: wrap the call in :func:`~pytest_robust.training.seeded`
    for a reproducible model. ``weights`` (a local file) wins over ``pretrained``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise RobustConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    name = str(arch).strip()
    if name in OWN_ARCHITECTURES:
        if pretrained and weights is None:
            raise RobustConfigError(
                f"{name} has no published pretrained weights; pass weights=PATH of a saved {name} "
                "state dict, or pretrained=False"
            )
        model = small_cnn(num_classes)
        classifier: tuple[str, ...] = (OWN_ARCHITECTURES[name],)
    else:
        net = _timm_model(name, num_classes)
        _tame_head(net)
        cfg: dict[str, Any] = dict(getattr(net, "pretrained_cfg", None) or {})
        model = NormalizedModel(net, mean=cfg.get("mean", IMAGENET_MEAN), std=cfg.get("std", IMAGENET_STD))
        classifier = _classifier_names(cfg)
        if pretrained and weights is None:
            weights = _pretrained_file(name, cfg)
    if weights is not None:
        report = load_weights(model, weights, classifier=classifier)
        log.info("%s: loaded %d tensors from %s", name, report.tensors_loaded, report.path)
    return model


def _timm_model(name: str, num_classes: int) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise RobustConfigError(f"unknown architecture {name!r}{_suggest(name)}")
    net: nn.Module = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return net


def _tame_head(net: nn.Module) -> None:
    """Re-draw a linear classifier initialised wider than twice ``nn.Linear``'s default std."""
    get_classifier = getattr(net, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    if isinstance(head, nn.Linear) and head.weight.numel() > 1:
        default_std = 1.0 / math.sqrt(3 * head.in_features)  # of U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        if float(head.weight.detach().std()) > 2 * default_std:
            head.reset_parameters()


def _suggest(name: str) -> str:
    """``; did you mean ...?`` with the closest timm names (and ours), or how to list them."""
    import timm

    names = [*OWN_ARCHITECTURES, *timm.list_models()]
    key = name.lower()
    close = [n for n in names if n.startswith(key)][:3]
    close += [n for n in difflib.get_close_matches(key, names, n=5, cutoff=0.6) if n not in close]
    if not close:
        return "; list the available names with timm.list_models('*pattern*')"
    return f"; did you mean {', '.join(repr(n) for n in close[:5])}? (all names: timm.list_models())"


def _classifier_names(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    classifier = cfg.get("classifier") or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def hub_reachable(host: str = HUB_HOST, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _pretrained_file(arch: str, cfg: Mapping[str, Any]) -> Path:
    """The local path of ``arch``'s default pretrained weights: cached, or downloaded when online."""
    hub_id = cfg.get("hf_hub_id")
    hint = _WEIGHTS_HINT.format(arch=arch)
    if not hub_id:
        raise RobustConfigError(f"timm lists no Hugging Face weights for {arch!r}; {hint}")
    import huggingface_hub as hf
    from huggingface_hub.errors import RemoteEntryNotFoundError

    filenames = [f for f in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin") if f]
    for filename in filenames:
        cached = hf.try_to_load_from_cache(repo_id=hub_id, filename=filename)
        if isinstance(cached, str):
            return Path(cached)
    url = f"https://{HUB_HOST}/{hub_id}/resolve/main/{filenames[0]}"
    why = (
        "HF_HUB_OFFLINE is set"
        if _offline()
        else None
        if hub_reachable()
        else f"{HUB_HOST} is unreachable (no network?)"
    )
    if why is None:
        for filename in filenames:
            try:
                got = hf.hf_hub_download(repo_id=hub_id, filename=filename, etag_timeout=PROBE_TIMEOUT_S)
                return Path(got)
            except RemoteEntryNotFoundError:
                continue
            except Exception as exc:  # offline, HTTP, timeouts: huggingface_hub has many error types
                why = f"the download failed ({type(exc).__name__}: {exc})"
                break
        else:
            why = f"{hub_id} has none of {filenames}"
    raise RobustConfigError(
        f"pretrained weights for {arch!r} are not in the local cache and cannot be downloaded: {why}. "
        f"Download {url} where there is network, then {hint}"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapped from the usual checkpoint nesting; never unpickles."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise RobustModelError(
                f"weights file {str(path)!r} is not a valid safetensors file ({exc}); "
                "re-save or re-download it"
            ) from exc
    if path.suffix not in _TORCH_SUFFIXES:
        raise RobustConfigError(
            f"weights file {str(path)!r}: unknown extension {path.suffix!r}; use .safetensors or one of "
            f"{', '.join(_TORCH_SUFFIXES)}"
        )
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError, ...
        raise RobustModelError(
            f"weights file {str(path)!r} cannot be read with torch.load(weights_only=True) ({exc}); "
            "pytest-robust never unpickles arbitrary objects: save a plain state dict, e.g. "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')"
        ) from exc
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            raise RobustModelError(
                f"weights file {str(path)!r} holds no state dict (top-level keys: {sorted(obj)[:10]}); "
                "save model.state_dict()"
            )
        obj = obj[key]
    if not isinstance(obj, dict):
        raise RobustModelError(f"weights file {str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_weights(
    model: NormalizedModel, path: str | os.PathLike[str], *, classifier: tuple[str, ...] = ()
) -> WeightsReport:
    """Load a weights file into ``model`` (the bare network's keys, or a whole NormalizedModel's).

    Tensors under a ``classifier`` module (names relative to ``model.net``) whose shape differs
    from the model's are left out with a warning; any other missing, unexpected or mis-shaped
    tensor is a :class:`RobustModelError` naming them.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise RobustConfigError(f"weights file {str(file)!r} does not exist; check the path")
    raw = _read_state_dict(file)
    state: dict[str, torch.Tensor] = {}
    wrapped = all(k.startswith(("net.", "normalize.")) for k in raw)
    for key, tensor in raw.items():
        for prefix in _STRIP_PREFIXES:
            key = key.removeprefix(prefix)
        state[key if wrapped else f"net.{key}"] = tensor
    own = model.state_dict()
    heads = tuple(f"net.{c}." for c in classifier)
    skipped = tuple(
        sorted(k for k, t in state.items() if k.startswith(heads) and k in own and own[k].shape != t.shape)
    )
    for key in skipped:
        del state[key]
    bad_shape = [k for k, t in state.items() if k in own and own[k].shape != t.shape]
    missing = [k for k in own if k not in state and k not in skipped and not k.startswith("normalize.")]
    unexpected = [k for k in state if k not in own]
    if bad_shape or missing or unexpected:
        detail = "; ".join(
            f"{what} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape))
            if keys
        )
        raise RobustModelError(
            f"weights file {str(file)!r} does not fit this architecture: {detail}. Is it a checkpoint of the "
            "same architecture (timm name) as the one requested?"
        )
    model.load_state_dict(state, strict=False)
    if skipped:
        log.warning(
            "weights %s: classifier head %s has another number of classes than the model; it was left "
            "out and is freshly initialised: fine-tune the model before evaluating it",
            file.name,
            ", ".join(skipped),
        )
    return WeightsReport(
        path=str(file), sha256=file_sha256(file), tensors_loaded=len(state), head_skipped=skipped
    )
