"""The caches' atomic writes and locks (``pytest_robust.storage``), for a cache on a shared filesystem.

Two real processes race for one entry of the checkpoint cache and of the result cache under each lock
kind (``os``: fcntl/flock; ``soft``: lock files): the entry is computed once and both get the same
bytes. The soft lock: a live holder (heartbeat) keeps a waiter waiting past the stale time; a dead
holder's lock file gives the error that names it, and is never deleted for the user.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_robust import storage
from pytest_robust.errors import RobustConfigError, StaleLockError
from pytest_robust.storage import LockSettings, SoftLock, atomic_write_bytes, cache_lock, temp_prefix
from tests.inner import PRELUDE, smoke_args

# --- settings ---------------------------------------------------------------------------------------


def test_lock_settings_come_from_the_environment() -> None:
    assert LockSettings.from_env({}) == LockSettings(kind="os", stale_s=storage.DEFAULT_STALE_S)
    assert LockSettings.from_env({"PYTEST_ROBUST_CACHE_LOCK": ""}).kind == "os"
    soft = LockSettings.from_env(
        {"PYTEST_ROBUST_CACHE_LOCK": " Soft ", "PYTEST_ROBUST_CACHE_LOCK_STALE": "120"}
    )
    assert soft == LockSettings(kind="soft", stale_s=120.0)
    assert soft.heartbeat_s == 12.0
    assert LockSettings(kind="soft", stale_s=3600).heartbeat_s == storage.MAX_HEARTBEAT_S


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PYTEST_ROBUST_CACHE_LOCK": "nfs"}, ["PYTEST_ROBUST_CACHE_LOCK='nfs'", "'os'", "'soft'"]),
        ({"PYTEST_ROBUST_CACHE_LOCK_STALE": "soon"}, ["PYTEST_ROBUST_CACHE_LOCK_STALE='soon'", "seconds"]),
        ({"PYTEST_ROBUST_CACHE_LOCK_STALE": "0"}, ["PYTEST_ROBUST_CACHE_LOCK_STALE=0.0", "positive"]),
        ({"PYTEST_ROBUST_CACHE_LOCK_STALE": "inf"}, ["PYTEST_ROBUST_CACHE_LOCK_STALE=inf", "positive"]),
    ],
    ids=["kind", "not-a-number", "zero", "inf"],
)
def test_bad_lock_settings_name_the_variable(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(RobustConfigError) as info:
        LockSettings.from_env(env)
    for name in names:
        assert name in str(info.value)


def test_a_bad_lock_setting_is_a_usage_error_at_start(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    monkeypatch.setenv("PYTEST_ROBUST_CACHE_LOCK", "flock")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*PYTEST_ROBUST_CACHE_LOCK='flock': unknown cache lock*'soft'*"])


# --- atomic writes ----------------------------------------------------------------------------------


def test_temporary_names_carry_the_host_and_the_process() -> None:
    prefix = temp_prefix("model.safetensors")
    assert prefix.startswith(".model.safetensors.")
    assert f".{os.getpid()}." in prefix
    host = socket.gethostname()
    assert all(part in prefix for part in host.split(".") if part.replace("-", "").isalnum())


def test_an_atomic_write_publishes_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "entry.json"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["entry.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "entry.json"
    atomic_write_bytes(target, b"old")

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        storage.atomic_replace(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_writing_and_the_device_mapping_import_no_torch(tmp_path: Path) -> None:
    """The report and ``pytest-robust verify`` write through this module: no torch for that (they
    imported it through ``cache.py``); the device mapping is torch-free too."""
    code = (
        "import sys; from pathlib import Path; "
        "from pytest_robust.storage import atomic_write_bytes, cache_lock; "
        "import pytest_robust.devices, pytest_robust.report.run; "
        "atomic_write_bytes(Path(sys.argv[1]), b'x'); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "f")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    assert (tmp_path / "f").read_bytes() == b"x"


# --- the soft lock ----------------------------------------------------------------------------------


def test_a_soft_lock_is_a_file_with_its_holder_and_is_removed_on_release(tmp_path: Path) -> None:
    path = tmp_path / "entry.lock"
    soft = tmp_path / "entry.lock.soft"
    with cache_lock(path, LockSettings(kind="soft")):
        record = json.loads(soft.read_text())
        assert record["pid"] == os.getpid()
        assert record["host"] == socket.gethostname()
    assert not soft.exists()
    with pytest.raises(KeyError), cache_lock(path, LockSettings(kind="soft")):  # also on an exception
        raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_os_locks_leftover_file_does_not_block_a_soft_lock(tmp_path: Path) -> None:
    """A cache used with os locks keeps their files; switching it to soft locks must not wait on them."""
    path = tmp_path / "entry.lock"
    with cache_lock(path, LockSettings(kind="os")):
        pass
    assert path.exists()
    start = time.monotonic()
    with cache_lock(path, LockSettings(kind="soft", stale_s=30)):
        pass
    assert time.monotonic() - start < 5


def test_a_live_holder_keeps_a_waiter_waiting_past_the_stale_time(tmp_path: Path) -> None:
    """The holder's heartbeat refreshes its lock file: a waiter waits as long as the holder works."""
    path = tmp_path / "entry.lock"
    settings = LockSettings(kind="soft", stale_s=0.4)  # heartbeat every 0.04 s
    order: list[str] = []
    taken = threading.Event()

    def hold() -> None:
        with cache_lock(path, settings):
            taken.set()
            time.sleep(1.5)  # well past the stale time
            order.append("holder done")

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    with cache_lock(path, settings):
        order.append("waiter in")
    holder.join()
    assert order == ["holder done", "waiter in"]


