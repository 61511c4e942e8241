"""Extension points (pytest_robust.hookspec): attacks, policies and report sections from plugins."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_robust.attacks import ATTACKS, FGSM, make_attack, register_attack, unregister_attack
from pytest_robust.errors import RobustConfigError
from pytest_robust.hookspec import ReportSection, check_sections
from pytest_robust.report.markdown import sections as markdown_sections

# The inner runs' conftest: an untrained tiny model on 8x8 blobs, and an attack that changes
# nothing (so robust accuracy equals clean accuracy); the soundness checks are off in the inner
# tests (CHECKS_OFF): these tests are about the hooks, not about the model. Its initialisation
# (seed 1) answers both classes: one that answers one class for every image is degenerate and
# fails a gate under the default soundness=strict (pytest_robust.degeneracy).
BASE = textwrap.dedent(
    """
    import dataclasses
    import pytest, torch
    from torch import nn
    from pytest_robust.data.dataset import ImageDataset

    @pytest.fixture(scope="session")
    def robust_data():
        g = torch.Generator().manual_seed(1)
        y = torch.arange(32) % 2
        x = (torch.rand((32, 3, 8, 8), generator=g) * 0.5).clamp(0, 1)
        return ImageDataset(images=x, labels=y, classes=("benign", "malignant"), name="blobs",
                            synthetic=True)

    @pytest.fixture(scope="session")
    def model():
        torch.manual_seed(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(192, 2)).eval()

    @dataclasses.dataclass(frozen=True)
    class Identity:
        label: str = "plain"

        @property
        def name(self):
            return "identity"

        def config(self):
            return {"name": "identity", "label": self.label}

        def describe(self):
            return f"identity ({self.label}): returns the input unchanged"

        def perturb(self, model, x, y, threat, *, generator):
            return x.clone()
    """
)

CHECKS_OFF = "checks=__import__('pytest_robust.soundness').soundness.SoundnessConfig(enabled=False)"


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Unit tests register into the process-wide registry: remove whatever they added."""
    before = set(ATTACKS)
    yield
    for name in set(ATTACKS) - before:
        unregister_attack(name)


# --- register_attack (unit) ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "MyAttack", "1x", "my attack", " pgd2", "é"])
def test_register_attack_rejects_invalid_names(name: str, clean_registry: None) -> None:
    with pytest.raises(RobustConfigError, match="invalid attack name"):
        register_attack(name, FGSM)
    assert name not in ATTACKS


@pytest.mark.parametrize("name", ["pgd", "fgsm", "autoattack", "none", "aa", "clean"])
@pytest.mark.parametrize("replace", [False, True])
def test_built_in_attacks_cannot_be_replaced(name: str, replace: bool, clean_registry: None) -> None:
    before = ATTACKS.get(name)
    with pytest.raises(RobustConfigError, match="built in and cannot be replaced"):
        register_attack(name, FGSM, replace=replace)
    assert ATTACKS.get(name) is before
    with pytest.raises(RobustConfigError, match="cannot be unregistered"):
        unregister_attack(name)


def test_register_attack_duplicates_need_replace(clean_registry: None) -> None:
    assert register_attack("my-fgsm", FGSM) is None
    assert "my-fgsm" in ATTACKS
    assert isinstance(make_attack("my-fgsm", loss="margin"), FGSM)
    with pytest.raises(RobustConfigError, match=r"'my-fgsm' is already registered.*replace=True"):
        register_attack("my-fgsm", FGSM)

    def other(**budget: Any) -> FGSM:
        return FGSM(**budget)

    assert register_attack("my-fgsm", other, replace=True) is FGSM
    assert ATTACKS["my-fgsm"] is other
    unregister_attack("my-fgsm")
    assert "my-fgsm" not in ATTACKS
    with pytest.raises(RobustConfigError, match="unknown attack 'my-fgsm'"):
        make_attack("my-fgsm")
    with pytest.raises(RobustConfigError, match="not registered"):
        unregister_attack("my-fgsm")


