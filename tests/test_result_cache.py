"""The content-addressed result cache: the store (unit) and the plugin's use of it (pytester)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust.attacks import FGSM
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.errors import ResultCacheWarning
from pytest_robust.evaluate import EvalResult, evaluate
from pytest_robust.plugin import memoised_evaluate
from pytest_robust.result_cache import SCHEMA, ResultCache, result_key
from pytest_robust.soundness import SoundnessConfig
from pytest_robust.threat import Norm, ThreatModel
from tests.inner import PRELUDE, run_smoke

THREAT = ThreatModel(norm=Norm.LINF, eps=4 / 255)
OFF = SoundnessConfig(enabled=False)

KEY_ARGS: dict[str, Any] = {
    "model": {"weights": "w", "structure": "s", "behaviour": "b"},
    "data_fingerprint": "d",
    "sample_ids": ["0", "1"],
    "attack": {"config": {"name": "fgsm", "loss": "ce"}, "class": "pytest_robust.attacks.gradient.FGSM"},
    "threat": THREAT.to_json(),
    "seed": 0,
    "batch_size": 128,
    "device": "cpu",
    "examples": 0,
    "soundness": OFF.to_json(),
    "positive_label": 1,
    "focus": [],
    "stop": None,
    "versions": {"torch": "2.0", "python": "3.11"},
}

CHANGES: dict[str, Any] = {
    "model": {"weights": "w", "structure": "s", "behaviour": "other"},
    "data_fingerprint": "e",
    "sample_ids": ["1", "0"],
    "attack": {"config": {"name": "fgsm", "loss": "margin"}, "class": "pytest_robust.attacks.gradient.FGSM"},
    "threat": ThreatModel(norm=Norm.LINF, eps=8 / 255).to_json(),
    "seed": 1,
    "batch_size": 64,
    "device": "cuda",
    "examples": 2,
    "soundness": SoundnessConfig().to_json(),
    "positive_label": 0,
    "focus": [3],
    "stop": "sequential:0.9",
    "versions": {"torch": "2.1", "python": "3.11"},
}


@pytest.fixture(scope="module")
def result(trained_tiny: nn.Module, blobs: ImageDataset) -> EvalResult:
    return evaluate(trained_tiny, blobs, FGSM(), THREAT, device="cpu", soundness=OFF, examples=2)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_ingredient_changes_the_key(name: str) -> None:
    key, material = result_key(**KEY_ARGS)
    other, _ = result_key(**{**KEY_ARGS, name: CHANGES[name]})
    assert other != key
    assert json.loads(material)["schema"] == SCHEMA


def test_the_device_index_is_not_in_the_key() -> None:
    assert result_key(**{**KEY_ARGS, "device": "cuda:0"}) == result_key(**{**KEY_ARGS, "device": "cuda:1"})
    assert result_key(**{**KEY_ARGS, "device": "cuda:0"}) == result_key(**{**KEY_ARGS, "device": "cuda"})


def test_library_versions_keep_the_keys_of_existing_cache_entries() -> None:
    """``library_versions()`` is in every key and every recorded evaluation: the same keys, in the
    same order, with the same values, whichever module a caller takes it from."""
    import platform
    import subprocess
    import sys
    from importlib import metadata

    from pytest_robust import evaluate as evaluate_module
    from pytest_robust import versions

    installed = []
    for dist in ("pytest-robust", "pyautoattack", "timm", "numpy"):
        try:
            installed.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            continue
    cuda = str(torch.version.cuda) if torch.cuda.is_available() else "none"
    expected = [("python", platform.python_version()), ("torch", torch.__version__), *installed]
    expected.append(("cuda", cuda))
    assert list(versions.library_versions().items()) == expected
    assert evaluate_module.library_versions is versions.library_versions
    _, material = result_key(**{**KEY_ARGS, "versions": versions.library_versions()})
    assert json.loads(material)["versions"] == dict(expected)
    # the module is torch-free at import time (the plugin and the report import it)
    code = "import sys, pytest_robust.versions; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_round_trip_equals(tmp_path: Path, result: EvalResult) -> None:
    cache = ResultCache(tmp_path)
    key, material = result_key(**KEY_ARGS)
    assert cache.get(key) is None
    path = cache.put(key, material, result)
    assert path == tmp_path / key[:2] / f"{key}.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert (payload["schema"], payload["key"], payload["key_material"]) == (SCHEMA, key, material)
    assert cache.get(key) == result
    assert cache.get(key).to_json() == result.to_json()  # type: ignore[union-attr]


def _damage_truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[:100])
    return "unreadable or truncated"


def _damage_result(path: Path) -> str:
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["result"]["robust_correct"][0] = not payload["result"]["robust_correct"][0]
    path.write_text(json.dumps(payload), encoding="utf-8")
    return "fails its hash check"


def _damage_hash(path: Path) -> str:
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["result_sha256"] = "0" * 64
    path.write_text(json.dumps(payload), encoding="utf-8")
    return "fails its hash check"


def _damage_not_json(path: Path) -> str:
    path.write_bytes(b"\x80\x04\x95 pickled?")
    return "unreadable or truncated"


def _damage_list(path: Path) -> str:
    path.write_text("[1, 2]", encoding="utf-8")
    return "not a result cache entry"


@pytest.mark.parametrize(
    "damage", [_damage_truncate, _damage_result, _damage_hash, _damage_not_json, _damage_list]
)
def test_a_damaged_entry_is_recomputed_with_a_warning(
    tmp_path: Path, result: EvalResult, damage: Any
) -> None:
    cache = ResultCache(tmp_path)
    key, material = result_key(**KEY_ARGS)
    path = cache.put(key, material, result)
    why = damage(path)
    with pytest.warns(ResultCacheWarning, match=why) as record:
        assert cache.get(key) is None
    assert str(path) in str(record[0].message)
    calls = []
    with pytest.warns(ResultCacheWarning):
        again, hit = cache.get_or_compute(key, material, lambda: calls.append(1) or result)
    assert (again, hit, calls) == (result, False, [1])
    assert cache.get(key) == result  # rewritten


def test_an_entry_of_another_key_is_not_trusted(tmp_path: Path, result: EvalResult) -> None:
    cache = ResultCache(tmp_path)
    key, material = result_key(**KEY_ARGS)
    other, _ = result_key(**{**KEY_ARGS, "seed": 5})
    cache.path(other).parent.mkdir(parents=True, exist_ok=True)
    cache.path(other).write_bytes(cache.put(key, material, result).read_bytes())
    with pytest.warns(ResultCacheWarning, match="do not match"):
        assert cache.get(other) is None


def test_get_or_compute_hits_and_recompute_bypasses(tmp_path: Path, result: EvalResult) -> None:
    cache = ResultCache(tmp_path)
    key, material = result_key(**KEY_ARGS)
    calls: list[int] = []

    def compute() -> EvalResult:
        calls.append(1)
        return result

    assert cache.get_or_compute(key, material, compute) == (result, False)
    assert cache.get_or_compute(key, material, compute) == (result, True)
    assert cache.get_or_compute(key, material, compute, recompute=True) == (result, False)
    assert len(calls) == 2


class Scaled(nn.Module):
    """A wrapper that shares the inner model's weights but changes its outputs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * 3.0


