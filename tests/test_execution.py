"""Execution settings (issue #12): memory format and bf16 autocast per model, measured, not guessed.

The table decides deterministically for the reference timm architectures, everything else is
fp32; a faster setting is used only when the fidelity check agrees; the user's model is left as it
came; the result cache never serves a result of one setting for another; every result records it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust import execution as ex
from pytest_robust.attacks import FGSM, PGD
from pytest_robust.data.dataset import ImageDataset
from pytest_robust.evaluate import EvalResult, evaluate, execution_plan
from pytest_robust.execution import (
    BF16,
    CHANNELS_LAST,
    CHANNELS_LAST_BF16,
    FP32,
    MIN_SPEEDUP,
    TABLE,
    Plan,
    Setting,
    architecture_of,
    choose,
    plan_execution,
)
from pytest_robust.models import NormalizedModel, model_fingerprint, small_cnn
from pytest_robust.plugin import memoised_evaluate
from pytest_robust.result_cache import ResultCache
from pytest_robust.soundness import SoundnessConfig
from pytest_robust.threat import Norm, ThreatModel
from tests.conftest import make_blobs
from tests.inner import PRELUDE, run_smoke

# large enough that FGSM breaks some samples of the easy blobs
THREAT = ThreatModel(norm=Norm.LINF, eps=0.08)
OFF = SoundnessConfig(enabled=False)
CPU = torch.device("cpu")


def plan(candidate: Setting) -> Plan:
    """A plan proposing ``candidate`` (what a table row or a calibration would give)."""
    return Plan(mode="auto", candidate=candidate, source="table", reason="test row", arch="test")


@pytest.fixture(scope="module")
def few() -> ImageDataset:
    return make_blobs(ex.MIN_SAMPLES, seed=5)  # the fewest samples a setting other than fp32 is tried on


def test_below_the_minimum_samples_a_setting_is_not_tried(trained_tiny: nn.Module, few: ImageDataset) -> None:
    """A small evaluation (the smoke profile's 32 samples) runs in fp32: the fidelity check would cost
    more than the setting saves; the record says so."""
    small = few.select(list(range(ex.MIN_SAMPLES - 1)))
    result = evaluate(trained_tiny, small, FGSM(), THREAT, device="cpu", soundness=OFF, execution=plan(BF16))
    record = result.execution
    assert (record["candidate"], record["used"]) == ("bf16", "fp32")
    assert record["fidelity"]["status"] == "skipped"
    assert f"fewer than {ex.MIN_SAMPLES}" in record["why"]
    full = evaluate(trained_tiny, few, FGSM(), THREAT, device="cpu", soundness=OFF, execution=plan(BF16))
    assert full.execution["fidelity"]["status"] != "skipped"


def _autocast_on(x: torch.Tensor) -> bool:
    return bool(torch.is_autocast_enabled(x.device.type))


class MasksUnderBf16(nn.Module):
    """The wrapped model in fp32; under bf16 autocast the same logits with a zero input gradient, so
    the attack finds nothing there: the fast setting flips robust / broken decisions."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        if _autocast_on(x):
            return out.detach().float() + 0 * out.float()
        return out


class Recorder(nn.Module):
    """The wrapped model, noting for each call whether its input was channels-last and autocast on."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = (
            x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        )
        self.calls.append((channels_last, _autocast_on(x)))
        out: torch.Tensor = self.net(x)
        return out


# --- the table and the plan -------------------------------------------------------------------


def test_the_rule_takes_the_fastest_candidate_only_when_clearly_faster() -> None:
    assert choose({}) == FP32
    assert choose({"bf16": MIN_SPEEDUP - 0.01, "channels_last": 0.5}) == FP32
    assert choose({"bf16": 1.3, "channels_last": 1.6, "channels_last+bf16": 1.2}) == CHANNELS_LAST
    assert choose({"bf16": 1.3, "channels_last": 1.0, "channels_last+bf16": 1.7}) == CHANNELS_LAST_BF16
    assert choose({"bf16": 1.3, "channels_last": 1.42, "channels_last+bf16": 1.22}) == FP32
    assert choose({"bf16": float("nan")}) == FP32
    assert [Setting.parse(s.name) for s in ex.CANDIDATES] == list(ex.CANDIDATES)


def test_the_table_lists_the_reference_architectures_with_measured_decisions() -> None:
    from pytest_robust.architectures import REFERENCE_ARCHITECTURES

    assert {arch for arch, _ in TABLE} == set(REFERENCE_ARCHITECTURES)
    assert {device for _, device in TABLE} == {"cpu"}  # only what was measured
    for row in TABLE.values():
        assert set(row.speedups) == {"channels_last", "bf16", "channels_last+bf16"}
        assert row.setting == choose(row.speedups)
    # the measurement of BENCHMARKS.md (2026-12-02): bf16 alone slows the depthwise MobileNetV2 down,
    # and its channels-last gain (1.42x) is below the margin that pays for the fidelity check
    assert TABLE["mobilenetv2_100", "cpu"].setting == FP32
    assert TABLE["resnet50", "cpu"].setting == FP32
    assert TABLE["efficientnet_b2", "cpu"].setting == FP32
    assert TABLE["convnext_tiny", "cpu"].setting.bf16


@pytest.mark.parametrize("arch", ["mobilenetv2_100", "efficientnet_b2"])
def test_auto_plans_a_timm_model_from_its_table_row(arch: str) -> None:
    from pytest_robust.architectures import create_model

    model = create_model(arch, num_classes=2)
    assert architecture_of(model) == arch
    p = plan_execution(model, "auto", device=CPU)
    assert (p.source, p.arch, p.candidate) == ("table", arch, TABLE[arch, "cpu"].setting)
    assert p.speedups == dict(TABLE[arch, "cpu"].speedups)
    assert p.to_json()["table"] == ex.TABLE_MEASURED
    assert plan_execution(model, "auto", device=CPU) == p  # deterministic: nothing timed
    # no measured row for the device type: fp32, and said why
    gpu = plan_execution(model, "auto", device=torch.device("cuda"))
    assert (gpu.candidate, gpu.source) == (FP32, "none")
    assert "no measured row" in gpu.reason
    # the opt-out
    assert plan_execution(model, "fp32", device=CPU).candidate == FP32
    assert plan_execution(model, "auto", device=CPU, randomized=True).candidate == FP32


class OwnNet(nn.Module):
    """A user's own convolutional model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.conv(x).mean(dim=(2, 3)))
        return out


def _timm_with_extra_head() -> nn.Module:
    from pytest_robust.architectures import create_model

    class Extra(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = create_model("mobilenetv2_100", num_classes=2)
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(x) * self.scale
            return out

    return Extra()


@pytest.mark.parametrize(
    "make",
    [
        OwnNet,
        small_cnn,
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(192, 2)),  # no convolution at all
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(192, 1)),  # one sigmoid logit
        lambda: NormalizedModel(OwnNet()).double(),
        _timm_with_extra_head,  # parameters outside the timm network: not that architecture
    ],
    ids=["own", "small_cnn", "mlp", "one-logit", "float64", "timm-plus-head"],
)
def test_auto_gives_every_other_model_fp32_and_says_why(make: Any) -> None:
    model = make()
    assert architecture_of(model) is None
    p = plan_execution(model, "auto", device=CPU)
    assert (p.candidate, p.source) == (FP32, "none")
    assert p.reason