def test_register_attack_checks_the_factory_and_what_it_builds(clean_registry: None) -> None:
    with pytest.raises(RobustConfigError, match="must be callable"):
        register_attack("broken", "FGSM")  # type: ignore[arg-type]
    register_attack("not-an-attack", lambda **budget: object())  # type: ignore[arg-type]
    with pytest.raises(RobustConfigError, match=r"'not-an-attack'.*returned object.*does not satisfy"):
        make_attack("not-an-attack")


def test_attacks_is_a_read_only_view(clean_registry: None) -> None:
    with pytest.raises(TypeError):
        ATTACKS["x"] = FGSM  # type: ignore[index]
    register_attack("viewed", FGSM)
    assert "viewed" in ATTACKS  # the view shows registrations


# --- ReportSection (unit) --------------------------------------------------------------------------


def test_report_section_is_a_paragraph_or_a_table() -> None:
    table = ReportSection(title="t", headers=["a", "b"], rows=[["1", "2"]])
    assert table.is_table
    assert table.rows == (("1", "2"),)
    assert table.headers == ("a", "b")
    assert ReportSection.from_json(table.to_json()) == table
    text = ReportSection(title="t", text="hello")
    assert not text.is_table
    assert ReportSection.from_json(text.to_json()) == text
    with pytest.raises(RobustConfigError, match="either text"):
        ReportSection(title="t")
    with pytest.raises(RobustConfigError, match="either text"):
        ReportSection(title="t", text="x", headers=["a"], rows=[["1"]])
    with pytest.raises(RobustConfigError, match=r"rows\[0\] has 1 cells, headers has 2"):
        ReportSection(title="t", headers=["a", "b"], rows=[["1"]])
    with pytest.raises(RobustConfigError, match=r"rows\[0\] must hold strings, got float"):
        ReportSection(title="t", headers=["a"], rows=[[0.5]])  # type: ignore[list-item]
    with pytest.raises(RobustConfigError, match="title must be a non-empty string"):
        ReportSection(title=" ", text="x")


def test_check_sections_names_the_source() -> None:
    section = ReportSection(title="t", text="x")
    assert check_sections([section], "plug") == [section]
    assert check_sections(None, "plug") == []
    with pytest.raises(RobustConfigError, match=r"^plug: .* must return a list .*got dict"):
        check_sections({"title": "t"}, "plug")
    with pytest.raises(RobustConfigError, match=r"^plug: .*returned str at index 1"):
        check_sections([section, "text"], "plug")


def test_markdown_sections_are_escaped() -> None:
    doc = {
        "sections": [
            ReportSection(title="Sign-off", text="<script>alert(1)</script> **not bold**").to_json(),
            ReportSection(title="T", headers=["a|b"], rows=[["x\ny"]]).to_json(),
        ]
    }
    out = markdown_sections(doc)
    assert "### Sign-off" in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\*\\*not bold\\*\\*" in out
    assert "<script>" not in out
    assert "| a\\|b |\n|---|\n| x y |\n" in out
    assert markdown_sections({}) == ""


# --- through pytest ------------------------------------------------------------------------------


def test_hooks_are_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_specs(pytestconfig):
            hook = pytestconfig.hook
            assert hook.pytest_robust_register_attacks.spec.opts["historic"]
            assert hook.pytest_robust_make_policy.spec.opts["firstresult"]
            assert hook.pytest_robust_report_sections.spec is not None
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--robust-policy=VALUE*"])


