"""Content-addressed checkpoint store: spec hash → safetensors weights + JSON metadata.

Layout: ``<root>/checkpoints/<key[:2]>/<key>/{model.safetensors, meta.json}``. The key is the
SHA-256 of the canonical JSON of the spec (architecture, recipe, hyper-parameters, data
fingerprint, seed) plus the library versions that affect numerics. Writes go to a temporary file
and are published with ``os.replace``; a lock per key makes concurrent workers (pytest-xdist, and
machines sharing the folder: :mod:`pytest_robust.storage`) train a model once; an entry whose
weights fail their hash check is rebuilt, never loaded. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_robust.errors import StorageError
from pytest_robust.storage import atomic_write_bytes as atomic_write_bytes  # re-exported
from pytest_robust.storage import cache_lock

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
META = "meta.json"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def spec_key(spec: dict[str, Any]) -> str:
    """The cache key of a spec: SHA-256 of its canonical JSON plus numerics-relevant versions."""
    full = {"spec": spec, "versions": {"torch": torch.__version__.split("+")[0]}}
    return hashlib.sha256(canonical_json(full).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class CachedModel:
    model: nn.Module
    key: str
    meta: dict[str, Any]
    hit: bool

    def record(self) -> dict[str, Any]:
        """What a report's manifest says of this checkpoint (plain JSON): its spec key, the SHA-256
        of its weights, the training profile, training time, the training data's fingerprint, and
        how it was trained as its spec says (training images, their shape, epochs, the PGD-AT
        budget — None for a standard model —, the key of the model it was fine-tuned from)."""
        spec = self.meta.get("spec", {})
        train = self.meta.get("train", {})
        profile = spec.get("profile")
        data = spec.get("data") or {}
        config = spec.get("train") or {}
        adversarial = spec.get("recipe") == "pgd-at"
        return {
            "key": self.key,
            "arch": spec.get("arch"),
            "recipe": spec.get("recipe"),
            "seed": spec.get("seed"),
            "weights_sha256": self.meta.get("weights_sha256"),
            "training_profile": profile.get("name") if isinstance(profile, dict) else profile,
            "train_seconds": train.get("seconds"),
            "trained_on": data.get("fingerprint"),
            "train_images": data.get("n"),
            "train_shape": data.get("shape"),
            "epochs": config.get("epochs"),
            "at_eps": config.get("at_eps") if adversarial else None,
            "at_step_size": config.get("at_step_size") if adversarial else None,
            "at_steps": config.get("at_steps") if adversarial else None,
            "init": spec.get("init"),
        }


class CheckpointCache:
    """A folder of trained checkpoints addressed by spec hash."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        return self.root / "checkpoints" / key[:2] / key

    def load(self, key: str, model: nn.Module) -> dict[str, Any] | None:
        """Load weights into ``model`` when a valid entry exists; None on a miss or bad entry."""
        from safetensors.torch import load_file

        folder = self.entry(key)
        meta_path, weights = folder / META, folder / WEIGHTS
        if not (meta_path.is_file() and weights.is_file()):
            return None
        from safetensors import SafetensorError

        try:
            meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("checkpoint %s: unreadable metadata, rebuilding", key[:12])
            return None
        if not isinstance(meta, dict):
            log.warning("checkpoint %s: metadata is not a JSON object, rebuilding", key[:12])
            return None
        if meta.get("weights_sha256") != file_sha256(weights):
            log.warning("checkpoint %s: weights fail their hash check, rebuilding", key[:12])
            return None
        try:  # the hash matched the metadata, but both may be damaged or foreign (garbage, a pickle)
            state = load_file(str(weights))
            model.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            log.warning("checkpoint %s: cannot be loaded (%s), rebuilding", key[:12], exc)
            return None
        return meta

    def store(self, key: str, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        payload = save(state)
        folder = self.entry(key)
        full = {**meta, "key": key, "weights_sha256": hashlib.sha256(payload).hexdigest()}
        try:
            atomic_write_bytes(folder / WEIGHTS, payload)
            atomic_write_bytes(folder / META, json.dumps(full, indent=2, sort_keys=True).encode())
        except OSError as exc:
            raise StorageError(
                f"cannot write checkpoint {key[:12]} ({len(payload) / 1e6:.1f} MB) into {str(folder)!r}: "
                f"{exc.strerror or exc}. Free disk space there, or move the checkpoint cache "
                "(--robust-cache-dir or $PYTEST_ROBUST_CACHE_DIR)"
            ) from exc
        return full

    def get_or_build(
        self,
        spec: dict[str, Any],
        make: Callable[[], nn.Module],
        fit: Callable[[nn.Module], dict[str, Any]],
        *,
        force: bool = False,
    ) -> CachedModel:
        """Return the cached model for ``spec``, training it with ``fit`` on a miss.

        ``make`` builds an untrained model (the architecture); ``fit`` trains it in place and
        returns metadata to store (training curve, timings). ``force`` retrains regardless.
        """
        key = spec_key(spec)
        folder = self.entry(key)
        folder.mkdir(parents=True, exist_ok=True)
        with cache_lock(folder / ".lock"):  # the waiter re-reads below: trained once
            model = make()
            if not force:
                meta = self.load(key, model)
                if meta is not None:
                    return CachedModel(model, key, meta, hit=True)
            log.info("checkpoint %s: training %s", key[:12], spec.get("name", ""))
            info = fit(model)
            meta = self.store(key, model, {"spec": spec, "train": info})
            return CachedModel(model, key, meta, hit=False)
