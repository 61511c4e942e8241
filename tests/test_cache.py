"""The content-addressed checkpoint cache: hit, miss, corruption, concurrent builders."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust import cache as cache_module
from pytest_robust.cache import META, WEIGHTS, CheckpointCache, spec_key
from pytest_robust.errors import StorageError

SPEC: dict[str, Any] = {"name": "unit", "arch": "linear", "seed": 0}


def make() -> nn.Module:
    return nn.Linear(3, 2)


def fitter(calls: list[int]) -> Any:
    def fit(model: nn.Module) -> dict[str, Any]:
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return {"epochs": 1}

    return fit


def test_miss_then_hit(tmp_path: Path) -> None:
    cache, calls = CheckpointCache(tmp_path), []
    first = cache.get_or_build(SPEC, make, fitter(calls))
    second = cache.get_or_build(SPEC, make, fitter(calls))
    assert (first.hit, second.hit) == (False, True)
    assert calls == [1]
    assert torch.equal(second.model.weight, torch.full((2, 3), 0.5))
    meta = json.loads((cache.entry(first.key) / META).read_text())
    assert meta["spec"] == SPEC
    assert meta["train"] == {"epochs": 1}
    assert "weights_sha256" in meta


def test_key_depends_on_every_spec_field() -> None:
    assert spec_key(SPEC) == spec_key(dict(reversed(list(SPEC.items()))))
    assert spec_key(SPEC) != spec_key({**SPEC, "seed": 1})


def test_force_retrains(tmp_path: Path) -> None:
    cache, calls = CheckpointCache(tmp_path), []
    cache.get_or_build(SPEC, make, fitter(calls))
    again = cache.get_or_build(SPEC, make, fitter(calls), force=True)
    assert not again.hit
    assert calls == [1, 1]


def test_corrupted_entry_is_rebuilt_not_loaded(tmp_path: Path) -> None:
    cache, calls = CheckpointCache(tmp_path), []
    built = cache.get_or_build(SPEC, make, fitter(calls))
    weights = cache.entry(built.key) / WEIGHTS
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    rebuilt = cache.get_or_build(SPEC, make, fitter(calls))
    assert not rebuilt.hit
    assert calls == [1, 1]
    assert cache.get_or_build(SPEC, make, fitter(calls)).hit


def test_unreadable_metadata_is_rebuilt(tmp_path: Path) -> None:
    cache, calls = CheckpointCache(tmp_path), []
    built = cache.get_or_build(SPEC, make, fitter(calls))
    (cache.entry(built.key) / META).write_text("{not json")
    assert not cache.get_or_build(SPEC, make, fitter(calls)).hit


def _race(root: str, log: str) -> bool:
    import time

    def fit(model: nn.Module) -> dict[str, Any]:
        with open(log, "a") as fh:
            fh.write("trained\n")
        time.sleep(1.0)
        return {}

    return CheckpointCache(root).get_or_build(SPEC, make, fit).hit


def test_two_processes_racing_for_one_key_train_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        hits = pool.starmap(_race, [(str(tmp_path / "c"), str(log))] * 2)
    assert log.read_text().splitlines() == ["trained"]
    assert sorted(hits) == [False, True]


@pytest.mark.parametrize(
    "payload",
    [
        b"garbage, not a safetensors file",
        pickle.dumps({"weight": [[0.5] * 3] * 2}),  # a pickle is never unpickled: rebuilt
        b"\x08\x00\x00\x00\x00\x00\x00\x00{",  # a truncated header
    ],
    ids=["garbage", "pickle", "truncated"],
)
def test_unreadable_weights_whose_hash_matches_are_rebuilt(tmp_path: Path, payload: bytes) -> None:
    """The metadata's hash was rewritten to match: the content itself must still load, else rebuild."""
    cache, calls = CheckpointCache(tmp_path), []
    built = cache.get_or_build(SPEC, make, fitter(calls))
    folder = cache.entry(built.key)
    (folder / WEIGHTS).write_bytes(payload)
    meta = json.loads((folder / META).read_text())
    meta["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (folder / META).write_text(json.dumps(meta))
    rebuilt = cache.get_or_build(SPEC, make, fitter(calls))
    assert not rebuilt.hit
    assert calls == [1, 1]
    assert torch.equal(rebuilt.model.weight, torch.full((2, 3), 0.5))
    assert cache.get_or_build(SPEC, make, fitter(calls)).hit


def test_metadata_that_is_not_an_object_is_rebuilt(tmp_path: Path) -> None:
    cache, calls = CheckpointCache(tmp_path), []
    built = cache.get_or_build(SPEC, make, fitter(calls))
    (cache.entry(built.key) / META).write_text("[1, 2]")
    assert not cache.get_or_build(SPEC, make, fitter(calls)).hit


def test_a_full_disk_is_a_storage_error_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, payload: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module, "atomic_write_bytes", full)
    cache = CheckpointCache(tmp_path)
    with pytest.raises(
        StorageError, match=r"cannot write checkpoint .*No space left on device.*--robust-cache-dir"
    ):
        cache.get_or_build(SPEC, make, fitter([]))


def test_a_checkpoint_record_says_how_the_model_was_trained() -> None:
    """The record the report's setup reads: training images (the subset trained on), their shape,
    epochs, the PGD-AT budget (None for a standard model) and the model it was fine-tuned from."""
    from pytest_robust.checkpoints import checkpoint_spec, training_data
    from pytest_robust.data.dataset import ImageDataset
    from pytest_robust.recipes import SMOKE

    data = ImageDataset(
        images=torch.rand(80, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
        labels=torch.arange(80) % 2,
        classes=("benign", "malignant"),
        name="d",
        synthetic=True,
    )
    trained_on = training_data(data, SMOKE, seed=0)  # the smoke profile's 64 of the 80 images
    records = {}
    for recipe in ("standard", "pgd-at"):
        spec = checkpoint_spec("small_cnn", recipe, SMOKE, trained_on, seed=0)
        meta = {"spec": spec, "train": {"seconds": 1.0}, "weights_sha256": "a" * 64}
        records[recipe] = cache_module.CachedModel(
            model=nn.Identity(), key=spec_key(spec), meta=meta, hit=True
        )
    standard, adversarial = records["standard"].record(), records["pgd-at"].record()
    assert (standard["train_images"], standard["train_shape"], standard["epochs"]) == (64, [3, 32, 32], 1)
    assert [standard[k] for k in ("at_eps", "at_step_size", "at_steps", "init")] == [None] * 4
    assert (adversarial["train_images"], adversarial["epochs"], adversarial["at_steps"]) == (64, 1, 2)
    assert adversarial["at_eps"] == pytest.approx(2 / 255)
    assert adversarial["at_step_size"] == pytest.approx(1 / 255)
    assert adversarial["init"] == records["standard"].key  # fine-tuned from the standard model
    assert json.loads(json.dumps(adversarial)) == adversarial  # plain JSON
