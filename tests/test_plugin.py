"""Plugin behaviour through pytester: options, ini keys, fixtures, outcomes, messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.inner import PRELUDE

# A conftest for the inner runs: a tiny model and data that train in about a second.
CONFTEST = PRELUDE + textwrap.dedent(
    """

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(128, 1)

    @pytest.fixture(scope="session")
    def model():
        return tiny_model()
    """
)


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*robustness testing (pytest-robust)*"])
    out = result.stdout.str()
    for flag in (
        "--robust-profile",
        "--robust-device",
        "--robust-seed",
        "--robust-n",
        "--robust-data",
        "--robust-cache-dir",
        "--robust-threads",
        "--robust-retrain",
        "--robust-soundness",
    ):
        assert flag in out
    for ini in (
        "robust_profile",
        "robust_device",
        "robust_seed",
        "robust_n",
        "robust_data",
        "robust_cache_dir",
    ):
        assert ini in out


def test_ini_values_parse_and_cli_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        robust_profile = smoke
        robust_seed = 7
        robust_n = 32
        robust_device = cpu
        robust_cache_dir = ckpts
        """
    )
    pytester.makepyfile(
        """
        def test_cfg(robust_config, pytestconfig):
            assert robust_config.profile.name == "smoke"
            assert robust_config.seed == int(pytestconfig.getoption("--robust-seed") or 7)
            assert robust_config.n_eval == 32
            assert robust_config.device == "cpu"
            assert robust_config.cache_dir == pytestconfig.rootpath / "ckpts"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.runpytest("--robust-seed=11").assert_outcomes(passed=1)
    result = pytester.runpytest("--robust-profile=ci")
    result.assert_outcomes(failed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--robust-profile=fast"], "*unknown profile 'fast'; valid profiles: smoke, ci, paper*"),
        (["--robust-seed=abc"], "*seed must be an integer*"),
        (["--robust-n=-3"], "*number of samples must be positive*"),
        (["--robust-n=0"], "*number of samples must be positive (or 'all' for every sample), got 0*"),
        (["--robust-device=gpu"], "*unknown device 'gpu'*"),
        (["--robust-threads=0"], "*threads must be >= 1*"),
        (["--robust-data=/no/such/folder"], "*no such folder*"),
        (["--robust-soundness=lenient"], "*unknown soundness policy 'lenient'; valid: strict, warn*"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrobust_profile = turbo\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*robust_profile = 'turbo'*unknown profile*"])


def test_attack_fixtures_follow_the_profile(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_attacks(fgsm, pgd, aa, robust_device):
            assert fgsm.name == "fgsm"
            assert (pgd.steps, pgd.rel_step_size) == (5, 0.5)
            assert (aa.apgd_steps, aa.square_queries) == (5, 20)
            assert robust_device.type == "cpu"
        """
    )
    pytester.runpytest("--robust-profile=smoke", "--robust-device=cpu").assert_outcomes(passed=1)


def test_passing_and_failing_gates(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import json

        def test_weak_requirement(assert_robust, model, fgsm):
            result = assert_robust(model, fgsm, eps=1/255, min_acc=0.5)
            assert result.clean_acc > 0.8

        def test_strong_requirement(assert_robust, model, pgd):
            assert_robust(model, pgd, eps=32/255, min_acc=0.95)
        """
    )
    result = inner.runpytest("--robust-profile=smoke", "--robust-device=cpu", "--robust-seed=5")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "test_passing_and_failing_gates.py:8: assert_robust(model, pgd, eps=32/255, min_acc=0.95)",
            "E   RobustnessFailure: robustness gate FAILED: 95% lower bound of robust accuracy 0.* < "
            "required 0.950*",
            "*threat model    Linf eps=32/255*",
            "*attack          PGD-5 (step 0.5*eps, 1 restart(s), random start)*",
            "*clean accuracy  *(*/32)",
            "*data            blobs (synthetic), n=32*",
            "*device, seed    cpu, seed=5*",
            "*profile         smoke*",
            "*robustness summary*",
            # one line per model: a test that used it failed, so it is FAIL whatever its other gates said
            "FAIL    * clean 1.000  robust *(worst of PGD, 32/255)  sens *  n=*  tests: 1 passed, 1 failed",
            "*the embedded SYNTHETIC set*",
        ]
    )


def test_results_are_recorded_as_plain_json(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_gate(assert_robust, model, fgsm):
            assert_robust(model, fgsm, eps=2/255, min_acc=0.0)
            assert_robust(model, "pgd", eps=2/255, min_acc=0.0)
        """
    )
    inner.makeconftest(
        CONFTEST
        + textwrap.dedent(
            """
            import json
            def pytest_runtest_logreport(report):
                if report.when == "call":
                    rows = [json.loads(v) for k, v in report.user_properties if k == "pytest_robust.result"]
                    with open("rows.json", "w") as fh:
                        json.dump(rows, fh)
            """
        )
    )
    inner.runpytest("--robust-profile=smoke", "--robust-n=40").assert_outcomes(passed=1)
    rows = json.loads((inner.path / "rows.json").read_text())
    assert [r["evaluation"]["attack"]["name"] for r in rows] == ["fgsm", "pgd"]
    assert all(r["evaluation"]["n"] == 40 for r in rows)
    assert rows[0]["schema"] == 1
    assert rows[0]["context"]["profile"] == "smoke"
    assert len(rows[0]["evaluation"]["robust_correct"]) == 40