def test_a_dead_holders_lock_file_gives_an_error_naming_it_and_is_kept(tmp_path: Path) -> None:
    """A holder killed on another machine left its lock file: the waiter stops after the stale time
    with the file's path, the holder it records, and what to do; it never deletes the file itself."""
    path = tmp_path / "ab" / "abcdef.lock.soft"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "gpu-node-7", "pid": 4242, "since": "2024-05-01T10:00:00+0000"}))
    start = time.monotonic()
    with pytest.raises(StaleLockError) as info:
        SoftLock(path, stale_s=0.3).acquire()
    assert time.monotonic() - start >= 0.3
    message = str(info.value)
    assert str(path) in message
    assert "pid 4242 on host gpu-node-7" in message
    assert "delete that file" in message
    assert "PYTEST_ROBUST_CACHE_LOCK_STALE" in message
    assert path.exists()
    assert isinstance(info.value, TimeoutError)  # and a RobustError: the plugin's short report
    path.unlink()  # what the message says to do
    with SoftLock(path, stale_s=0.3):
        pass


def test_a_released_lock_file_that_is_no_longer_ours_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "entry.lock"
    lock = SoftLock(path, stale_s=5)
    lock.acquire()
    path.unlink()  # someone deleted it by hand, and another process took the lock since
    path.write_text('{"host": "other", "pid": 1, "since": "now"}')
    lock.release()
    assert path.read_text().startswith('{"host": "other"')


# --- two processes, one entry -----------------------------------------------------------------------


