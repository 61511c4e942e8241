"""``pytest-robust verify`` / ``export`` and the evidence bundle (issue #10 items 2 and 3)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pytest_robust.config import PROFILES
from pytest_robust.errors import RobustConfigError
from pytest_robust.evidence import check_sums, export, sums_text, unpack
from pytest_robust.verify import (
    CONSISTENT,
    DIFFERS,
    IDENTICAL,
    NOT_RERUN,
    compare,
    rerun_command,
)
from tests.inner import smoke_args

# --- comparing two documents (pure) -------------------------------------------------------------------


def detail(
    *,
    adv: list[int],
    weights: str = "w1",
    device: str = "cpu",
    n: int = 8,
    test: str = "t.py::a",
    verdict: str = "pass",
    clean_acc: float | None = None,
) -> dict[str, Any]:
    labels = [i % 2 for i in range(n)]
    clean = list(labels)
    robust = [a == y for a, y in zip(adv, labels, strict=True)]
    return {
        "context": {"test": test, "model": "m", "checkpoint": {"weights_sha256": weights}},
        "verdict": {"status": verdict},
        "evaluation": {
            "labels": labels,
            "clean_pred": clean,
            "adv_pred": adv,
            "clean_correct": [True] * n,
            "robust_correct": robust,
            "sample_ids": [f"s{i}" for i in range(n)],
            "device": device,
            "n": n,
            "clean_acc": 1.0 if clean_acc is None else clean_acc,
            "robust_acc": sum(robust) / n,
            "attack_description": "FGSM",
            "threat": {"eps_str": "4/255"},
            "model": {"fingerprint": weights},
        },
    }


BASE = [0, 1, 0, 1, 1, 0, 0, 1]  # samples 4 and 5 broken


def doc(*details: dict[str, Any]) -> dict[str, Any]:
    return {"details": list(details)}


def test_the_same_outcomes_are_identical() -> None:
    [check] = compare(doc(detail(adv=BASE)), doc(detail(adv=BASE)))
    assert (check.status, check.mode, check.differing_samples) == (IDENTICAL, "exact", 0)


def test_one_other_sample_differs_and_is_named() -> None:
    other = list(BASE)
    other[2] = 1
    [check] = compare(doc(detail(adv=BASE)), doc(detail(adv=other)))
    assert check.status == DIFFERS
    assert check.differing_ids == ("s2",)
    assert "1 of 8 samples" in check.reason
    assert "robust_acc 0.7500 recorded vs 0.6250 rerun" in check.reason


def test_an_edited_number_is_caught_by_its_own_samples() -> None:
    edited = detail(adv=BASE)
    edited["evaluation"]["robust_acc"] = 0.99
    [check] = compare(doc(edited), doc(detail(adv=BASE)))
    assert check.status == DIFFERS
    assert "edited" in check.reason


def test_another_verdict_differs() -> None:
    [check] = compare(doc(detail(adv=BASE)), doc(detail(adv=BASE, verdict="fail")))
    assert check.status == DIFFERS
    assert "verdict pass recorded vs fail rerun" in check.reason


def test_another_device_type_allows_the_documented_share() -> None:
    n = 200
    adv = [i % 2 for i in range(n)]
    moved = list(adv)
    moved[0], moved[1] = 1, 0  # 2 of 200 = 1%
    old = doc(detail(adv=adv, n=n, device="cuda:0"))
    [same_kind] = compare(old, doc(detail(adv=moved, n=n, device="cuda:1")))
    assert same_kind.status == DIFFERS  # the device index does not matter, the kind does: exact
    [other_kind] = compare(old, doc(detail(adv=moved, n=n, device="cpu")))
    assert other_kind.status == CONSISTENT
    assert other_kind.tolerance == 2
    [strict] = compare(old, doc(detail(adv=moved, n=n, device="cpu")), device_tolerance=0.0)
    assert strict.status == DIFFERS


def test_retrained_weights_are_compared_statistically() -> None:
    n = 200
    old = doc(detail(adv=[0] * n, n=n))  # robust 0.50 (the benign half)
    close = [1 if i % 2 and i < 20 else 0 for i in range(n)]  # robust 0.55
    [check] = compare(old, doc(detail(adv=close, n=n, weights="w2")))
    assert (check.status, check.mode) == (CONSISTENT, "statistical")
    assert "no seed-to-seed spread known" in check.reason
    far = [1 if i % 2 and i < 60 else 0 for i in range(n)]  # robust 0.65
    [check] = compare(old, doc(detail(adv=far, n=n, weights="w2")))
    assert (check.status, check.mode) == (DIFFERS, "statistical")
    assert "robust_acc" in check.reason
    [spread] = compare(old, doc(detail(adv=far, n=n, weights="w2")), seed_spread=0.1)
    assert spread.status == CONSISTENT
    assert "seed-to-seed spread 0.100" in spread.reason
    [exact] = compare(old, doc(detail(adv=close, n=n, weights="w2")), exact_only=True)
    assert exact.status == DIFFERS
    assert "--exact" in exact.reason


def test_an_evaluation_missing_from_the_rerun_is_not_rerun() -> None:
    a, b = detail(adv=BASE, test="t.py::a"), detail(adv=BASE, test="t.py::b")
    checks = compare(doc(a, b, copy.deepcopy(b)), doc(a, b))
    assert [c.status for c in checks] == [IDENTICAL, IDENTICAL, NOT_RERUN]
    assert [(c.test, c.index) for c in checks] == [("t.py::a", 0), ("t.py::b", 0), ("t.py::b", 1)]


def test_the_rerun_command_bypasses_results_and_never_updates_baselines(tmp_path: Path) -> None:
    cmd = rerun_command(
        ["pytest", "suites/", "--robust-report", "--robust-baseline-update", "--robust-retrain", "-x"],
        report=tmp_path / "r",
        cache=tmp_path / "c",
        baseline=tmp_path / "b",
    )
    assert cmd[:3] == [sys.executable, "-m", "pytest"]
    assert "--robust-baseline-update" not in cmd
    assert "--robust-retrain" not in cmd
    assert cmd[3:] == [
        "suites/",
        "--robust-report",
        "-x",
        f"--robust-report={tmp_path / 'r'}",
        f"--robust-cache-dir={tmp_path / 'c'}",
        "--robust-recompute",
        f"--robust-baseline={tmp_path / 'b'}",
        "-p",
        "no:cacheprovider",
    ]


# --- the evidence files (pure) ------------------------------------------------------------------------


def test_sums_name_changed_missing_and_unlisted_files(tmp_path: Path) -> None:
    files = {"a.json": b"{}", "b.txt": b"x"}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / "SHA256SUMS").write_bytes(sums_text(files))
    assert check_sums(tmp_path).intact
    (tmp_path / "a.json").write_bytes(b"{ }")
    (tmp_path / "b.txt").unlink()
    (tmp_path / "c.txt").write_bytes(b"new")
    check = check_sums(tmp_path)
    assert (check.changed, check.missing, check.unlisted, check.intact) == (
        ("a.json",),
        ("b.txt",),
        ("c.txt",),
        False,
    )
    (tmp_path / "SHA256SUMS").write_text("not a sums line\n")
    assert "malformed" in str(check_sums(tmp_path).problem)
    (tmp_path / "SHA256SUMS").unlink()
    assert not check_sums(tmp_path).intact


def test_sums_kept_apart_catch_a_folder_rewritten_with_its_sums(tmp_path: Path) -> None:
    """SHA256SUMS beside the files catches accidents; its own hash kept elsewhere catches tampering."""
    files = {"results.json": b'{"robust_acc": 0.2}\n'}
    (tmp_path / "results.json").write_bytes(files["results.json"])
    (tmp_path / "SHA256SUMS").write_bytes(sums_text(files))
    recorded = hashlib.sha256((tmp_path / "SHA256SUMS").read_bytes()).hexdigest()
    assert check_sums(tmp_path, expected=recorded).intact
    assert check_sums(tmp_path, expected=recorded.upper()).intact
    forged = {"results.json": b'{"robust_acc": 0.9}\n'}
    (tmp_path / "results.json").write_bytes(forged["results.json"])
    (tmp_path / "SHA256SUMS").write_bytes(sums_text(forged))
    assert check_sums(tmp_path).intact  # the list alone cannot tell
    check = check_sums(tmp_path, expected=recorded)
    assert not check.intact
    assert "rewritten after the run" in str(check.problem)


def test_a_malformed_sums_hash_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("verify", tmp_path, "--sums-sha256", "xyz")
    assert done.returncode == 3
    assert "64 hexadecimal digits" in done.stderr


def test_sums_text_is_what_sha256sum_checks(tmp_path: Path) -> None:
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum on this machine")
    files = {"results.json": b'{"a": 1}\n', "report.html": b"<html></html>"}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    (tmp_path / "SHA256SUMS").write_bytes(sums_text(files))
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_bundle_with_a_foreign_member_is_not_extracted(tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("pytest-robust-bundle.json", "{}")
        zf.writestr("run/../../evil.txt", "x")
    with pytest.raises(RobustConfigError, match="unexpected member"):
        unpack(bundle, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_export_never_overwrites_a_file_that_is_not_a_bundle(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"manifest": {"checkpoints": []}}))
    mine = tmp_path / "mine.zip"
    mine.write_bytes(b"my own file")
    with pytest.raises(RobustConfigError, match="not overwriting"):
        export(run, mine, tmp_path / "cache")
    assert mine.read_bytes() == b"my own file"


# --- through a real run (pytester, subprocesses) ---------------------------------------------------

TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("eps", [2 / 255, 4 / 255])
    def test_gate(assert_robust, model, fgsm, eps):
        assert_robust(model, fgsm, eps=eps, min_acc=0.0)
    """
)


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_robust", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture
def recorded(pytester: pytest.Pytester) -> Path:
    """A recorded run (smoke profile, the quick-start CNN, two FGSM gates) in its own checkpoint cache."""
    pytester.makepyfile(test_gates=TESTS)
    result = pytester.runpytest_subprocess(*smoke_args(pytester), "--robust-report=R")
    result.assert_outcomes(passed=2)
    return (pytester.path / "R" / "latest").resolve()