def test_registered_attack_works_by_name_and_is_gone_after_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        BASE
        + textwrap.dedent(
            """
            def pytest_robust_register_attacks(register):
                register("identity", Identity)
            """
        )
    )
    pytester.makepyfile(
        f"""
        from pytest_robust.attacks import ATTACKS, coerce_attack, make_attack

        def test_by_name(assert_robust, model):
            assert "identity" in ATTACKS
            built = make_attack("identity", label="budget")
            assert built.config() == {{"name": "identity", "label": "budget"}}
            assert coerce_attack("identity").describe().startswith("identity (plain)")
            result = assert_robust(model, "identity", eps=4/255, min_acc=0.0, n=16, {CHECKS_OFF})
            assert result.evaluation.attack == {{"name": "identity", "label": "plain"}}
            assert result.evaluation.n == 16
            assert result.evaluation.robust_acc == result.evaluation.clean_acc
        """
    )
    result = pytester.runpytest("--robust-profile=smoke", "--robust-device=cpu", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    # the inner session registered it in this process's registry and took it back at unconfigure
    assert "identity" not in ATTACKS
    with pytest.raises(RobustConfigError, match="unknown attack 'identity'"):
        make_attack("identity")


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        (
            'register("twice", Identity)\n    register("twice", Identity)',
            "*pytest_robust_register_attacks: attack 'twice' is already registered*replace=True*",
        ),
        (
            'register("twice", Identity)\n    register("pgd", Identity, replace=True)',
            "*pytest_robust_register_attacks: attack name 'pgd' is built in and cannot be replaced*",
        ),
        ('register("Twice", Identity)', "*pytest_robust_register_attacks: invalid attack name 'Twice'*"),
    ],
)
def test_bad_registration_is_a_usage_error(pytester: pytest.Pytester, calls: str, message: str) -> None:
    pytester.makeconftest(BASE + f"\ndef pytest_robust_register_attacks(register):\n    {calls}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "twice" not in ATTACKS  # what succeeded before the error is undone too


def test_replace_true_replaces_another_plugins_attack(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        BASE
        + textwrap.dedent(
            """
            def pytest_robust_register_attacks(register):
                register("identity", Identity)
                register("identity", lambda **budget: Identity(label="replaced"), replace=True)
            """
        )
    )
    pytester.makepyfile(
        """
        from pytest_robust.attacks import make_attack

        def test_replaced():
            assert make_attack("identity").config()["label"] == "replaced"
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    assert "identity" not in ATTACKS


POLICY_CONFTEST = BASE + textwrap.dedent(
    """
    from pytest_robust import PointEstimate

    class AlwaysFail:
        def decide(self, result, min_acc):
            verdict = PointEstimate().decide(result, min_acc)
            return dataclasses.replace(verdict, passed=False, policy="always-fail",
                                       reason="the always-fail policy rejects every model")

    def pytest_robust_make_policy(name, config):
        return AlwaysFail() if name == "always-fail" else None
    """
)

POLICY_TESTS = f"""
from pytest_robust import PointEstimate

EXPECTED = {{"point-estimate": "point-estimate", "lower-bound": "lower-confidence-bound(0.95)",
            "sequential": "sequential(confidence=0.95)"}}

def test_default_policy(assert_robust, model, robust_config):
    result = assert_robust(model, "none", eps=0, min_acc=0.0, n=16, {CHECKS_OFF})
    assert result.verdict.policy == EXPECTED[robust_config.policy]

def test_explicit_policy_wins(assert_robust, model):
    result = assert_robust(model, "none", eps=0, min_acc=0.0, n=16, policy=PointEstimate(), {CHECKS_OFF})
    assert result.verdict.policy == "point-estimate"
"""


def test_policy_from_a_plugin_decides_the_gate(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(POLICY_CONFTEST)
    pytester.makepyfile(POLICY_TESTS)
    args = ("--robust-profile=smoke", "--robust-device=cpu", "-p", "no:randomly")
    pytester.runpytest(*args).assert_outcomes(passed=2)  # default: lower-bound
    pytester.runpytest(*args, "--robust-policy=point-estimate").assert_outcomes(passed=2)
    pytester.runpytest(*args, "--robust-policy=sequential").assert_outcomes(passed=2)

    result = pytester.runpytest(*args, "--robust-policy=always-fail")
    result.assert_outcomes(passed=1, failed=1)  # the test that passes policy= explicitly still passes
    result.stdout.fnmatch_lines(
        [
            "*test_default_policy*",
            "*RobustnessFailure: robustness gate FAILED: the always-fail policy rejects every model*",
            "*required*(always-fail)*",
        ]
    )
    assert "test_explicit_policy_wins FAILED" not in result.stdout.str()

    pytester.makeini("[pytest]\nrobust_policy = always-fail\n")
    pytester.runpytest(*args).assert_outcomes(passed=1, failed=1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "nonesuch",
            "*--robust-policy nonesuch: unknown policy; built-in policies: *point-estimate*lower-bound*",
        ),
        ("bad name!", "*invalid policy name 'bad name!'*"),
    ],
)
def test_unknown_policy_is_a_usage_error(pytester: pytest.Pytester, value: str, message: str) -> None:
    pytester.makeconftest(POLICY_CONFTEST)  # a plugin that knows another name does not change that
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(f"--robust-policy={value}", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_policy_hook_must_return_a_policy(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("def pytest_robust_make_policy(name, config):\n    return 'strict please'\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--robust-policy=mine", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest_robust_make_policy returned str, which has no decide(*"])


SECTIONS_CONFTEST = BASE + textwrap.dedent(
    """
    from pytest_robust.hookspec import ReportSection

    def pytest_robust_report_sections(config, results):
        attacks = sorted({r["evaluation"]["attack"]["name"] for r in results})
        results.clear()  # a copy: the report must not change
        return [
            ReportSection(title="Sign-off <b>bold</b>",
                          text=f"<script>alert(1)</script> {len(attacks)} attack(s): {attacks}"),
            ReportSection(title="Ward table", headers=["ward", "note"], rows=[["A & E", "<i>ok</i>"]]),
        ]
    """
)


def test_report_sections_appear_escaped(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SECTIONS_CONFTEST)
    pytester.makepyfile(
        f"""
        def test_gate(assert_robust, model):
            assert_robust(model, "none", eps=0, min_acc=0.0, n=16, {CHECKS_OFF})
        """
    )
    result = pytester.runpytest(
        "--robust-profile=smoke", "--robust-device=cpu", "--robust-report=out", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1)
    run = pytester.path / "out" / "latest"
    page = (run / "report.html").read_text(encoding="utf-8")
    for raw in ("<script>", "<i>ok</i>", "<b>bold</b>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 1 attack(s): [&#39;none&#39;]" in page
    assert "<h2>Sign-off &lt;b&gt;bold&lt;/b&gt;</h2>" in page
    assert '<td class="l">A &amp; E</td><td class="l">&lt;i&gt;ok&lt;/i&gt;</td>' in page
    assert page.index("Sign-off") < page.index('<h2 id="tests">')

    doc = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert [s["title"] for s in doc["sections"]] == ["Sign-off <b>bold</b>", "Ward table"]
    assert len(doc["details"]) == 1  # the plugin cleared its copy only

    md = pytester.run(sys.executable, "-m", "pytest_robust.report.markdown", str(run / "results.json"))
    assert md.ret == 0
    md.stdout.fnmatch_lines(
        ["### Sign-off &lt;b&gt;bold&lt;/b&gt;", "| ward | note |", "| A &amp; E | &lt;i&gt;ok&lt;/i&gt; |"]
    )


def test_a_bad_report_section_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        BASE + "\ndef pytest_robust_report_sections(config, results):\n    return ['just a string']\n"
    )
    pytester.makepyfile(
        f"""
        def test_gate(assert_robust, model):
            assert_robust(model, "none", eps=0, min_acc=0.0, n=16, {CHECKS_OFF})
        """
    )
    result = pytester.runpytest(
        "--robust-profile=smoke", "--robust-device=cpu", "--robust-report=out", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*the report could not be written: RobustConfigError: pytest_robust_report_sections "
            "(implemented by *conftest.py): pytest_robust_report_sections returned str at index 0*"
        ]
    )
    assert not (pytester.path / "out" / "latest").exists()
