"""The AutoAttack adapter: class-count-aware sub-attacks, budgets, backends, and side-effect shielding.

The real-library tests use a tiny MLP trained in a module-scoped fixture on synthetic 8x8 images
whose class signal has a per-sample amplitude, so robustness varies from point to point: some
points survive small eps and all break at 64/255. The backend-wiring tests inject fake
``pyautoattack`` / ``autoattack`` modules with the real constructors' signatures.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import sys
import types
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
import torch
from torch import nn

from pytest_robust.attacks.autoattack import MIN_CLASSES, AutoAttack, auto_attacks
from pytest_robust.attacks.base import seed_from
from pytest_robust.attacks.gradient import PGD
from pytest_robust.errors import AttackUnavailableError, RobustConfigError, RobustModelError
from pytest_robust.perturbation import check_perturbation
from pytest_robust.threat import ThreatModel

HAS_BACKEND = any(importlib.util.find_spec(m) is not None for m in ("pyautoattack", "autoattack"))
needs_backend = pytest.mark.skipif(not HAS_BACKEND, reason="needs pyautoattack or autoattack")
ADAPTER_LOGGER = "pytest_robust.attacks.autoattack"

Data = tuple[nn.Module, torch.Tensor, torch.Tensor]


def make_data(n: int, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gray images plus ``a * pattern[y]`` (a random ±1 pattern per class) plus noise."""
    patterns = torch.randint(0, 2, (n_classes, 3, 8, 8), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    amplitude = 0.005 + 0.1 * torch.rand(n, 1, 1, 1, generator=g)
    noise = 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    return (0.5 + amplitude * (2 * patterns[y].float() - 1) + noise).clamp(0, 1), y


def train(n_classes: int, n_test: int) -> Data:
    torch.manual_seed(0)
    x, y = make_data(400, n_classes, seed=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval().requires_grad_(False)
    x_test, y_test = make_data(n_test, n_classes, seed=2)
    return model, x_test, y_test


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add overhead, and on a busy 2-core machine they
    oversubscribe the CPU (measured: 20x slower). Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def binary() -> Data:
    return train(2, 200)


@pytest.fixture(scope="module")
def three_class() -> Data:
    return train(3, 40)


@pytest.fixture(scope="module")
def five_class() -> Data:
    return train(5, 60)


def n_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x).argmax(dim=1) == y).sum())


def run(attack: Any, data: Data, threat: ThreatModel, seed: int = 0) -> torch.Tensor:
    model, x, y = data
    x_before = x.clone()
    x_adv: torch.Tensor = attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(x, x_before), "the attack modified its input in place"
    check_perturbation(x_adv, x, threat, attack=attack.name)
    return x_adv


def linf(k: int) -> ThreatModel:
    return ThreatModel.of("Linf", k / 255)


@pytest.fixture
def dummy_tracer() -> Iterator[Any]:
    """A trace function installed for the test (the caller's coverage tool / debugger stand-in)."""

    def tracer(frame: FrameType, event: str, arg: Any) -> None:
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield tracer
    finally:
        sys.settrace(previous)


# ---------------------------------------------------------------- real library


@needs_backend
def test_binary_default_budgets_over_eps(binary: Data) -> None:
    """Published budgets on 2 classes, at eps where many points stay robust: no crash (#76)."""
    model, x, y = binary
    clean = n_correct(model, x, y)
    counts = {}
    for k in (0, 1, 4, 16, 64):
        x_adv = run(AutoAttack(), binary, linf(k))
        counts[k] = n_correct(model, x_adv, y)
        if k == 0:
            assert torch.equal(x_adv, x)
    assert counts[0] == clean
    assert counts[1] > 0, "no point left robust: the test no longer covers the #76 situation"
    assert counts[16] < clean
    assert counts[64] < counts[1]
    ks = sorted(counts)
    for lo, hi in itertools.pairwise(ks):
        assert counts[hi] <= counts[lo] + 1, f"robust count rose from eps {lo}/255 to {hi}/255: {counts}"


