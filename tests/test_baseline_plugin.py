"""Baselines through pytester: create, compare, regress, mismatch, update, and xdist."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.test_plugin import CONFTEST

# The inner conftest's model, trained for ROBUST_TEST_STEPS steps (fewer: a weaker candidate).
STEPS_CONFTEST = CONFTEST.replace(
    "return tiny_model()",
    "return tiny_model(steps=int(__import__('os').environ.get('ROBUST_TEST_STEPS', '200')))",
)

TEST = textwrap.dedent(
    """
    def test_release(assert_robust, model, {attack}):
        assert_robust(model, {attack}, eps={eps}, min_acc=0.0)
    """
)

ARGS = ("--robust-profile=smoke", "--robust-n=128", "-p", "no:cacheprovider", "-p", "no:randomly")


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    assert "ROBUST_TEST_STEPS" in STEPS_CONFTEST
    pytester.makeconftest(STEPS_CONFTEST)
    pytester.makepyfile(test_bl_gate=TEST.format(attack="pgd", eps="8/255"))
    return pytester


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_lifecycle_create_compare_regress_update(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = inner.runpytest("--robust-baseline=baselines", *ARGS)
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(
        ["*BaselineCreated: baseline created: *test_release.json*", "*review and commit it*"]
    )
    files = _files(inner.path / "baselines")
    assert list(files) == ["test_bl_gate.py/test_release.json"]
    stored = json.loads(files["test_bl_gate.py/test_release.json"])
    assert stored["test"] == "test_bl_gate.py::test_release"
    assert len(stored["samples"]) == 128
    assert stored["attack"]["name"] == "pgd"
    assert stored["threat"]["eps"] == pytest.approx(8 / 255)

    second = inner.runpytest("--robust-baseline=baselines", *ARGS)
    second.assert_outcomes(passed=1)
    assert _files(inner.path / "baselines") == files  # compared, not rewritten

    # an injected regression: a barely trained model (8 steps: it still answers both classes; after 3
    # it answered one class for everything, a degenerate model whose gate fails whatever the baseline)
    monkeypatch.setenv("ROBUST_TEST_STEPS", "8")
    third = inner.runpytest("--robust-baseline=baselines", *ARGS)
    third.assert_outcomes(failed=1)
    out = third.stdout.str()
    assert "newly broken" in out
    assert "non-inferiority(margin=0.02" in out
    robust_before = {s["id"] for s in stored["samples"] if s["robust"]}
    listed = out.split("newly broken    ", 1)[1].splitlines()[0].split(" (and")[0].split(", ")
    assert listed
    assert set(listed) <= robust_before
    assert _files(inner.path / "baselines") == files

    fourth = inner.runpytest("--robust-baseline=baselines", "--robust-baseline-update", *ARGS)
    fourth.assert_outcomes(passed=1)
    fourth.stdout.fnmatch_lines(["*updated: *test_release.json*"])
    updated = _files(inner.path / "baselines")
    new = json.loads(updated["test_bl_gate.py/test_release.json"])
    assert updated != files
    assert new["summary"]["robust_acc"] < stored["summary"]["robust_acc"]
    inner.runpytest("--robust-baseline=baselines", *ARGS).assert_outcomes(passed=1)


def test_mismatched_attack_or_threat_is_a_clear_error(inner: pytest.Pytester) -> None:
    inner.runpytest("--robust-baseline=b", *ARGS).assert_outcomes(failed=1)
    inner.makepyfile(test_bl_gate=TEST.format(attack="fgsm", eps="8/255"))
    other_attack = inner.runpytest("--robust-baseline=b", *ARGS)
    other_attack.assert_outcomes(failed=1)
    other_attack.stdout.fnmatch_lines(
        [
            "*BaselineError: baseline *test_release.json was measured on something else*",
            "*attack: baseline*",
            "*regenerate it with --robust-baseline-update*",
        ]
    )
    inner.makepyfile(test_bl_gate=TEST.format(attack="pgd", eps="4/255"))
    other_threat = inner.runpytest("--robust-baseline=b", *ARGS)
    other_threat.assert_outcomes(failed=1)
    other_threat.stdout.fnmatch_lines(["*threat model: baseline*"])
    other_data = inner.runpytest(
        "--robust-baseline=b", "--robust-profile=smoke", "--robust-n=100", "-p", "no:cacheprovider"
    )
    other_data.assert_outcomes(failed=1)


def test_never_overwrites_a_users_file_and_update_needs_a_folder(inner: pytest.Pytester) -> None:
    target = inner.path / "b" / "test_bl_gate.py" / "test_release.json"
    target.parent.mkdir(parents=True)
    target.write_text("my notes")
    result = inner.runpytest("--robust-baseline=b", "--robust-baseline-update", *ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*not a pytest-robust baseline: not overwriting it*"])
    assert target.read_text() == "my notes"
    usage = inner.runpytest("--robust-baseline-update", *ARGS)
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(["*--robust-baseline-update needs --robust-baseline=DIR*"])


def test_xdist_writes_the_same_files_as_one_process(inner: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    inner.makepyfile(
        test_more=textwrap.dedent(
            """
        import pytest

        @pytest.mark.parametrize("eps", [2/255, 16/255])
        def test_eps(assert_robust, model, fgsm, eps):
            assert_robust(model, fgsm, eps=eps, min_acc=0.0)
            assert_robust(model, "fgsm", eps=eps / 2, min_acc=0.0)  # a second gate: its own file
        """
        )
    )
    inner.runpytest("--robust-baseline=serial", "-n", "0", *ARGS).assert_outcomes(failed=3)
    inner.runpytest("--robust-baseline=parallel", "-n", "2", *ARGS).assert_outcomes(failed=3)
    serial, parallel = _files(inner.path / "serial"), _files(inner.path / "parallel")
    assert len(serial) == 1 + 2  # the second gates of test_eps are not reached: the first one failed
    assert serial == parallel


def test_an_explicit_baseline_argument_wins(inner: pytest.Pytester) -> None:
    inner.runpytest("--robust-baseline=b", *ARGS).assert_outcomes(failed=1)  # creates b/...
    stored = inner.path / "b" / "test_bl_gate.py" / "test_release.json"
    inner.makepyfile(
        test_bl_gate=textwrap.dedent(
            f"""
        def test_release(assert_robust, model, pgd):
            assert_robust(model, pgd, eps=8/255, min_acc=0.0, baseline={str(stored)!r})
        """
        )
    )
    result = inner.runpytest("--robust-baseline=other", *ARGS)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*vs baseline +0.000 (0 newly broken, 0 newly robust) PASS*"])
    assert not (inner.path / "other").exists()


def test_non_inferiority_by_name_needs_a_baseline_folder(inner: pytest.Pytester) -> None:
    usage = inner.runpytest("--robust-policy=non-inferiority", *ARGS)
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(
        ["*--robust-policy non-inferiority compares every gate*--robust-baseline=DIR*"]
    )
    args = ("--robust-policy=non-inferiority", "--robust-baseline=b", *ARGS)
    inner.runpytest(*args).assert_outcomes(failed=1)  # baseline created
    second = inner.runpytest(*args)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*vs baseline +0.000*PASS*"])