@pytest.mark.slow
def test_a_run_folder_holds_its_evidence(recorded: Path) -> None:
    names = {p.name for p in recorded.iterdir()}
    assert {"command.txt", "config.json", "environment.txt", "checkpoints.json", "SHA256SUMS"} <= names
    assert check_sums(recorded).intact
    assert set(check_sums(recorded).ok) == names - {"SHA256SUMS"}
    assert "--robust-report=R" in (recorded / "command.txt").read_text()
    assert "torch==" in (recorded / "environment.txt").read_text()
    [ckpt] = json.loads((recorded / "checkpoints.json").read_text())
    assert ckpt["model"] == "small_cnn standard"
    assert len(ckpt["weights_sha256"]) == 64
    config = json.loads((recorded / "config.json").read_text())
    assert config["options"]["robust_profile"] == "smoke"
    assert config["config"]["n"] == PROFILES["smoke"].n_eval == 32


@pytest.mark.slow
def test_verify_an_untouched_run(recorded: Path) -> None:
    done = cli("verify", recorded)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout
    assert "2 identical" in done.stdout
    out = json.loads((recorded / "verification" / "verification.json").read_text())
    assert out["status"] == "verified"
    assert out["counts"]["identical"] == 2
    assert [c["status"] for c in out["checkpoints"]] == ["recorded"]
    assert "VERIFIED" in (recorded / "verification" / "verification.html").read_text()
    assert not list((recorded / "verification").glob("rerun-*/cache"))  # the scratch cache is removed