def test_marker_overrides_and_validation(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.robust(n=16, seed=3)
        def test_small(assert_robust, model, fgsm):
            r = assert_robust(model, fgsm, eps=1/255, min_acc=0.0)
            assert r.n == 16 and r.evaluation.seed == 3

        @pytest.mark.robust(samples=16)
        def test_bad_marker(robust_config):
            pass
        """
    )
    result = inner.runpytest("--robust-profile=smoke")
    result.assert_outcomes(passed=1, errors=1)
    assert "@pytest.mark.robust: unknown robust marker argument(s) ['samples']" in result.stdout.str()


def test_bad_input_inside_a_test_reads_clearly(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_pixels(assert_robust, model, pgd):
            assert_robust(model, pgd, eps=4, min_acc=0.7)
        """
    )
    result = inner.runpytest("--robust-profile=smoke")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    line = "test_bad_input_inside_a_test_reads_clearly.py:2: assert_robust(model, pgd, eps=4, min_acc=0.7)"
    assert line in out
    assert "E   RobustConfigError: Linf eps must be in [0, 1], got 4; pixel values" in out
    assert "Did you mean eps=4/255 (= 0.015686)?" in out
    assert "validate_eps" not in out  # no deep traceback into the library


def test_report_header_names_the_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--robust-profile=smoke")
    result.stdout.fnmatch_lines(
        ["robust: profile=smoke, device=auto, seed=0, n=32, soundness=strict, data=synthetic*"]
    )