def test_unknown_modes_are_config_errors(trained_tiny: nn.Module, few: ImageDataset) -> None:
    from pytest_robust.errors import RobustConfigError
    from pytest_robust.gate import assert_robust

    with pytest.raises(RobustConfigError, match="execution mode"):
        evaluate(trained_tiny, few, FGSM(), THREAT, device="cpu", execution="fast")
    with pytest.raises(RobustConfigError, match="execution must be one of auto, fp32, calibrate"):
        assert_robust(trained_tiny, "fgsm", eps=0.01, min_acc=0, data=few, execution="bf16")


# --- the fidelity check -----------------------------------------------------------------------


def test_a_setting_that_changes_decisions_falls_back_to_fp32(
    trained_tiny: nn.Module, few: ImageDataset
) -> None:
    model = MasksUnderBf16(trained_tiny)
    reference = evaluate(model, few, FGSM(), THREAT, device="cpu", soundness=OFF, execution="fp32")
    assert reference.n_robust < reference.n_clean_correct  # FGSM breaks some in fp32
    result = evaluate(model, few, FGSM(), THREAT, device="cpu", soundness=OFF, execution=plan(BF16))
    record = result.execution
    assert (record["candidate"], record["used"]) == ("bf16", "fp32")
    assert record["fidelity"]["status"] == "disagree"
    assert record["fidelity"]["mismatches"]
    assert "fidelity check disagree" in record["why"]
    # the evaluation is the fp32 one, decision for decision
    assert result.robust_correct == reference.robust_correct
    assert result.adv_pred == reference.adv_pred