@pytest.mark.slow
def test_verify_names_an_edited_result(recorded: Path) -> None:
    doc = json.loads((recorded / "results.json").read_text())
    doc["details"][1]["evaluation"]["robust_acc"] = 0.5
    (recorded / "results.json").write_text(json.dumps(doc))
    done = cli("verify", recorded)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIFFERS" in done.stdout
    assert "changed ['results.json']" in done.stdout
    assert "test_gate[0.01568627450980392] #0" in done.stdout
    assert "edited" in done.stdout


@pytest.mark.slow
def test_verify_names_an_altered_weight_file(recorded: Path, pytester: pytest.Pytester) -> None:
    [weights] = (pytester.path / "cache" / "checkpoints").rglob("model.safetensors")
    body = bytearray(weights.read_bytes())
    body[-1] ^= 0xFF
    weights.write_bytes(bytes(body))
    done = cli("verify", recorded, env={"PYTEST_ROBUST_CACHE_DIR": str(pytester.path / "empty")})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "checkpoint small_cnn standard" in done.stdout
    assert ": altered" in done.stdout


@pytest.mark.slow
def test_export_then_verify_the_bundle_in_a_fresh_cache(recorded: Path, pytester: pytest.Pytester) -> None:
    bundle = pytester.path / "run.zip"
    done = cli("export", recorded, bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(pytester.path / "cache")  # the machine the run was made on is gone
    fresh = pytester.path / "fresh-cache"
    done = cli("verify", bundle, env={"PYTEST_ROBUST_CACHE_DIR": str(fresh)})
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads((pytester.path / "run-verification" / "verification.json").read_text())
    assert out["counts"]["identical"] == 2
    [ckpt] = out["checkpoints"]
    assert ckpt["status"] == "recorded"
    assert "bundle-" in ckpt["source"]
    assert not fresh.exists() or not list(fresh.rglob("model.safetensors"))  # nothing was retrained


def test_verify_reports_a_missing_folder_as_a_usage_error(tmp_path: Path) -> None:
    done = cli("verify", tmp_path / "nowhere")
    assert done.returncode == 3
    assert "no results.json there" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_verify_never_writes_the_users_baselines(pytester: pytest.Pytester) -> None:
    """The baseline folder set in the ini file's addopts (not on the recorded command line)."""
    pytester.makepyfile(test_gates=TESTS)
    pytester.makeini("[pytest]\naddopts = --robust-baseline=B\n")
    args = smoke_args(pytester)
    pytester.runpytest_subprocess(*args).assert_outcomes(failed=2)  # baselines created
    pytester.runpytest_subprocess(*args, "--robust-report=R").assert_outcomes(passed=2)
    files = sorted((pytester.path / "B").rglob("*.json"))
    assert len(files) == 2
    files[0].unlink()  # the rerun would create it again: in its own copy only
    before = {p: p.read_bytes() for p in files[1:]}
    done = cli("verify", pytester.path / "R" / "latest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted((pytester.path / "B").rglob("*.json")) == files[1:]
    assert {p: p.read_bytes() for p in files[1:]} == before