def test_memoised_evaluate_uses_the_disk_cache_across_processes_and_never_across_models(
    tmp_path: Path, trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    cache = ResultCache(tmp_path)
    counts = {"hit": 0, "computed": 0}
    kwargs: dict[str, Any] = {
        "device": "cpu",
        "seed": 0,
        "batch_size": 64,
        "soundness": OFF,
        "result_cache": cache,
        "counts": counts,
    }
    first = memoised_evaluate({}, trained_tiny, blobs, FGSM(), THREAT, **kwargs)
    wrapped = memoised_evaluate({}, Scaled(trained_tiny), blobs, FGSM(), THREAT, **kwargs)
    assert counts == {"hit": 0, "computed": 2}  # the same weights inside another model: another key
    assert len(list(tmp_path.rglob("*.json"))) == 2
    again = memoised_evaluate({}, trained_tiny, blobs, FGSM(), THREAT, **kwargs)
    assert counts == {"hit": 1, "computed": 2}  # a fresh memo (another process) reads the disk
    assert again == first
    assert again is not first
    assert wrapped.model["class"] == "Scaled"
    memoised_evaluate({}, trained_tiny, blobs, FGSM(), THREAT, recompute=True, **kwargs)
    assert counts == {"hit": 1, "computed": 3}


def test_a_stop_rule_without_a_key_is_not_cached(
    tmp_path: Path, trained_tiny: nn.Module, blobs: ImageDataset
) -> None:
    cache = ResultCache(tmp_path)
    counts = {"hit": 0, "computed": 0}
    memoised_evaluate(
        {},
        trained_tiny,
        blobs,
        FGSM(),
        THREAT,
        result_cache=cache,
        counts=counts,
        device="cpu",
        soundness=OFF,
        stop=lambda outcomes: False,
    )
    assert counts == {"hit": 0, "computed": 0}
    assert not list(tmp_path.rglob("*.json"))


# --- through the plugin (pytester) -----------------------------------------------------------------

CONFTEST = PRELUDE + textwrap.dedent(
    """
    from pytest_robust.attacks import FGSM

    CALLS = {calls!r}

    class Counting:
        name = "counting"

        def config(self):
            return {{"name": "counting"}}

        def describe(self):
            return "counting FGSM"

        def perturb(self, model, x, y, threat, *, generator):
            with open(CALLS, "a") as fh:
                fh.write("x\\n")
            return FGSM().perturb(model, x, y, threat, generator=generator)

    def pytest_robust_register_attacks(register):
        register("counting", lambda **budget: Counting())

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(64, 1)

    @pytest.fixture(scope="session")
    def model():
        return tiny_model(256, 100)
    """
)

TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("eps", [2 / 255, 4 / 255, 8 / 255])
    def test_gate(assert_robust, model, eps):
        assert_robust(model, "counting", eps=eps, min_acc=0.0, examples=1)
    """
)


def calls(pytester: pytest.Pytester) -> int:
    path = pytester.path / "calls.txt"
    n = len(path.read_text().splitlines()) if path.exists() else 0
    path.unlink(missing_ok=True)
    return n


def stable(doc: Any) -> Any:
    """What must be identical between a computed and a cached run: rows and details, less timings."""
    if isinstance(doc, dict):
        return {k: stable(v) for k, v in doc.items() if k not in {"run", "timings", "duration"}}
    if isinstance(doc, list):
        return [stable(v) for v in doc]
    return doc


def report(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    doc = json.loads((pytester.path / name / "latest" / "results.json").read_text(encoding="utf-8"))
    return {"rows": stable(doc["rows"]), "details": stable(doc["details"])}


def run_section(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    doc = json.loads((pytester.path / name / "latest" / "results.json").read_text(encoding="utf-8"))
    section: dict[str, Any] = doc["run"]
    return section


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_ROBUST_RESULT_CACHE_DIR")  # the default place: <cache dir>/results
    pytester.makeconftest(CONFTEST.format(calls=str(pytester.path / "calls.txt")))
    pytester.makepyfile(test_gates=TESTS)
    return pytester


def test_a_second_run_hits_the_cache_and_reports_the_same(suite: pytest.Pytester) -> None:
    first = run_smoke(suite, "--robust-report=first")
    first.assert_outcomes(passed=3)
    assert calls(suite) > 0
    first.stdout.fnmatch_lines([f"result cache: 0 hit, 3 computed, {suite.path / 'cache' / 'results'}"])
    second = run_smoke(suite, "--robust-report=second")
    second.assert_outcomes(passed=3)
    assert calls(suite) == 0  # no attack ran
    second.stdout.fnmatch_lines(["result cache: 3 hit, 0 computed, *"])
    assert report(suite, "second") == report(suite, "first")
    assert run_section(suite, "first")["result_cache"]["computed"] == 3
    assert run_section(suite, "second")["result_cache"] == {
        "hit": 3,
        "computed": 0,
        "recompute": False,
        "folder": str(suite.path / "cache" / "results"),
    }


def test_a_damaged_entry_is_recomputed_and_recompute_bypasses(suite: pytest.Pytester) -> None:
    run_smoke(suite).assert_outcomes(passed=3)
    calls(suite)
    entries = sorted((suite.path / "cache" / "results").rglob("*.json"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:50])
    result = run_smoke(suite, "-W", "always::pytest_robust.errors.ResultCacheWarning")
    result.assert_outcomes(passed=3)
    assert calls(suite) > 0
    result.stdout.fnmatch_lines(
        [
            "*ResultCacheWarning: result cache entry *truncated*recomputing it*",
            "result cache: 2 hit, 1 computed, *",
        ]
    )
    result = run_smoke(suite, "--robust-recompute")
    result.assert_outcomes(passed=3)
    assert calls(suite) > 0
    result.stdout.fnmatch_lines(["result cache: 0 hit, 3 computed (--robust-recompute: not read), *"])
    run_smoke(suite).stdout.fnmatch_lines(["result cache: 3 hit, 0 computed, *"])


def test_xdist_workers_share_the_cache(suite: pytest.Pytester) -> None:
    run_smoke(suite, "-n", "2").assert_outcomes(passed=3)
    assert calls(suite) > 0
    result = run_smoke(suite, "-n", "2", "--robust-report=R")
    result.assert_outcomes(passed=3)
    assert calls(suite) == 0
    result.stdout.fnmatch_lines(["result cache: 3 hit, 0 computed, *"])
    assert run_section(suite, "R")["result_cache"]["hit"] == 3  # summed over the workers


def test_the_result_folder_follows_its_variable_else_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_robust.config import default_result_cache_dir

    monkeypatch.delenv("PYTEST_ROBUST_RESULT_CACHE_DIR")
    assert default_result_cache_dir(tmp_path) == tmp_path / "results"
    monkeypatch.setenv("PYTEST_ROBUST_RESULT_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_result_cache_dir(tmp_path) == tmp_path / "elsewhere"