def test_a_setting_the_model_cannot_run_falls_back_to_fp32(
    trained_tiny: nn.Module, few: ImageDataset
) -> None:
    class ViewOnly(nn.Module):  # .view() fails on a channels-last input
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net[1:](x.view(x.shape[0], -1))
            return out

    result = evaluate(
        ViewOnly(trained_tiny),
        few,
        FGSM(),
        THREAT,
        device="cpu",
        soundness=OFF,
        execution=plan(CHANNELS_LAST),
    )
    assert result.execution["used"] == "fp32"
    assert result.execution["fidelity"]["status"] == "error"
    assert "RuntimeError" in result.execution["fidelity"]["detail"]


def test_an_agreeing_setting_runs_the_attack_and_only_the_attack(
    trained_tiny: nn.Module, few: ImageDataset
) -> None:
    reference = evaluate(
        trained_tiny, few, PGD(steps=3), THREAT, device="cpu", soundness=OFF, execution="fp32"
    )
    model = Recorder(trained_tiny)
    result = evaluate(model, few, PGD(steps=3), THREAT, device="cpu", execution=plan(CHANNELS_LAST))
    assert (result.execution["used"], result.execution["fidelity"]["status"]) == ("channels_last", "agree")
    assert result.execution["fidelity"]["samples"] == ex.PROBE_SAMPLES
    # an MLP computes the same on a channels-last input: the same numbers as fp32
    assert result.robust_correct == reference.robust_correct
    assert result.clean_scores == reference.clean_scores
    assert (True, False) in model.calls  # the attack saw channels-last inputs ...
    assert (False, False) in model.calls  # ... the clean pass, decisions and checks did not
    assert all(not autocast for _, autocast in model.calls)
    assert result.sound


def test_the_fidelity_outcome_is_reused_in_process(
    trained_tiny: nn.Module, few: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    decisions = ex._decisions

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return decisions(*args, **kwargs)

    monkeypatch.setattr(ex, "_decisions", counted)
    cache: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"device": "cpu", "soundness": OFF, "execution_cache": cache}
    first = evaluate(trained_tiny, few, FGSM(), THREAT, execution=plan(CHANNELS_LAST), **kwargs)
    again = evaluate(trained_tiny, few, FGSM(), THREAT, execution=plan(CHANNELS_LAST), examples=2, **kwargs)
    assert len(calls) == 2
    assert len(cache) == 1
    assert first.execution == again.execution
    evaluate(
        trained_tiny,
        few,
        FGSM(),
        ThreatModel(norm=Norm.LINF, eps=0.05),
        execution=plan(CHANNELS_LAST),
        **kwargs,
    )
    assert len(cache) == 2  # another eps is another check


def test_a_point_only_the_fast_setting_calls_broken_is_attacked_again_in_fp32(
    trained_tiny: nn.Module, few: ImageDataset
) -> None:
    from pytest_robust.attacks import AttackOutcome, run_attack
    from pytest_robust.evaluate import _recheck
    from pytest_robust.models import ClassifierView

    base = ClassifierView(trained_tiny, 2)
    x, y = few.images, few.labels
    correct = base(x).argmax(dim=1) == y
    x, y = x[correct], y[correct]

    class Wrong(nn.Module):  # a "fast view" that calls every point broken
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return -base(inputs)  # type: ignore[no-any-return]

    unmoved = AttackOutcome(x_adv=x.clone())
    logits = base(x).detach()
    merged, new_logits, disputed, broken = _recheck(
        FGSM(),
        base,
        Wrong(),
        trained_tiny,
        FP32,
        x,
        y,
        unmoved,
        logits,
        THREAT,
        torch.Generator().manual_seed(0),
    )
    fp32 = run_attack(FGSM(), base, x, y, THREAT, generator=torch.Generator().manual_seed(0))
    fooled = base(fp32.x_adv).argmax(dim=1) != y
    assert disputed == len(y)  # every point: the fast view says broken, fp32 says robust
    assert broken == int(fooled.sum()) > 0
    assert torch.equal(new_logits.argmax(dim=1) != y, fooled)
    assert torch.equal(merged.x_adv[fooled], fp32.x_adv[fooled])
    assert torch.equal(merged.x_adv[~fooled], x[~fooled])  # the rest keep their (robust) points


def test_nothing_attacked_needs_no_fidelity_check(trained_tiny: nn.Module, few: ImageDataset) -> None:
    clean = ThreatModel(norm=Norm.LINF, eps=0)
    result = evaluate(trained_tiny, few, "none", clean, device="cpu", soundness=OFF, execution=plan(BF16))
    assert (result.execution["used"], result.execution["fidelity"]["status"]) == ("fp32", "skipped")


# --- the user's model is left as it came ------------------------------------------------------


