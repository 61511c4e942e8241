"""Content-addressed result cache: the hash of everything that determines an evaluation → its result.

Layout: ``<folder>/<key[:2]>/<key>.json`` (the folder: ``$PYTEST_ROBUST_RESULT_CACHE_DIR`` or
``<cache dir>/results``, see :func:`~pytest_robust.config.default_result_cache_dir`), holding
``{"schema", "key", "key_material", "result_sha256", "result"}``: ``key`` is the SHA-256 of
``key_material``, the canonical JSON of the model's identity (weights, structure and behaviour
fingerprints: two wrappers of one set of weights never share a result), the data (fingerprint and
sample ids), the attack (its configuration and class), the threat model, seed, batch size, device
type, example count, soundness configuration, positive label, focus, the stop rule's key, the
execution plan (:mod:`pytest_robust.execution`: mode, proposed setting and its source, so a result
computed under bf16 is never served for fp32), the library versions and
:data:`~pytest_robust.schema.RESULT_CACHE_SCHEMA`. Thread count and device
index are deliberately not part of it.
Writes go through a temporary file and ``os.replace``; a lock per key makes concurrent
pytest-xdist workers (and machines sharing the folder: :mod:`pytest_robust.storage`) compute an
evaluation once - a process that waited re-reads the entry before computing; a load re-hashes the
result and an entry that is unreadable, truncated, of another key or schema, or fails its hash is
recomputed with a :class:`~pytest_robust.errors.ResultCacheWarning`, never trusted. JSON only:
nothing is unpickled. No pytest import.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_robust.cache import canonical_json
from pytest_robust.errors import ResultCacheWarning
from pytest_robust.evaluate import EvalResult
from pytest_robust.schema import RESULT_CACHE_SCHEMA
from pytest_robust.storage import atomic_write_bytes, cache_lock

#: bump when the key material or the payload changes meaning: old entries are then never looked up
#: (defined in :mod:`pytest_robust.schema`)
SCHEMA = RESULT_CACHE_SCHEMA


def device_type(device: str) -> str:
    """``cuda:1`` → ``cuda``: results do not depend on which GPU of a kind ran them."""
    return str(device).split(":", 1)[0]


def result_key(
    *,
    model: dict[str, str],
    data_fingerprint: str,
    sample_ids: Sequence[str],
    attack: dict[str, Any],
    threat: dict[str, Any],
    seed: int,
    batch_size: int,
    device: str,
    examples: int,
    soundness: dict[str, Any] | None,
    positive_label: int,
    focus: Sequence[int],
    stop: str | None,
    versions: dict[str, str],
    execution: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """``(key, material)``: the SHA-256 and the canonical JSON of everything that determines a result.

    ``model``: the fingerprints (``weights``, ``structure``, ``behaviour``); ``attack``: its
    ``config()`` plus, under ``"class"``, the implementing class; ``device``: a device or device type
    (only the type is used); ``stop``: the stop rule's key (None without a stop rule);
    ``execution``: the execution plan's JSON (:meth:`pytest_robust.execution.Plan.to_json`): the
    setting the fidelity check then keeps or drops is a function of it and of the rest of the key.
    """
    material = canonical_json(
        {
            "schema": RESULT_CACHE_SCHEMA,
            "model": dict(model),
            "data": {"fingerprint": data_fingerprint, "sample_ids": list(sample_ids)},
            "attack": attack,
            "threat": threat,
            "seed": seed,
            "batch_size": batch_size,
            "device_type": device_type(device),
            "examples": examples,
            "soundness": soundness,
            "positive_label": positive_label,
            "focus": list(focus),
            "stop": stop,
            "execution": execution,
            "versions": dict(versions),
        }
    )
    return hashlib.sha256(material.encode()).hexdigest(), material


class ResultCache:
    """A folder of evaluation results addressed by :func:`result_key`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def _damaged(self, path: Path, why: str) -> None:
        warnings.warn(ResultCacheWarning(f"result cache entry {path}: {why}; recomputing it"), stacklevel=3)

    def get(self, key: str) -> EvalResult | None:
        """The stored result of ``key``; None on a miss or (with a warning) a damaged entry."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._damaged(path, f"unreadable or truncated ({type(exc).__name__})")
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("result"), dict):
            self._damaged(path, "not a result cache entry")
            return None
        if payload.get("schema") != RESULT_CACHE_SCHEMA or payload.get("key") != key:
            self._damaged(
                path,
                f"schema {payload.get('schema')!r} / key {str(payload.get('key'))[:12]!r} "
                f"do not match schema {RESULT_CACHE_SCHEMA} / key {key[:12]}",
            )
            return None
        material = payload.get("key_material")
        if not isinstance(material, str) or hashlib.sha256(material.encode()).hexdigest() != key:
            self._damaged(path, "its key material does not hash to its key")
            return None
        digest = hashlib.sha256(canonical_json(payload["result"]).encode()).hexdigest()
        if payload.get("result_sha256") != digest:
            self._damaged(path, "the result fails its hash check")
            return None
        try:
            return EvalResult.from_json(payload["result"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._damaged(path, f"the result cannot be read ({type(exc).__name__}: {exc})")
            return None

    def put(self, key: str, material: str, result: EvalResult) -> Path:
        """Store ``result`` under ``key`` (atomically); returns the entry's path."""
        body = result.to_json()
        payload = {
            "schema": RESULT_CACHE_SCHEMA,
            "key": key,
            "key_material": material,
            "result_sha256": hashlib.sha256(canonical_json(body).encode()).hexdigest(),
            "result": body,
        }
        path = self.path(key)
        atomic_write_bytes(path, canonical_json(payload).encode())
        return path

    def get_or_compute(
        self, key: str, material: str, compute: Callable[[], EvalResult], *, recompute: bool = False
    ) -> tuple[EvalResult, bool]:
        """``(result, hit)``: the stored result, or ``compute()`` stored under ``key``.

        A lock per key (:func:`~pytest_robust.storage.cache_lock`) makes concurrent processes compute
        it once: the entry is read under the lock, so a process that waited for another's
        computation reads its result. ``recompute`` skips reading (the entry is rewritten from the
        fresh result).
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with cache_lock(path.with_suffix(".lock")):
            if not recompute:
                cached = self.get(key)
                if cached is not None:
                    return cached, True
            result = compute()
            self.put(key, material, result)
            return result, False
