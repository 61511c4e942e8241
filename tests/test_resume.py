"""Resumable training (a SIGKILLed run continues bit-identically) and cached benchmark checkpoints."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pytest_robust import checkpoints
from pytest_robust.cache import CheckpointCache, spec_key
from pytest_robust.checkpoints import RESUME_DIR, build_checkpoint, checkpoint_spec, training_data
from pytest_robust.data.synthetic import generate_synthetic
from pytest_robust.errors import ResumeStateError, RobustConfigError, StorageError
from pytest_robust.models import small_cnn
from pytest_robust.recipes import SMOKE
from pytest_robust.training import RESUME_FILE, Recipe, TrainConfig, seeded, train

EPOCHS = 5

#: Trains small_cnn (PGD-AT, flips, cosine lr: every piece of state) and saves the final weights.
#: argv: resume_dir ("-" for none), output file, "slow" to hang in the first forward after epoch 2.
WORKER = textwrap.dedent(
    f"""
    import json, sys, time
    from pathlib import Path
    import torch
    from safetensors.torch import save_file
    from pytest_robust.data.synthetic import generate_synthetic
    from pytest_robust.models import small_cnn
    from pytest_robust.training import TrainConfig, seeded, train

    torch.set_num_threads(1)
    resume_dir, out, slow = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "slow"
    data = generate_synthetic(96, size=16, seed=0, split="train")
    with seeded(0):
        net = small_cnn(2, width=8)
    hang = []

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net

        def forward(self, x):
            if hang:
                time.sleep(120)
            return self.inner(x)

    def on_epoch(stats):
        out.with_suffix(f".epoch{{stats.epoch}}").write_text("done")
        if slow and stats.epoch == 2:
            hang.append(True)

    config = TrainConfig(recipe="pgd-at", epochs={EPOCHS}, batch_size=32, lr=3e-3, lr_schedule="cosine",
                         augment=True, seed=3, at_eps=8 / 255, at_steps=2, at_step_size=4 / 255)
    model = Model()
    report = train(model, data, config, progress=False, on_epoch=on_epoch,
                   resume_dir=None if resume_dir == "-" else resume_dir)
    save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, str(out))
    out.with_suffix(".json").write_text(json.dumps(report.to_json()))
    """
)


def _run_worker(script: Path, resume_dir: str, out: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, str(script), resume_dir, str(out), "-"], check=True, timeout=120)
    report: dict[str, Any] = json.loads(out.with_suffix(".json").read_text())
    return report


def test_killed_training_resumes_bit_identically(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    resume, killed_out = tmp_path / "resume", tmp_path / "killed.safetensors"
    proc = subprocess.Popen([sys.executable, str(script), str(resume), str(killed_out), "slow"])
    try:
        deadline = time.monotonic() + 90
        while not killed_out.with_suffix(".epoch2").exists():
            assert proc.poll() is None, "the worker died before finishing epoch 2"
            assert time.monotonic() < deadline, "the worker did not finish epoch 2 in 90 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-epoch 3: its first forward hangs
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not killed_out.exists()
    with safe_open(str(resume / RESUME_FILE), framework="pt") as fh:
        saved = json.loads(fh.metadata()["state"])
    assert [e["epoch"] for e in saved["history"]] == [1, 2]

    resumed = _run_worker(script, str(resume), killed_out)
    assert resumed["resumed_from"] == 2
    assert killed_out.with_suffix(".epoch5").exists()
    straight_out = tmp_path / "straight.safetensors"
    straight = _run_worker(script, "-", straight_out)
    assert straight["resumed_from"] == 0

    a, b = load_file(str(killed_out)), load_file(str(straight_out))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming"
    for x, y in zip(resumed["epochs"], straight["epochs"], strict=True):
        assert (x["epoch"], x["loss"], x["accuracy"]) == (y["epoch"], y["loss"], y["accuracy"])


def _tiny_run(resume: Path, **overrides: Any) -> TrainConfig:
    config = TrainConfig(**{"epochs": 1, "batch_size": 32, "lr": 1e-3, **overrides})
    with seeded(0):
        model = small_cnn(2, width=4)
    train(
        model,
        generate_synthetic(32, size=16, seed=0, split="train"),
        config,
        progress=False,
        resume_dir=resume,
    )
    return config


def test_resume_state_of_another_config_is_refused(tmp_path: Path) -> None:
    _tiny_run(tmp_path)
    assert (tmp_path / RESUME_FILE).is_file()
    with pytest.raises(RobustConfigError, match=r"another training config.*delete"):
        _tiny_run(tmp_path, lr=2e-3)


@pytest.mark.parametrize(
    "payload", [b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{"], ids=["garbage", "truncated"]
)
def test_an_unreadable_resume_state_is_a_typed_error(tmp_path: Path, payload: bytes) -> None:
    (tmp_path / RESUME_FILE).write_bytes(payload)
    with pytest.raises(ResumeStateError, match=r"unreadable.*delete"):
        _tiny_run(tmp_path)


@pytest.fixture(scope="module")
def smoke_data() -> Any:
    return generate_synthetic(80, size=32, seed=0, split="train")


def test_build_checkpoint_miss_then_hit(tmp_path: Path, smoke_data: Any) -> None:
    first = build_checkpoint(
        "small_cnn", "standard", "smoke", smoke_data, seed=0, cache_dir=tmp_path, device="cpu", progress=False
    )
    second = build_checkpoint(
        "small_cnn", "standard", SMOKE, smoke_data, seed=0, cache_dir=tmp_path, device="cpu", progress=False
    )
    assert (first.hit, second.hit) == (False, True)
    assert first.key == second.key
    second_state = second.model.state_dict()
    for name, x in first.model.state_dict().items():
        assert torch.equal(x, second_state[name]), name
    assert not second.model.training
    meta = second.meta
    assert meta["spec"]["data"]["n"] == SMOKE.train_subset
    assert meta["train"]["config"]["profile"] == "smoke"
    assert [e["epoch"] for e in meta["train"]["epochs"]] == [1]
    assert set(meta["train"]["versions"]) >= {"torch", "timm"}
    assert not (CheckpointCache(tmp_path).entry(first.key) / RESUME_DIR).exists()
    other_seed = build_checkpoint(
        "small_cnn", "standard", SMOKE, smoke_data, seed=1, cache_dir=tmp_path, device="cpu", progress=False
    )
    assert not other_seed.hit
    assert other_seed.key != first.key


def test_pgd_at_fine_tunes_the_cached_standard_model(
    tmp_path: Path, smoke_data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    resume_dirs: list[Path] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        resume_dirs.append(kwargs["resume_dir"])
        return train(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "train", spy)
    robust = build_checkpoint(
        "small_cnn", "pgd-at", SMOKE, smoke_data, seed=0, cache_dir=tmp_path, device="cpu", progress=False
    )
    data = training_data(smoke_data, SMOKE, seed=0)
    standard_key = spec_key(checkpoint_spec("small_cnn", "standard", SMOKE, data, seed=0))
    assert robust.meta["spec"]["init"] == standard_key
    cache = CheckpointCache(tmp_path)
    assert (cache.entry(standard_key) / "model.safetensors").is_file()
    assert resume_dirs == [cache.entry(standard_key) / RESUME_DIR, cache.entry(robust.key) / RESUME_DIR]
    again = build_checkpoint(
        "small_cnn",
        Recipe.PGD_AT,
        SMOKE,
        smoke_data,
        seed=0,
        cache_dir=tmp_path,
        device="cpu",
        progress=False,
    )
    assert again.hit
    assert len(resume_dirs) == 2


def test_build_checkpoint_checks_the_image_size(tmp_path: Path) -> None:
    with pytest.raises(RobustConfigError, match=r"32x32 images.*size=32"):
        build_checkpoint(
            "small_cnn",
            "standard",
            SMOKE,
            generate_synthetic(8, size=16, seed=0),
            seed=0,
            cache_dir=tmp_path,
            device="cpu",
        )


def test_a_damaged_resume_state_in_the_cache_is_discarded_not_fatal(tmp_path: Path, smoke_data: Any) -> None:
    """A killed run left a resume state that is now garbage: the next run trains from the start."""
    args = ("small_cnn", "standard", SMOKE, smoke_data)
    kwargs: dict[str, Any] = {"seed": 0, "cache_dir": tmp_path, "device": "cpu", "progress": False}
    reference = build_checkpoint(*args, **{**kwargs, "cache_dir": tmp_path / "reference"})
    data = training_data(smoke_data, SMOKE, seed=0)
    resume = (
        CheckpointCache(tmp_path).entry(
            spec_key(checkpoint_spec("small_cnn", "standard", SMOKE, data, seed=0))
        )
        / RESUME_DIR
    )
    resume.mkdir(parents=True)
    (resume / RESUME_FILE).write_bytes(b"garbage")
    built = build_checkpoint(*args, **kwargs)
    assert not built.hit
    assert not resume.exists()
    for name, x in reference.model.state_dict().items():  # trained from the start: the same weights
        assert torch.equal(x, built.model.state_dict()[name]), name


def test_a_full_disk_stops_training_after_the_epoch_with_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_robust import training

    def full(path: Path, payload: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training, "atomic_write_bytes", full)
    with pytest.raises(StorageError, match=r"resume state .* after epoch 1: No space left on device"):
        _tiny_run(tmp_path, epochs=2)