@needs_backend
def test_binary_l2(binary: Data) -> None:
    model, x, y = binary
    x_adv = run(AutoAttack(apgd_steps=20, square_queries=200), binary, ThreatModel.of("L2", 0.5))
    assert n_correct(model, x_adv, y) < n_correct(model, x, y)


@needs_backend
def test_fab_t_allowed_on_binary_with_one_target(binary: Data) -> None:
    model, x, y = binary
    x_adv = run(AutoAttack(attacks=("fab-t",)), (model, x[:50], y[:50]), linf(16))
    assert n_correct(model, x_adv, y[:50]) < n_correct(model, x[:50], y[:50])


@pytest.mark.parametrize(
    ("attacks", "needs"),
    [(("apgd-dlr",), ">= 3 classes"), (("apgd-ce", "apgd-t"), ">= 4 classes"), (("apgd-t",), ">= 4")],
)
def test_dlr_attacks_rejected_on_binary(binary: Data, attacks: tuple[str, ...], needs: str) -> None:
    with pytest.raises(RobustConfigError, match=needs) as info:
        run(AutoAttack(attacks=attacks), binary, linf(4))
    assert "Valid for 2 classes: apgd-ce, fab, fab-t, square" in str(info.value)


def test_apgd_t_rejected_on_three_classes(three_class: Data) -> None:
    with pytest.raises(RobustConfigError, match=r"apgd-t needs >= 4 classes"):
        run(AutoAttack(attacks=("apgd-t",)), three_class, linf(4))