def _state(model: nn.Module) -> list[tuple[Any, ...]]:
    return [
        (name, t.data_ptr(), t.stride(), t.dtype, t.device, t.requires_grad, getattr(t, "grad", None) is None)
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    ]


@pytest.mark.parametrize("setting", [CHANNELS_LAST, BF16, CHANNELS_LAST_BF16], ids=lambda s: s.name)
@pytest.mark.parametrize("user_format", ["contiguous", "channels_last"])
def test_the_users_model_is_unchanged(setting: Setting, user_format: str) -> None:
    few = make_blobs(48, size=16, seed=5)  # small_cnn pools four times
    torch.manual_seed(0)
    model = small_cnn(2, width=4)
    if user_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    model.train()
    before, weights = _state(model), model_fingerprint(model)
    seen: list[bool] = []
    conv = model.net.features[0][0]  # type: ignore[index]
    conv.register_forward_pre_hook(
        lambda m, args: seen.append(m.weight.is_contiguous(memory_format=torch.channels_last))
    )
    result = evaluate(model, few, PGD(steps=2), THREAT, device="cpu", execution=plan(setting))
    assert _state(model) == before
    assert model_fingerprint(model) == weights == result.model["fingerprint"]
    assert model.training
    assert all(m.training for m in model.modules())
    if setting.channels_last and result.execution["used"] == setting.name and user_format == "contiguous":
        assert True in seen
        assert False in seen
    assert result.execution["candidate"] == setting.name


# --- the result cache and the memo never mix settings -----------------------------------------