def test_plugin_import_does_not_import_torch() -> None:
    code = "import sys, pytest_robust.plugin, pytest_robust; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_report_never_imports_the_plugin() -> None:
    """One direction of imports: the report's modules (the collector included) use the leaf module
    ``keys`` and a frozen ``RunContext``, never ``pytest_robust.plugin`` - not even inside a function
    (the old circle plugin -> report/collector -> plugin, report/build -> plugin)."""
    import ast

    import pytest_robust.report as report

    offenders = []
    for path in sorted(Path(report.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}:{node.lineno}" for n in names if n == "pytest_robust.plugin"]
    assert offenders == []


def test_entry_point_loads_in_a_subprocess(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fixture_exists(request):
            assert "assert_robust" in request.fixturenames or request.getfixturevalue("fgsm")
        """
    )
    result = pytester.runpytest_subprocess("--robust-profile=smoke", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*robust: profile=smoke*"])


def test_default_model_trains_once_then_loads_from_the_cache(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_quickstart(assert_robust, model, robust_data, fgsm):
            assert robust_data.synthetic and robust_data.images.shape[1:] == (3, 32, 32)
            result = assert_robust(model, fgsm, eps=0.0, min_acc=0.8)
            assert result.clean_acc >= 0.8
        """
    )
    cache = pytester.path / "ckpts"
    args = ("--robust-profile=smoke", f"--robust-cache-dir={cache}", "-p", "no:cacheprovider")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert any(p.name == "model.safetensors" for p in files)
    second = pytester.runpytest(*args)
    second.assert_outcomes(passed=1)
    assert files == {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    third = pytester.runpytest(*args, "--robust-retrain")
    third.assert_outcomes(passed=1)
    assert any(p.stat().st_mtime_ns != t for p, t in files.items() if p.name == "model.safetensors")


def test_results_reach_the_controller_under_xdist(inner: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("eps", [1/255, 2/255, 3/255, 4/255])
        def test_gate(assert_robust, model, fgsm, eps):
            assert_robust(model, fgsm, eps=eps, min_acc=0.0)

        def test_threads(robust_config):
            import os
            assert robust_config.threads == max(1, (os.cpu_count() or 1) // 2)  # cores / workers
        """
    )
    result = inner.runpytest("-n", "2", "--robust-profile=smoke", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    # the four gates' results reached the controller's one summary (and the workers' cache counts)
    result.stdout.fnmatch_lines(
        ["PASS    *(worst of FGSM, 4/255)*tests: 4 passed", "result cache: 0 hit, 4 computed*"]
    )


# Wrappers of the inner conftest's model that only look robust (parameter-free: the same weights).
MASKED = textwrap.dedent(
    """
    import pytest, torch
    from torch import nn

    class Scaled(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base
        def forward(self, x):
            return self.base(x) * 1e4

    class Noisy(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base
        def forward(self, x):
            return self.base(x + 0.2 * torch.randn_like(x))
    """
)


def test_masked_models_are_unsound_under_the_default_policy(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        MASKED
        + textwrap.dedent(
            """
            def test_scaled(assert_robust, model, pgd):
                assert_robust(Scaled(model), pgd, eps=32/255, min_acc=0.5)

            def test_base(assert_robust, model, pgd):
                assert_robust(model, pgd, eps=32/255, min_acc=0.5)

            def test_scaled_after_base_is_not_served_the_base_result(assert_robust, model, pgd):
                assert_robust(model, pgd, eps=32/255, min_acc=0.0)
                assert_robust(Scaled(model), pgd, eps=32/255, min_acc=0.0)
            """
        )
    )
    result = inner.runpytest("--robust-profile=smoke", "--robust-device=cpu", "-p", "no:randomly")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*E   UnsoundEvaluation: robustness gate UNSOUND: * soundness check(s) failed*"
            "(the gate cannot pass; soundness=strict)",
            "*check saturation: *",
            "*why *",
            "*to fix *",
            "*measured (not trusted): *robust accuracy * >= required 0.500*",
        ]
    )
    assert "E   RobustnessFailure: robustness gate FAILED" in out  # the honest base model fails on its number
    result.stdout.fnmatch_lines(
        [
            "*robustness summary*",
            "UNSOUND *  tests: 2 failed  unsound: saturation*",
            "FAIL    *  tests: 2 failed",
            "UNSOUND: a soundness check failed; those numbers are not evidence*",
        ]
    )


def test_warn_policy_passes_but_marks_unsound(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        MASKED
        + textwrap.dedent(
            """
            def test_scaled(assert_robust, model, pgd):
                result = assert_robust(Scaled(model), pgd, eps=32/255, min_acc=0.5)
                assert result.passed and not result.sound

            @pytest.mark.robust(soundness="strict")
            def test_marker_is_strict_again(assert_robust, model, pgd):
                assert_robust(Scaled(model), pgd, eps=32/255, min_acc=0.5)
            """
        )
    )
    result = inner.runpytest("--robust-profile=smoke", "--robust-device=cpu", "--robust-soundness=warn")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["UNSOUND *tests: 1 passed, 1 failed  unsound: saturation*"])
    inner.makeini("[pytest]\nrobust_soundness = warn\n")
    inner.runpytest("--robust-profile=smoke", "--robust-device=cpu").assert_outcomes(passed=1, failed=1)


def test_randomized_marker_declares_a_random_model(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        MASKED
        + textwrap.dedent(
            """
            from pytest_robust import UnsoundEvaluation

            def test_undeclared(assert_robust, model, pgd):
                with pytest.raises(UnsoundEvaluation, match="determinism"):
                    assert_robust(Noisy(model), pgd, eps=8/255, min_acc=0.0)

            @pytest.mark.robust(randomized=True)
            def test_declared(assert_robust, model, fgsm):
                result = assert_robust(Noisy(model), fgsm, eps=8/255, min_acc=0.0)
                assert result.evaluation.model["randomized"] is True
                assert any(c.name == "determinism" and c.status == "pass" and "declared" in c.summary
                           for c in result.evaluation.checks)

            @pytest.mark.robust(randomized="yes")
            def test_bad_marker(robust_config):
                pass
            """
        )
    )
    result = inner.runpytest("--robust-profile=smoke", "--robust-device=cpu")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.robust: randomized must be True or False, got 'yes'*"])


@pytest.mark.parametrize(
    ("args", "marker"),
    [(["--robust-n=all"], ""), (["--robust-n=ALL"], ""), ([], '@pytest.mark.robust(n="all")')],
)
def test_all_samples_means_every_sample_not_the_profiles_default(
    inner: pytest.Pytester, args: list[str], marker: str
) -> None:
    """The smoke profile evaluates 64 samples; ``all`` must use all 128 of the conftest's data."""
    inner.makepyfile(
        f"""
        import pytest

        {marker}
        def test_gate(assert_robust, model, robust_config):
            result = assert_robust(model, "none", eps=0.0, min_acc=0.0)
            assert robust_config.n_eval is None
            assert result.evaluation.n == 128
        """
    )
    inner.runpytest("--robust-profile=smoke", *args).assert_outcomes(passed=1)