@needs_backend
def test_three_classes_auto_runs_and_stays_quiet(
    three_class: Data, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model, x, y = three_class
    caplog.set_level(logging.DEBUG, logger=ADAPTER_LOGGER)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x_adv = run(AutoAttack(apgd_steps=10, square_queries=100), three_class, linf(8))
    assert n_correct(model, x_adv, y) < n_correct(model, x, y)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""
    # pyautoattack warns (wrongly) that 3 classes cannot use the targeted DLR loss: logged at debug
    forwarded = [r for r in caplog.records if r.name == ADAPTER_LOGGER and "autoattack" in r.getMessage()]
    assert forwarded
    assert all(r.levelno == logging.DEBUG for r in forwarded)


@needs_backend
def test_five_classes_standard_version(five_class: Data) -> None:
    model, x, y = five_class
    x_adv = run(AutoAttack(apgd_steps=10, square_queries=100), five_class, linf(8))
    assert n_correct(model, x_adv, y) < n_correct(model, x, y)


@needs_backend
def test_deterministic_and_no_global_side_effects(binary: Data, dummy_tracer: Any) -> None:
    model, x, y = binary
    attack = AutoAttack(apgd_steps=20, square_queries=300)
    data = (model, x[:100], y[:100])
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = run(attack, data, linf(8), seed=7)
    assert sys.gettrace() is dummy_tracer, "the library's sys.settrace(None) leaked"
    assert torch.equal(torch.get_rng_state(), state), "the library's manual_seed leaked"
    torch.manual_seed(2)  # a different global RNG state must not matter
    assert torch.equal(run(attack, data, linf(8), seed=7), first)
    # APGD ends on the same vertex of the eps-box from any start on this near-linear model, so the
    # seed shows only in Square's random search
    square = AutoAttack(attacks=("square",), square_queries=300)
    assert not torch.equal(run(square, data, linf(8), seed=7), run(square, data, linf(8), seed=8))


@needs_backend
def test_pgd_and_apgd_ce_agree(binary: Data, record_property: Any) -> None:
    """Our PGD-20 and the adapter's APGD-CE measure about the same robust accuracy at 8/255."""
    model, x, y = binary
    n, clean = len(y), n_correct(model, x, y)
    pgd = n_correct(model, run(PGD(), binary, linf(8)), y)
    apgd = n_correct(model, run(AutoAttack(attacks=("apgd-ce",)), binary, linf(8)), y)
    record_property("clean/pgd/apgd_ce", f"{clean}/{pgd}/{apgd} of {n}")
    assert abs(pgd - apgd) <= 0.03 * n
    assert max(pgd, apgd) <= clean - 0.2 * n


# ---------------------------------------------------------------- configuration


def test_auto_attack_sets() -> None:
    assert auto_attacks(2) == ("apgd-ce", "square")
    assert auto_attacks(3) == ("apgd-ce", "apgd-dlr", "fab-t", "square")
    assert auto_attacks(10) == ("apgd-ce", "apgd-t", "fab-t", "square")
    for n in (2, 3, 4, 10):
        assert all(MIN_CLASSES[a] <= n for a in auto_attacks(n))
    with pytest.raises(RobustModelError):
        auto_attacks(1)


BUDGETS = ["apgd_steps", "apgd_restarts", "square_queries", "fab_restarts", "batch_size"]


@pytest.mark.parametrize("field", BUDGETS)
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_budget_validation(field: str, value: Any) -> None:
    with pytest.raises(RobustConfigError, match=f"AutoAttack {field} must be (an integer|>= 1)"):
        AutoAttack(**{field: value})


def test_attack_name_and_backend_validation() -> None:
    with pytest.raises(RobustConfigError, match=r"unknown AutoAttack sub-attack 'pgd'.*apgd-ce, apgd-dlr"):
        AutoAttack(attacks=("apgd-ce", "pgd"))
    with pytest.raises(RobustConfigError, match="empty"):
        AutoAttack(attacks=())
    with pytest.raises(RobustConfigError, match="twice"):
        AutoAttack(attacks=("square", "Square"))
    with pytest.raises(RobustConfigError, match="backend"):
        AutoAttack(backend="foolbox")
    assert AutoAttack(attacks=[" APGD-CE "]).attacks == ("apgd-ce",)  # type: ignore[arg-type]


def test_config_and_describe() -> None:
    auto = AutoAttack()
    assert json.loads(json.dumps(auto.config())) == {
        "name": "autoattack",
        "backend": "auto",
        "attacks": "auto",
        "apgd_steps": 100,
        "apgd_restarts": 1,
        "square_queries": 5000,
        "fab_restarts": 1,
        "batch_size": 500,
        "early_exit": True,
    }
    assert auto.describe().startswith("AutoAttack(auto: APGD-CE+Square for 2 classes")
    explicit = AutoAttack(attacks=("apgd-ce", "square"))
    assert explicit.config()["attacks"] == ["apgd-ce", "square"]
    assert explicit.describe() == "AutoAttack(APGD-CE 100 steps x1 restart, early exit + Square 5000 queries)"
    library = AutoAttack(attacks=("apgd-ce", "square"), early_exit=False)
    assert library.describe() == "AutoAttack(APGD-CE 100 steps x1 restart + Square 5000 queries)"
    assert library.config()["early_exit"] is False


def test_model_without_class_axis(binary: Data) -> None:
    _, x, y = binary
    one_logit = nn.Sequential(nn.Flatten(), nn.Linear(192, 1))
    for attack in (AutoAttack(), AutoAttack(attacks=("apgd-ce",))):
        with pytest.raises(RobustModelError, match=">= 2 classes"):
            attack.perturb(one_logit, x, y, linf(4), generator=torch.Generator())
    with pytest.raises(RobustModelError, match=r"\(batch, classes\) logits"):
        AutoAttack().perturb(nn.Flatten(0), x, y, linf(4), generator=torch.Generator())


# ---------------------------------------------------------------- backends (fake modules)


class FakeSubAttack:
    """One of the library's sub-attack objects: records its calls and misbehaves like the real ones."""

    def __init__(self, owner: FakeAutoAttackBase, kind: str, **budget: Any) -> None:
        self.owner, self.kind = owner, kind
        self.__dict__.update(budget)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.owner.calls.append({"perturb": self.kind, "n": x.shape[0], "adversary": self.owner})
        torch.manual_seed(1234)
        sys.settrace(None)
        print("fake autoattack stdout")
        print("fake autoattack stderr", file=sys.stderr)
        warnings.warn("fake attack warning", stacklevel=1)
        logging.getLogger("auto-attack").warning("fake logger warning")
        return (x + 1 / 255).clamp(0, 1)


class FakeAutoAttackBase:
    """Stands in for the library: records calls; its sub-attack objects misbehave as the real ones do."""

    calls: list[dict[str, Any]]

    def _init(self, model: nn.Module, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.calls.append({"init": kwargs})
        self.apgd = FakeSubAttack(self, "apgd", n_iter=100, n_restarts=5)
        self.apgd_targeted = FakeSubAttack(self, "apgd-t", n_iter=100, n_restarts=1, n_target_classes=9)
        self.fab = FakeSubAttack(self, "fab", n_restarts=5, n_target_classes=9)
        self.square = FakeSubAttack(self, "square", n_queries=5000)

    def run_standard_evaluation(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the adapter runs the sub-attack objects directly, with the checks once")


def fake_checks(calls: list[dict[str, Any]]) -> types.ModuleType:
    """The library's ``checks`` module: every check is recorded and warns (as with ``logger=None``)."""
    checks = types.ModuleType("checks")

    def make(name: str) -> Any:
        def check(*args: Any, logger: Any = "missing", **kwargs: Any) -> int:
            assert logger is None, "the adapter passes logger=None, so the library's warnings come back"
            calls.append({"check": name, "args": args, "kwargs": kwargs})
            warnings.warn(Warning(f"fake {name} warning"), stacklevel=1)
            return 2

        return check

    for name in (
        "check_randomized",
        "check_range_output",
        "check_dynamic",
        "check_n_classes",
        "check_square_sr",
    ):
        setattr(checks, name, make(name))
    return checks


def fake_module(name: str) -> tuple[types.ModuleType, list[dict[str, Any]]]:
    """A module named like the backend, whose AutoAttack has that backend's signatures."""
    calls: list[dict[str, Any]] = []

    class Upstream(FakeAutoAttackBase):
        def __init__(
            self,
            model: nn.Module,
            norm: str = "Linf",
            eps: float = 0.3,
            seed: int | None = None,
            verbose: bool = True,
            attacks_to_run: list[str] | None = None,
            version: str = "standard",
            is_tf_model: bool = False,
            device: Any = "cuda",
            log_path: str | None = None,
        ) -> None:
            self._init(
                model,
                {
                    "norm": norm,
                    "eps": eps,
                    "seed": seed,
                    "verbose": verbose,
                    "attacks_to_run": attacks_to_run,
                    "version": version,
                    "device": device,
                    "log_path": log_path,
                },
            )

    class PyAutoAttack(FakeAutoAttackBase):
        def __init__(
            self,
            model: nn.Module,
            *,
            attacks: list[str] | None = None,
            device: Any = "cpu",
            eps: float = 0.3,
            norm: str = "Linf",
            seed: int | None = None,
            version: str = "standard",
        ) -> None:
            self._init(
                model,
                {
                    "attacks": attacks,
                    "device": device,
                    "eps": eps,
                    "norm": norm,
                    "seed": seed,
                    "version": version,
                },
            )

    cls = Upstream if name == "autoattack" else PyAutoAttack
    cls.calls = calls
    module = types.ModuleType(name)
    module.AutoAttack = cls  # type: ignore[attr-defined]
    module.checks = fake_checks(calls)  # type: ignore[attr-defined]
    return module, calls


@pytest.mark.parametrize(
    ("backend", "blocked"),
    [("autoattack", None), ("auto", "pyautoattack"), ("pyautoattack", "autoattack"), ("auto", None)],
)
def test_backend_wiring(
    binary: Data,
    monkeypatch: pytest.MonkeyPatch,
    dummy_tracer: Any,
    backend: str,
    blocked: str | None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    expect = "autoattack" if backend == "autoattack" or blocked == "pyautoattack" else "pyautoattack"
    module, calls = fake_module(expect)
    monkeypatch.setitem(sys.modules, expect, module)
    if blocked:
        monkeypatch.setitem(sys.modules, blocked, None)
    caplog.set_level(logging.DEBUG, logger=ADAPTER_LOGGER)
    _model, x, _y = binary
    attack = AutoAttack(
        backend=backend,
        attacks=("apgd-ce", "fab-t", "square"),
        apgd_steps=10,
        apgd_restarts=2,
        square_queries=77,
        fab_restarts=3,
        batch_size=64,
        early_exit=False,  # the library's APGD
    )
    state = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x_adv = run(attack, binary, linf(4), seed=5)
        calls.clear()
        outcome = attack.run(_model, x, _y, linf(4), generator=torch.Generator().manual_seed(5))
    # the library's result is returned for the samples it fooled; the others keep their input
    shifted = (x + 1 / 255).clamp(0, 1)
    with torch.no_grad():
        fooled = _model(shifted).argmax(dim=1) != _y
    assert 0 < int(fooled.sum()) < len(x)
    assert torch.equal(x_adv[fooled], shifted[fooled])
    assert torch.equal(x_adv[~fooled], x[~fooled])
    assert outcome.broken_by == tuple("apgd-ce" if f else "" for f in fooled.tolist())
    # the library's own checks run once per call, before the attacks, and their warnings are flags
    checks = [c["check"] for c in calls if "check" in c]
    assert checks == [
        "check_randomized",
        "check_range_output",
        "check_dynamic",
        "check_n_classes",
        "check_square_sr",
    ]
    n_cls_args = next(c["args"] for c in calls if c.get("check") == "check_n_classes")
    assert n_cls_args == (2, ["apgd-ce", "fab-t", "square"], 1, 1)
    square_sr = next(c["args"][0] for c in calls if c.get("check") == "check_square_sr")
    robust = 1 - int(fooled.sum()) / len(x)
    assert square_sr == {"clean": 1.0, "apgd-ce": robust, "fab-t": robust, "square": robust}
    for text in ("fake check_randomized warning", "fake check_square_sr warning", "fake logger warning"):
        assert text in outcome.flags  # the library's own check warnings are surfaced
    # one sub-attack at a time, in the library's batches, each on the samples still robust
    runs = [(c["perturb"], c["n"]) for c in calls if "perturb" in c]
    left = len(x) - int(fooled.sum())
    assert runs == [
        *[("apgd", min(64, len(x) - i)) for i in range(0, len(x), 64)],
        *[("fab", min(64, left - i)) for i in range(0, left, 64)],
        *[("square", min(64, left - i)) for i in range(0, left, 64)],
    ]
    inits = [c["init"] for c in calls if "init" in c]
    key = "attacks_to_run" if expect == "autoattack" else "attacks"
    assert inits[0][key] == ["apgd-ce"]
    assert inits[-1][key] == ["square"]
    init = inits[0]
    assert (init["eps"], init["norm"], init["version"]) == (4 / 255, "Linf", "custom")
    assert init["seed"] == seed_from(torch.Generator().manual_seed(5))
    assert torch.device(init["device"]) == x.device
    if expect == "autoattack":
        assert init["verbose"] is False
    adversary = next(c["adversary"] for c in calls if c.get("perturb") == "fab")
    for apgd in (adversary.apgd, adversary.apgd_targeted):
        assert (apgd.n_iter, apgd.n_restarts, apgd.n_iter_2, apgd.n_iter_min) == (10, 2, 2, 1)
    assert adversary.apgd_targeted.n_target_classes == 1
    assert adversary.fab.n_target_classes == 1
    assert (adversary.fab.targeted, adversary.fab.n_restarts, adversary.square.n_queries) == (True, 1, 77)
    assert adversary.fab.seed == init["seed"]
    # the caller is shielded from the fake's misbehaviour
    assert sys.gettrace() is dummy_tracer
    assert torch.equal(torch.get_rng_state(), state)
    assert capsys.readouterr() == ("", "")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    expected = (
        "fake autoattack stdout",
        "fake autoattack stderr",
        "fake attack warning",
        "fake logger warning",
    )
    for text in expected:
        assert text in logged
    assert logging.getLogger("auto-attack").handlers == []


def test_early_exit_runs_apgd_natively_and_the_rest_in_the_library(
    binary: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With early exit (the default) APGD-CE is the project's; Square still runs in the library, on
    the samples APGD left robust; the checks run once either way."""
    module, calls = fake_module("pyautoattack")
    monkeypatch.setitem(sys.modules, "pyautoattack", module)
    model, x, y = binary
    outcome = AutoAttack(apgd_steps=10, square_queries=50).run(
        model, x, y, linf(4), generator=torch.Generator().manual_seed(0)
    )
    apgd_left = [i for i, b in enumerate(outcome.broken_by) if b != "apgd-ce"]
    assert [c["perturb"] for c in calls if "perturb" in c] == ["square"]
    assert next(c["n"] for c in calls if "perturb" in c) == len(apgd_left)
    assert [c["init"]["attacks"] for c in calls if "init" in c] == [["square"]]
    assert [c["check"] for c in calls if "check" in c][:4] == [
        "check_randomized",
        "check_range_output",
        "check_dynamic",
        "check_n_classes",
    ]
    # without the library checks and with only native sub-attacks, the library is not even imported
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    alone = AutoAttack(attacks=("apgd-ce",), apgd_steps=10, library_checks=False)
    assert alone.run(model, x, y, linf(4), generator=torch.Generator().manual_seed(0)).broken_by


def test_n_target_classes_follow_class_count(five_class: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    module, calls = fake_module("pyautoattack")
    monkeypatch.setitem(sys.modules, "pyautoattack", module)
    run(AutoAttack(early_exit=False), five_class, linf(4))
    inits = [c["init"]["attacks"] for c in calls if "init" in c]
    assert inits == [["apgd-ce"], ["apgd-t"], ["fab-t"], ["square"]][: len(inits)]
    adversary = next(c["adversary"] for c in calls if "perturb" in c)
    assert adversary.apgd_targeted.n_target_classes == 4
    assert adversary.fab.n_target_classes == 4
    assert (adversary.apgd.n_iter, adversary.apgd.n_restarts, adversary.square.n_queries) == (100, 1, 5000)


def test_eps_zero_and_empty_batch_skip_the_library(binary: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    module, calls = fake_module("pyautoattack")
    monkeypatch.setitem(sys.modules, "pyautoattack", module)
    model, x, y = binary
    assert torch.equal(run(AutoAttack(), binary, linf(0)), x)
    empty = AutoAttack().perturb(model, x[:0], y[:0], linf(4), generator=torch.Generator())
    assert empty.shape == (0, 3, 8, 8)
    assert calls == []


@pytest.mark.parametrize(
    ("backend", "hint"),
    [
        ("auto", "pip install pyautoattack"),
        ("pyautoattack", "pip install pyautoattack"),
        ("autoattack", "fra31/auto-attack"),
    ],
)
def test_missing_backend(binary: Data, monkeypatch: pytest.MonkeyPatch, backend: str, hint: str) -> None:
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    with pytest.raises(AttackUnavailableError, match=hint) as info:
        run(AutoAttack(backend=backend), binary, linf(4))
    assert isinstance(info.value, ImportError)