def test_the_result_cache_keys_the_plan(trained_tiny: nn.Module, few: ImageDataset, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    counts = {"hit": 0, "computed": 0}

    def run(execution: Any, memo: dict[str, Any]) -> EvalResult:
        return memoised_evaluate(  # type: ignore[no-any-return]
            memo, trained_tiny, few, FGSM(), THREAT, device="cpu", soundness=OFF,
            result_cache=cache, counts=counts, execution=execution,
        )  # fmt: skip

    fast = run(plan(CHANNELS_LAST), {})
    plain = run("fp32", {})
    assert counts == {"hit": 0, "computed": 2}
    assert (fast.execution["used"], plain.execution["used"]) == ("channels_last", "fp32")
    assert len(list(tmp_path.rglob("*.json"))) == 2
    assert run(plan(CHANNELS_LAST), {}).execution == fast.execution  # from disk, the same record
    assert run("fp32", {}).execution == plain.execution
    assert counts == {"hit": 2, "computed": 2}
    # a plan that falls back to fp32 is still its own entry: its record says what happened
    masked = MasksUnderBf16(trained_tiny)
    memo: dict[str, Any] = {}
    a = memoised_evaluate(
        memo, masked, few, FGSM(), THREAT, device="cpu", soundness=OFF, execution=plan(BF16)
    )
    b = memoised_evaluate(memo, masked, few, FGSM(), THREAT, device="cpu", soundness=OFF, execution="fp32")
    assert (a.execution["candidate"], b.execution["candidate"]) == ("bf16", "fp32")
    assert len(memo) == 2


def test_the_memo_makes_the_plan_once(trained_tiny: nn.Module, few: ImageDataset) -> None:
    memo: dict[str, Any] = {}
    r = memoised_evaluate(memo, trained_tiny, few, FGSM(), THREAT, device="cpu", soundness=OFF)
    assert r.execution["mode"] == "auto"
    assert r.execution["used"] == "fp32"
    assert r.execution["source"] == "none"
    assert memoised_evaluate(memo, trained_tiny, few, FGSM(), THREAT, device="cpu", soundness=OFF) is r


# --- calibration --------------------------------------------------------------------------------


def test_calibration_is_timed_once_and_read_back(
    few: ImageDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed: list[int] = []

    def fake(*args: Any, **kwargs: Any) -> dict[str, list[float]]:
        timed.append(1)
        return {"fp32": [1.0, 1.0], "channels_last": [0.5, 0.6], "bf16": [2.0], "channels_last+bf16": [0.9]}

    monkeypatch.setattr(ex, "time_settings", fake)
    model = OwnNet()
    first = execution_plan(model, few, "calibrate", device="cpu", calibration_dir=tmp_path)
    again = execution_plan(model, few, "calibrate", device="cpu", calibration_dir=tmp_path)
    assert timed == [1]
    assert first == again
    assert (first.candidate, first.source) == (CHANNELS_LAST, "calibration")
    assert first.speedups == {"channels_last": 1.82, "bf16": 0.5, "channels_last+bf16": 1.11}
    stored = json.loads((tmp_path / f"{first.calibration['key']}.json").read_text())
    assert stored["material"]["shape"] == [ex.PROBE_SAMPLES, 3, 8, 8]
    assert stored["material"]["torch"] == torch.__version__
    # this process keeps it too: without a folder, timed once
    memo: dict[str, Any] = {}
    for _ in range(2):
        execution_plan(model, few, "calibrate", device="cpu", execution_cache=memo)
    assert timed == [1, 1]
    # another input shape is another calibration
    execution_plan(model, make_blobs(20, size=16), "calibrate", device="cpu", calibration_dir=tmp_path)
    assert timed == [1, 1, 1]


def test_calibration_of_models_a_setting_breaks(few: ImageDataset) -> None:
    class ViewMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(192, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.fc(x.view(x.shape[0], -1))
            return out

    p = execution_plan(ViewMLP(), few, "calibrate", device="cpu")
    assert p.source == "calibration"
    assert "channels_last" not in p.speedups  # it cannot run channels-last inputs: not a candidate
    assert set(p.calibration["seconds"]) == {"fp32", "bf16"}
    result = evaluate(ViewMLP(), few, FGSM(), THREAT, device="cpu", soundness=OFF, execution=p)
    assert result.execution["source"] == "calibration"


# --- what is recorded -----------------------------------------------------------------------


def test_the_record_round_trips_and_reaches_the_report(trained_tiny: nn.Module, few: ImageDataset) -> None:
    from pytest_robust.report.results import make_row
    from pytest_robust.report.setup import _execution

    result = evaluate(
        trained_tiny, few, FGSM(), THREAT, device="cpu", soundness=OFF, execution=plan(CHANNELS_LAST)
    )
    d = result.to_json()
    assert set(d["execution"]) >= {
        "mode",
        "candidate",
        "source",
        "reason",
        "arch",
        "speedups",
        "used",
        "why",
        "fidelity",
    }
    assert EvalResult.from_json(json.loads(json.dumps(d))) == result
    assert "execution_s" in result.timings
    old = {k: v for k, v in d.items() if k != "execution"}  # recorded before settings existed
    assert EvalResult.from_json(old).execution == {}

    class Record:
        nodeid, outcome = "t.py::t", "passed"

    verdict = {"interval": [0, 1], "confidence": 0.95, "policy": "p", "passed": True, "reason": ""}
    row = make_row(0, Record(), {"evaluation": d, "verdict": verdict, "min_acc": 0.0})  # type: ignore[arg-type]
    assert (row["execution"], row["execution_candidate"], row["execution_fidelity"]) == (
        "channels_last",
        "channels_last",
        "agree",
    )
    masked = {**d, "execution": {**d["execution"], "used": "fp32", "candidate": "bf16"}}
    assert (
        _execution([d, d, masked, old])
        == "auto: channels_last ×2, fp32 ×1; 1 fell back to fp32 (fidelity check)"
    )
    assert _execution([old]) is None


def test_the_plugin_records_the_mode_and_the_opt_out(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        PRELUDE
        + textwrap.dedent(
            """
            @pytest.fixture(scope="session")
            def tiny():
                return tiny_model()

            @pytest.fixture(scope="session")
            def few():
                return blobs(64, 3)
            """
        )
    )
    pytester.makepyfile(
        test_x=textwrap.dedent(
            """
            import pytest

            def test_default(assert_robust, tiny, few, fgsm, request):
                r = assert_robust(tiny, fgsm, eps=0.02, min_acc=0, data=few)
                ex = r.evaluation.execution
                assert ex["mode"] == request.config.getoption("robust_execution") == "fp32"
                assert (ex["candidate"], ex["used"], ex["source"]) == ("fp32", "fp32", "opt-out")

            @pytest.mark.robust(execution="auto")
            def test_marker(assert_robust, tiny, few, fgsm):
                ex = assert_robust(tiny, fgsm, eps=0.02, min_acc=0, data=few).evaluation.execution
                assert (ex["mode"], ex["used"], ex["source"]) == ("auto", "fp32", "none")
            """
        )
    )
    result = run_smoke(pytester, "--robust-execution=fp32", "--robust-report=rep")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*execution=fp32*"])
    doc = json.loads(next((pytester.path / "rep").glob("*/results.json")).read_text())
    assert doc["manifest"]["config"]["execution"] == "fp32"
    assert {e["mode"] for e in doc["manifest"]["execution"]} == {"fp32", "auto"}
    assert {r["execution"] for r in doc["rows"]} == {"fp32"}
    bad = run_smoke(pytester, "--robust-execution=bf16")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*unknown execution mode 'bf16'; valid: auto, fp32, calibrate*"])