def _barrier(folder: Path, parties: int = 2) -> None:
    """Wait until ``parties`` processes have arrived (one file each), so the race is a real one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{socket.gethostname()}.{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("the other process never arrived")
        time.sleep(0.01)


def _race_checkpoint(root: str, log: str) -> tuple[bool, str, str]:
    import torch
    from torch import nn

    from pytest_robust.cache import WEIGHTS, CheckpointCache, file_sha256

    def make() -> nn.Module:
        return nn.Linear(3, 2)

    def fit(model: nn.Module) -> dict[str, Any]:
        with open(log, "a") as fh:
            fh.write(f"trained by {os.getpid()}\n")
        time.sleep(1.0)  # the other process arrives at the lock meanwhile
        with torch.no_grad():
            model.weight.copy_(torch.randn(2, 3))  # a different model per training: one must win
        return {}

    _barrier(Path(root) / "barrier")
    got = CheckpointCache(root).get_or_build({"name": "race", "seed": 0}, make, fit)
    weights = hashlib.sha256(
        b"".join(t.numpy().tobytes() for _, t in sorted(got.model.state_dict().items()))
    ).hexdigest()
    on_disk = file_sha256(CheckpointCache(root).entry(got.key) / WEIGHTS)
    return got.hit, weights, on_disk + got.meta["weights_sha256"]


def _race_result(folder: str, log: str, body: str) -> tuple[bool, str, str]:
    from pytest_robust.cache import canonical_json
    from pytest_robust.evaluate import EvalResult
    from pytest_robust.result_cache import ResultCache

    def compute() -> EvalResult:
        with open(log, "a") as fh:
            fh.write(f"computed by {os.getpid()}\n")
        time.sleep(1.0)
        payload = json.loads(body)
        payload["timings"] = {"total_s": float(os.getpid())}  # each computation's own bytes
        return EvalResult.from_json(payload)

    _barrier(Path(folder) / "barrier")
    cache = ResultCache(folder)
    material = "the key material"
    key = hashlib.sha256(material.encode()).hexdigest()
    result, hit = cache.get_or_compute(key, material, compute)
    return hit, canonical_json(result.to_json()), hashlib.sha256(cache.path(key).read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["os", "soft"])
def test_two_processes_racing_for_one_checkpoint_train_once_and_load_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("PYTEST_ROBUST_CACHE_LOCK", kind)  # the spawned processes inherit it
    log = tmp_path / "log.txt"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        out = pool.starmap(_race_checkpoint, [(str(tmp_path / "c"), str(log))] * 2)
    assert len(log.read_text().splitlines()) == 1
    assert sorted(hit for hit, _, _ in out) == [False, True]
    assert out[0][1:] == out[1][1:]  # the same weights in memory, the same file on disk
    leftovers = [p.name for p in (tmp_path / "c" / "checkpoints").rglob("*") if p.is_file()]
    assert sorted(leftovers) == sorted([".lock", "meta.json", "model.safetensors"][kind == "soft" :])


@pytest.mark.parametrize("kind", ["os", "soft"])
def test_two_processes_racing_for_one_result_compute_it_once_and_read_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, trained_tiny: Any, blobs: Any
) -> None:
    from pytest_robust.attacks import FGSM
    from pytest_robust.evaluate import evaluate
    from pytest_robust.soundness import SoundnessConfig
    from pytest_robust.threat import Norm, ThreatModel

    threat = ThreatModel(norm=Norm.LINF, eps=2 / 255)
    body = json.dumps(
        evaluate(
            trained_tiny, blobs, FGSM(), threat, device="cpu", soundness=SoundnessConfig(enabled=False)
        ).to_json()
    )
    monkeypatch.setenv("PYTEST_ROBUST_CACHE_LOCK", kind)
    log = tmp_path / "log.txt"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        out = pool.starmap(_race_result, [(str(tmp_path / "r"), str(log), body)] * 2)
    assert len(log.read_text().splitlines()) == 1
    assert sorted(hit for hit, _, _ in out) == [False, True]
    assert out[0][1:] == out[1][1:]


# --- several CI jobs, one shared cache (the README's recipe) ------------------------------------------

JOBS_CONFTEST = PRELUDE + textwrap.dedent(
    """

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(64, 1)

    @pytest.fixture(scope="session")
    def model():
        return tiny_model(256, 100)
    """
)

JOBS_TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("eps", [1 / 255, 2 / 255, 3 / 255, 4 / 255], ids=["e1", "e2", "e3", "e4"])
    def test_gate(assert_robust, model, eps):
        assert_robust(model, "fgsm", eps=eps, min_acc=0.0)
    """
)


def _cache_counts(out: str) -> tuple[int, int]:
    match = re.search(r"result cache: (\d+) hit, (\d+) computed", out)
    assert match is not None, out
    return int(match.group(1)), int(match.group(2))


def test_ci_jobs_split_the_suite_and_share_one_cache(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs at once on one cache folder (soft locks), selecting with -k and with --deselect, one
    test in both: every evaluation is computed once between them; a last job of the whole suite
    computes nothing and writes the one report of all of it."""
    monkeypatch.delenv("PYTEST_ROBUST_RESULT_CACHE_DIR")  # results under the shared --robust-cache-dir
    monkeypatch.setenv("PYTEST_ROBUST_CACHE_LOCK", "soft")
    pytester.makeconftest(JOBS_CONFTEST)
    pytester.makepyfile(test_gates=JOBS_TESTS)
    base = [sys.executable, "-m", "pytest", *smoke_args(pytester), "--robust-soundness=warn"]
    jobs = [
        pytester.popen(
            [*base, "-k", "e1 or e2 or e3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        ),
        pytester.popen(
            [
                *base,
                "--deselect",
                "test_gates.py::test_gate[e1]",
                "--deselect",
                "test_gates.py::test_gate[e2]",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        ),
    ]
    outs = [job.communicate(timeout=600)[0].decode() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outs
    counts = [_cache_counts(out) for out in outs]
    assert sum(hit for hit, _ in counts) == 1  # e3: computed by one job, read by the other
    assert sum(computed for _, computed in counts) == 4
    assert "cache lock=soft (lock files)" in outs[0]
    final = pytester.runpytest_subprocess(
        *smoke_args(pytester), "--robust-soundness=warn", "--robust-report=R"
    )
    final.assert_outcomes(passed=4)
    final.stdout.fnmatch_lines(["result cache: 4 hit, 0 computed, *"])
    rows = json.loads((pytester.path / "R" / "latest" / "results.json").read_text())["rows"]
    assert len(rows) == 4
    assert not list((pytester.path / "cache").rglob("*.soft"))  # soft locks leave nothing behind
