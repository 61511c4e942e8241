"""The pytest plugin: ``--robust-*`` options, ini keys, the ``robust`` marker, fixtures.

Thin by design: it parses options into a :class:`~pytest_robust.config.RobustConfig`, exposes
fixtures that build attacks, data and models from it, and records every result on the test
report as plain JSON (``user_properties``) so a reporter on the controller can read it under
pytest-xdist. This module imports only pytest and the standard library at import time; torch is
imported when a fixture first needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_robust import config as cfg
from pytest_robust.errors import RobustConfigError, RobustError

# the names the reporter shares live in a leaf module (it imports that, never this one); re-exported
from pytest_robust.keys import (
    BASELINE_KEY as BASELINE_KEY,
)
from pytest_robust.keys import (
    BUILT_KEY as BUILT_KEY,
)
from pytest_robust.keys import (
    CHECKS_KEY as CHECKS_KEY,
)
from pytest_robust.keys import (
    CONFIG_KEY as CONFIG_KEY,
)
from pytest_robust.keys import (
    DEFAULT_REPORT_DIR as DEFAULT_REPORT_DIR,
)
from pytest_robust.keys import DEVICE_KEY as _DEVICE_KEY
from pytest_robust.keys import (
    EXECUTION_KEY as EXECUTION_KEY,
)
from pytest_robust.keys import (
    FINDING as FINDING,
)
from pytest_robust.keys import (
    MEMO_KEY as MEMO_KEY,
)
from pytest_robust.keys import (
    POLICY_KEY as POLICY_KEY,
)
from pytest_robust.keys import (
    PROPERTY as PROPERTY,
)
from pytest_robust.keys import (
    RESULT_COUNTS_KEY as RESULT_COUNTS_KEY,
)
from pytest_robust.keys import (
    RUN_ID_KEY as RUN_ID_KEY,
)
from pytest_robust.keys import WORKER_COUNTS as _WORKER_COUNTS
from pytest_robust.keys import WORKER_INFO as _WORKER_INFO
from pytest_robust.keys import WORKERS_KEY as _WORKERS_KEY

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pytest_robust.attacks import Attack
    from pytest_robust.data.dataset import ImageDataset
    from pytest_robust.gate import RobustResult
    from pytest_robust.policies import NonInferiority, Policy
    from pytest_robust.result_cache import ResultCache


# option name, ini name, parser, default (None: the profile's), help
_OPTIONS: tuple[tuple[str, str, Callable[[str], Any], str | None, str], ...] = (
    (
        "--robust-profile",
        "robust_profile",
        cfg.parse_profile,
        cfg.DEFAULT_PROFILE,
        "profile of defaults: "
        + "; ".join(f"{p.name}: {p.description}" for p in cfg.PROFILES.values())
        + f" (default: {cfg.DEFAULT_PROFILE})",
    ),
    (
        "--robust-device",
        "robust_device",
        cfg.parse_device,
        "auto",
        "device for models and attacks: auto (CUDA when present, else CPU; under pytest-xdist worker "
        "gwI on cuda:(I mod GPUs), one worker per GPU with -n GPUs), cpu, cuda (under pytest-xdist as "
        "auto), cuda:N (every worker on that GPU) (default: auto)",
    ),
    (
        "--robust-seed",
        "robust_seed",
        cfg.parse_seed,
        str(cfg.DEFAULT_SEED),
        f"seed of data generation, attacks and training (default: {cfg.DEFAULT_SEED})",
    ),
    (
        "--robust-seeds",
        "robust_seeds",
        cfg.parse_seeds,
        None,
        "a multi-seed study, e.g. 0,1,2: every test that uses the robust_seed fixture (the benchmark's "
        "checkpoints) runs once per seed, training and attacking with it; the report's seed study gives "
        "each cell's mean and interval across seeds and decides the findings on all of them; data and "
        "splits stay at --robust-seed (default: one seed)",
    ),
    (
        "--robust-n",
        "robust_n",
        cfg.parse_n,
        None,
        "samples per evaluation, or 'all' (default: the profile's)",
    ),
    (
        "--robust-data",
        "robust_data",
        cfg.parse_data,
        None,
        "image folder in ImageFolder layout (class folders, optionally under train/ and test/); "
        "default: the embedded synthetic dermoscopy set",
    ),
    (
        "--robust-cache-dir",
        "robust_cache_dir",
        cfg.parse_path,
        None,
        "where trained checkpoints are cached (default: $PYTEST_ROBUST_CACHE_DIR or the user cache "
        "folder; outside .pytest_cache so --cache-clear keeps them)",
    ),
    (
        "--robust-threads",
        "robust_threads",
        cfg.parse_threads,
        "auto",
        "torch CPU threads per process; auto: all cores, divided among pytest-xdist workers",
    ),
    (
        "--robust-soundness",
        "robust_soundness",
        cfg.parse_soundness,
        "strict",
        "strict: a failed soundness check (masked gradients, randomness, saturation, ...) fails the "
        "gate as UNSOUND; warn: the gate follows the numbers but the result is marked unsound "
        "(default: strict)",
    ),
    (
        "--robust-policy",
        "robust_policy",
        cfg.parse_policy,
        cfg.DEFAULT_POLICY,
        "the gate's policy, by name, for assert_robust without policy=: a built-in one (point-estimate: "
        "the measured robust accuracy; lower-bound: its lower confidence bound; sequential: stop as soon "
        "as an anytime-valid confidence sequence decides; non-inferiority: with --robust-baseline, the "
        "comparison with the baseline) or one a "
        "plugin provides (hook pytest_robust_make_policy); an unknown name lists the valid ones "
        f"(default: {cfg.DEFAULT_POLICY})",
    ),
    (
        "--robust-execution",
        "robust_execution",
        cfg.parse_execution,
        cfg.DEFAULT_EXECUTION,
        "how the attacks run: auto (a measured per-architecture table of memory format and bf16 "
        "autocast; fp32 for models it does not list), fp32 (the model as given: the opt-out), calibrate "
        "(time the settings once per model structure and device, cached under --robust-cache-dir). A "
        "setting other than fp32 is used only when the attack reaches the same per-sample decisions "
        f"as fp32 on a probe batch; every result records it (default: {cfg.DEFAULT_EXECUTION})",
    ),
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add pytest-robust's hook specifications (:mod:`pytest_robust.hookspec`)."""
    from pytest_robust import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("robust", "robustness testing (pytest-robust)")
    for flag, ini, parse, _default, text in _OPTIONS:
        group.addoption(flag, dest=ini, type=parse, default=None, metavar="VALUE", help=text)
        parser.addini(ini, f"default for {flag}", default=None)
    group.addoption(
        "--robust-skip-unreadable",
        dest="robust_skip_unreadable",
        action="store_true",
        default=False,
        help="leave out data images that cannot be read (the report's data source lists them) "
        "instead of stopping the run",
    )
    group.addoption(
        "--robust-retrain",
        dest="robust_retrain",
        action="store_true",
        default=False,
        help="retrain cached models instead of loading them",
    )
    group.addoption(
        "--robust-recompute",
        dest="robust_recompute",
        action="store_true",
        default=False,
        help="do not read the result cache (under --robust-cache-dir): run every evaluation again and "
        "rewrite its entry",
    )
    group.addoption(
        "--robust-report",
        dest="robust_report",
        nargs="?",
        const=DEFAULT_REPORT_DIR,
        default=None,
        metavar="DIR",
        help=f"write an HTML report, results.json and results.csv to DIR/<run id>/ and point "
        f"DIR/latest at it (default DIR: {DEFAULT_REPORT_DIR}/; write --robust-report=DIR to name one)",
    )
    group.addoption(
        "--robust-baseline",
        dest="robust_baseline",
        default=None,
        metavar="DIR",
        help="compare every gate with the accepted model's stored outcome, one JSON file per gate under "
        "DIR (per test id): a missing baseline is written and its test fails once ('baseline created: "
        "review and commit it'); a candidate is judged by paired non-inferiority (default margin 0.02)",
    )
    group.addoption(
        "--robust-baseline-update",
        dest="robust_baseline_update",
        action="store_true",
        default=False,
        help="rewrite the baselines under --robust-baseline from this run (deliberately accept the "
        "current models); the gates still apply their other requirements",
    )


def _resolve(
    config: pytest.Config, flag: str, ini: str, parse: Callable[[str], Any], default: str | None
) -> Any:
    value = config.getoption(ini)
    if value is not None:
        return value
    raw = config.getini(ini)
    if raw not in (None, "", []):
        try:
            parsed = parse(str(raw))
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(f"ini option {ini} = {raw!r}: {exc}") from None
        if isinstance(parsed, Path) and not parsed.is_absolute():
            parsed = config.rootpath / parsed  # ini paths are relative to the rootdir
        return parsed
    return parse(default) if default is not None else None


def resolve_config(config: pytest.Config) -> cfg.RobustConfig:
    values = {ini: _resolve(config, flag, ini, parse, default) for flag, ini, parse, default, _ in _OPTIONS}
    data = values["robust_data"]
    if data is not None and not data.exists():
        raise pytest.UsageError(
            f"--robust-data {data}: no such folder. Pass an image folder (class sub-folders, "
            "optionally under train/ and test/) or 'synthetic' for the embedded default"
        )
    threads = values["robust_threads"]
    workerinput = getattr(config, "workerinput", None)
    if threads is None and workerinput is not None:
        workers = int(workerinput.get("workercount", 1))
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    return cfg.RobustConfig(
        profile=values["robust_profile"],
        device=values["robust_device"],
        seed=values["robust_seed"],
        n=values["robust_n"],
        data=data,
        cache_dir=values["robust_cache_dir"],
        retrain=bool(config.getoption("robust_retrain")),
        skip_unreadable=bool(config.getoption("robust_skip_unreadable")),
        threads=threads,
        soundness=values["robust_soundness"],
        policy=values["robust_policy"],
        seeds=values["robust_seeds"],
        execution=values["robust_execution"],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "robust(n=None, seed=None, profile=None, device=None, soundness=None, randomized=False, "
        "execution=None): override pytest-robust settings for one test (randomized=True declares a "
        "random model)",
    )
    config.stash[CONFIG_KEY] = resolve_config(config)
    _check_device(config)
    _check_cache_lock()
    config.hook.pytest_robust_register_attacks.call_historic(kwargs={"register": _attack_registrar(config)})
    config.stash[POLICY_KEY] = resolve_policy(config, config.stash[CONFIG_KEY].policy)
    config.stash[MEMO_KEY] = {}
    config.stash[CHECKS_KEY] = {}
    config.stash[EXECUTION_KEY] = {}
    config.stash[RESULT_COUNTS_KEY] = {"hit": 0, "computed": 0}
    config.stash[BUILT_KEY] = {}
    _configure_baselines(config)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "pytest_robust_run_id" in workerinput:
        config.stash[RUN_ID_KEY] = str(workerinput["pytest_robust_run_id"])
    else:
        from pytest_robust.report.run import new_run_id

        config.stash[RUN_ID_KEY] = new_run_id()
    if workerinput is None:  # the controller: one collector, the report folder with --robust-report
        from pytest_robust.report.collector import ReportCollector

        config.stash[_WORKERS_KEY] = {}

        target = None
        report_dir = config.getoption("robust_report")
        if report_dir is not None:
            from pytest_robust.report.run import report_folder_problem

            target = _report_dir(config, report_dir)
            problem = report_folder_problem(target)
            if problem is not None:
                raise pytest.UsageError(f"--robust-report {report_dir}: {problem}")
        config.pluginmanager.register(ReportCollector(config, target), "pytest-robust-report")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "pytest-robust-xdist")


def _configure_baselines(config: pytest.Config) -> None:
    """``--robust-baseline``: a store for the gates; the writer only in the controlling process."""
    value = config.getoption("robust_baseline")
    if value is None:
        if config.getoption("robust_baseline_update"):
            raise pytest.UsageError(
                "--robust-baseline-update needs --robust-baseline=DIR (where the baselines live)"
            )
        return
    from pytest_robust.baseline_store import BaselineStore, BaselineWriter

    root = Path(value).expanduser()
    if not root.is_absolute():
        root = config.invocation_params.dir / root
    if root.exists() and not root.is_dir():
        raise pytest.UsageError(f"--robust-baseline {value}: not a folder")
    config.stash[BASELINE_KEY] = BaselineStore(root, update=bool(config.getoption("robust_baseline_update")))
    if getattr(config, "workerinput", None) is None:
        config.pluginmanager.register(BaselineWriter(root), "pytest-robust-baselines")


def _attack_registrar(config: pytest.Config) -> Callable[..., None]:
    """The ``register`` callable given to ``pytest_robust_register_attacks``, scoped to this session.

    Registrations go into the process-wide registry of :mod:`pytest_robust.attacks` (so
    ``make_attack(name)`` works anywhere in the session) and are undone, in reverse order, when
    the session ends (``config.add_cleanup``, run at unconfigure also after a failed start): the
    next in-process session (pytester) starts from the built-ins. torch is imported only when a
    plugin registers something.
    """
    undo: list[tuple[str, Callable[..., Any] | None]] = []

    def register(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
        from pytest_robust.attacks import register_attack

        try:
            previous = register_attack(name, factory, replace=replace)
        except RobustError as exc:
            raise pytest.UsageError(f"pytest_robust_register_attacks: {exc}") from None
        undo.append((name, previous))

    def restore() -> None:
        if not undo:
            return
        from pytest_robust.attacks import register_attack, unregister_attack

        for name, previous in reversed(undo):
            if previous is None:
                unregister_attack(name)
            else:
                register_attack(name, previous, replace=True)
        undo.clear()

    config.add_cleanup(restore)
    return register


def builtin_policies() -> dict[str, Callable[[], Policy | NonInferiority]]:
    """The built-in ``--robust-policy`` names and their factories: add a built-in policy here."""
    from pytest_robust import policies

    return {
        "point-estimate": policies.PointEstimate,
        "lower-bound": policies.LowerConfidenceBound,
        "sequential": policies.Sequential,
        "non-inferiority": policies.NonInferiority,
    }


@pytest.hookimpl(trylast=True)
def pytest_robust_make_policy(name: str, config: pytest.Config) -> Policy | NonInferiority | None:
    """pytest-robust's own answer (last, so plugins can answer first): the built-in names."""
    factory = builtin_policies().get(name)
    return factory() if factory is not None else None


def resolve_policy(config: pytest.Config, name: str) -> Policy | NonInferiority:
    """The policy called ``name`` from ``pytest_robust_make_policy``; unknown names are usage errors.

    A comparison policy (``compare(comparison)``, e.g. ``non-inferiority``) judges every gate against
    its stored baseline, so it needs ``--robust-baseline``; the gates' own requirements then use the
    default threshold policy.
    """
    policy: Policy | NonInferiority | None = config.hook.pytest_robust_make_policy(name=name, config=config)
    if policy is None:
        raise pytest.UsageError(
            f"--robust-policy {name}: unknown policy; built-in policies: {', '.join(builtin_policies())} "
            "(a plugin or conftest.py can provide others with the pytest_robust_make_policy hook)"
        )
    if callable(getattr(policy, "compare", None)) and not callable(getattr(policy, "decide", None)):
        if config.getoption("robust_baseline") is None:
            raise pytest.UsageError(
                f"--robust-policy {name} compares every gate with its stored baseline: add "
                "--robust-baseline=DIR (where the baselines live)"
            )
        return policy
    if not callable(getattr(policy, "decide", None)):
        raise pytest.UsageError(
            f"--robust-policy {name}: pytest_robust_make_policy returned {type(policy).__name__}, which "
            "has no decide(result, min_acc) method (see pytest_robust.policies.Policy)"
        )
    return policy


def _report_dir(config: pytest.Config, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = config.invocation_params.dir / path
    if path.is_file() or (path.is_dir() and any(path.glob("test_*.py"))) or path.suffix == ".py":
        raise pytest.UsageError(
            f"--robust-report {value}: that looks like a test path, not a report folder. "
            f"Put --robust-report after the test paths, or name the folder: --robust-report=DIR"
        )
    return path


class _XdistHooks:
    """Hand the controller's run id to every pytest-xdist worker (one id per run)."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["pytest_robust_run_id"] = node.config.stash[RUN_ID_KEY]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Add a finished worker's result-cache counts to the controller's; record its device."""
        output = getattr(node, "workeroutput", {})
        counts = output.get(_WORKER_COUNTS) or {}
        total = node.config.stash[RESULT_COUNTS_KEY]
        for name in total:
            total[name] += int(counts.get(name, 0))
        info = output.get(_WORKER_INFO)
        worker = output.get("workerid") or getattr(node, "workerinput", {}).get("workerid")
        if isinstance(info, dict) and worker is not None and _WORKERS_KEY in node.config.stash:
            node.config.stash[_WORKERS_KEY][str(worker)] = dict(info)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker hands its result-cache counts, its device (None when no test needed one),
    host and torch threads to the controller."""
    config = session.config
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None and RESULT_COUNTS_KEY in config.stash:
        counts: dict[str, int] = config.stash[RESULT_COUNTS_KEY]
        workeroutput[_WORKER_COUNTS] = dict(counts)
        import socket

        workeroutput[_WORKER_INFO] = {
            "device": config.stash.get(_DEVICE_KEY, None),
            "host": socket.gethostname(),
            "threads": config.stash[CONFIG_KEY].threads,
        }


def pytest_report_header(config: pytest.Config) -> list[str]:
    rc = config.stash[CONFIG_KEY]
    data = str(rc.data) if rc.data is not None else "synthetic (embedded generator; not real patient data)"
    lines = [
        f"robust: profile={rc.profile.name}, device={rc.device}, seed={rc.seed}, "
        f"n={rc.n_eval if rc.n_eval is not None else 'all'}, soundness={rc.soundness}, data={data}, "
        f"execution={rc.execution}"
    ]
    if _distributed(config) and rc.device in ("auto", "cuda"):  # stated, not measured: no torch here
        lines.append(
            f"robust: device={rc.device} under pytest-xdist: worker gwI evaluates on cuda:(I mod the GPUs "
            "its machine shows)"
            + (", on the CPU without a GPU" if rc.device == "auto" else "")
            + "; the summary lists the devices the workers used"
        )
    from pytest_robust.storage import LockSettings

    lock = LockSettings.from_env()
    if lock.kind != "os":
        lines.append(f"robust: cache lock={lock.describe()}, stale after {lock.stale_s:g} s")
    return lines


def _distributed(config: pytest.Config) -> bool:
    """Whether this controller hands the tests to pytest-xdist workers (``-n N`` with N > 0, ``--tx``)."""
    if not config.pluginmanager.hasplugin("xdist") or getattr(config, "workerinput", None) is not None:
        return False
    n = config.getoption("numprocesses", None)
    return bool(n if isinstance(n, int) else 0) or bool(config.getoption("tx", None))


# --- fixtures ------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``--robust-seeds``: a test that uses ``robust_seed`` runs once per seed (session-scoped
    parameter, so session fixtures built on it - the benchmark's checkpoints - exist once per seed)."""
    seeds = metafunc.config.stash[CONFIG_KEY].seeds
    if seeds and "robust_seed" in metafunc.fixturenames:
        metafunc.parametrize(
            "robust_seed", list(seeds), indirect=True, scope="session", ids=[f"seed{s}" for s in seeds]
        )


@pytest.fixture(scope="session")
def robust_seed(request: pytest.FixtureRequest) -> int:
    """The training and attack seed of this test: one of ``--robust-seeds``, else ``--robust-seed``.

    Fixtures that train (the benchmark's checkpoint store) take their seed from here, so a
    multi-seed run trains each model once per seed; ``assert_robust`` in a test that uses it
    attacks with it and records it. Data generation and splits keep ``--robust-seed``.
    """
    seed = getattr(request, "param", None)
    return int(seed) if seed is not None else int(request.config.stash[CONFIG_KEY].seed)


@pytest.fixture
def robust_config(request: pytest.FixtureRequest) -> cfg.RobustConfig:
    """The run's configuration, with this test's ``@pytest.mark.robust(...)`` overrides applied."""
    base = request.config.stash[CONFIG_KEY]
    marker = request.node.get_closest_marker("robust")
    if marker is None:
        return base
    if marker.args:
        pytest.fail("@pytest.mark.robust takes keyword arguments only", pytrace=False)
    try:
        return base.with_overrides(**marker.kwargs)
    except (RobustError, argparse.ArgumentTypeError) as exc:
        pytest.fail(f"@pytest.mark.robust: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def robust_device(pytestconfig: pytest.Config) -> torch.device:
    """The torch device of this process (``--robust-device``; auto = CUDA when present, one GPU per
    pytest-xdist worker: :func:`pytest_robust.devices.assign_device`); recorded for the report."""
    import torch

    from pytest_robust import devices
    from pytest_robust.models import resolve_device

    rc = pytestconfig.stash[CONFIG_KEY]
    if rc.threads is not None:
        torch.set_num_threads(rc.threads)
    try:
        assigned = devices.assign_device(rc.device, _worker_id(pytestconfig), devices.cuda_device_count())
        # a CUDA device is checked against the count above; cpu and mps by torch
        device = torch.device(assigned) if assigned.startswith("cuda") else resolve_device(assigned)
    except RobustError as exc:
        abort_run(f"--robust-device {rc.device}: {exc}")
    pytestconfig.stash[_DEVICE_KEY] = str(device)
    return device


def _worker_id(config: pytest.Config) -> str | None:
    """This process's pytest-xdist worker id (``gw0``, ...); None in the controller or without xdist."""
    workerinput = getattr(config, "workerinput", None)
    return None if workerinput is None else str(workerinput.get("workerid"))


def abort_run(message: str) -> NoReturn:
    """Stop the whole run as a usage error (exit 4) with ``message`` and no traceback.

    For a configuration error that only shows once the run has started (in a fixture: data that
    cannot be loaded, a model that cannot be built): every test would fail the same way.
    """
    pytest.exit(f"pytest-robust: {message}", returncode=pytest.ExitCode.USAGE_ERROR)


def _check_device(config: pytest.Config) -> None:
    """An explicit accelerator that this machine lacks (``cuda`` without CUDA, ``cuda:N`` beyond its
    GPUs, ``mps``) is a usage error at start, in the controller and in every pytest-xdist worker
    (imports torch only then: ``auto`` and ``cpu`` cannot fail)."""
    device = config.stash[CONFIG_KEY].device
    if device in ("auto", "cpu"):
        return
    from pytest_robust import devices

    try:
        if device.startswith("cuda"):
            devices.assign_device(device, _worker_id(config), devices.cuda_device_count())
        else:
            from pytest_robust.models import resolve_device

            resolve_device(device)
    except RobustError as exc:
        raise pytest.UsageError(f"--robust-device {device}: {exc}") from None


def _check_cache_lock() -> None:
    """A bad ``$PYTEST_ROBUST_CACHE_LOCK`` / ``..._STALE`` is a usage error at start, not at the
    first cache entry (:mod:`pytest_robust.storage`, stdlib only)."""
    from pytest_robust.storage import LockSettings

    try:
        LockSettings.from_env()
    except RobustConfigError as exc:
        raise pytest.UsageError(f"pytest-robust: {exc}") from None


def load_default_split(rc: cfg.RobustConfig, split: str, **options: Any) -> ImageDataset:
    """The run's default data (:func:`pytest_robust.data.defaults.load_default_split`, which the
    suites parametrise with ``options``); data that cannot be loaded stops the run as a usage error."""
    from pytest_robust.data import defaults

    try:
        return defaults.load_default_split(rc, split, **options)  # type: ignore[arg-type]
    except RobustError as exc:
        abort_run(f"--robust-data {rc.data}: {exc}" if rc.data is not None else str(exc))


@pytest.fixture(scope="session")
def robust_data(pytestconfig: pytest.Config, robust_device: torch.device) -> ImageDataset:
    """The evaluation data: ``--robust-data`` (its test/ split when present) or the synthetic set."""
    return load_default_split(pytestconfig.stash[CONFIG_KEY], "test")


@pytest.fixture(scope="session")
def robust_train_data(pytestconfig: pytest.Config, robust_device: torch.device) -> ImageDataset:
    """Training data for the default models: the folder's train/ split or the synthetic train set."""
    return load_default_split(pytestconfig.stash[CONFIG_KEY], "train")


@contextlib.contextmanager
def terminal_output(config: pytest.Config) -> Iterator[None]:
    """Suspend output capturing for long work, so tqdm bars reach an interactive terminal.

    tqdm then decides for itself (stderr a TTY: bars; CI logs and xdist workers: none).
    """
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def _budgets(rc: cfg.RobustConfig) -> cfg.AttackBudgets:
    return rc.profile.budgets


@pytest.fixture
def fgsm() -> Attack:
    """FGSM (one signed-gradient step of size eps)."""
    from pytest_robust.attacks import FGSM

    return FGSM()


@pytest.fixture
def pgd(robust_config: cfg.RobustConfig) -> Attack:
    """PGD with the profile's budget (ci/paper: 20 steps, step eps/2, random start)."""
    from pytest_robust.attacks import PGD

    b = _budgets(robust_config)
    return PGD(steps=b.pgd_steps, rel_step_size=b.pgd_rel_step_size, restarts=b.pgd_restarts)


@pytest.fixture
def aa(robust_config: cfg.RobustConfig) -> Attack:
    """AutoAttack (APGD-CE + Square for binary tasks) with the profile's budget."""
    from pytest_robust.attacks import AutoAttack

    b = _budgets(robust_config)
    return AutoAttack(apgd_steps=b.apgd_steps, apgd_restarts=b.apgd_restarts, square_queries=b.square_queries)


@pytest.fixture(scope="session")
def robust_model_factory(
    pytestconfig: pytest.Config, robust_train_data: ImageDataset, robust_device: torch.device
) -> Callable[[str], nn.Module]:
    """``factory(recipe)`` → the small quick-start CNN trained with ``standard`` or ``pgd-at``.

    Trained once on the run's train data and cached in ``--robust-cache-dir``.
    """
    from pytest_robust.quickstart import quickstart_model

    rc = pytestconfig.stash[CONFIG_KEY]
    built: dict[str, nn.Module] = {}

    def factory(recipe: str = "standard") -> nn.Module:
        if recipe not in built:
            try:
                with terminal_output(pytestconfig):
                    cached = quickstart_model(
                        robust_train_data,
                        recipe,
                        cache_dir=rc.resolved_cache_dir(),
                        seed=rc.seed,
                        device=robust_device,
                        force=rc.retrain,
                    )
            except RobustError as exc:
                abort_run(str(exc))
            built[recipe] = cached.model
            pytestconfig.stash[BUILT_KEY][id(cached.model)] = (cached.model, cached.record())
        return built[recipe]

    return factory


@pytest.fixture(scope="session")
def model(robust_model_factory: Callable[[str], nn.Module]) -> nn.Module:
    """A small standard-trained CNN for the quick start (override it with your own ``model``)."""
    return robust_model_factory("standard")


@pytest.fixture
def assert_robust(
    request: pytest.FixtureRequest, robust_config: cfg.RobustConfig
) -> Callable[..., RobustResult]:
    """:func:`pytest_robust.gate.assert_robust` bound to this test.

    Defaults come from the run's configuration (data, n, device, seed, profile), and every result
    is recorded on the test report for reporters.
    """
    from pytest_robust import gate

    def record(result: RobustResult) -> None:
        request.node.user_properties.append((PROPERTY, json.dumps(result.to_json())))

    memo = request.config.stash[MEMO_KEY]
    from pytest_robust.result_cache import ResultCache

    result_cache = ResultCache(request.config.stash[CONFIG_KEY].resolved_result_cache_dir())
    recompute = bool(request.config.getoption("robust_recompute"))

    def bound(model: nn.Module, attack: Attack | str, **kwargs: Any) -> RobustResult:
        __tracebackhide__ = True
        kwargs.setdefault(
            "evaluator",
            functools.partial(
                memoised_evaluate,
                memo,
                check_cache=request.config.stash[CHECKS_KEY],
                execution_cache=request.config.stash[EXECUTION_KEY],
                calibration_dir=robust_config.resolved_cache_dir() / "execution",
                result_cache=result_cache,
                recompute=recompute,
                counts=request.config.stash[RESULT_COUNTS_KEY],
            ),
        )
        if kwargs.get("data") is None:
            kwargs["data"] = request.getfixturevalue("robust_data")
        if kwargs.get("n") is None:
            kwargs["n"] = robust_config.n_eval
        elif kwargs["n"] == cfg.ALL_SAMPLES:  # every sample, whatever the profile says
            kwargs["n"] = None
        kwargs.setdefault("device", str(request.getfixturevalue("robust_device")))
        study_seed = None
        if robust_config.seeds and "robust_seed" in request.fixturenames:  # this test's study seed
            study_seed = request.getfixturevalue("robust_seed")
            kwargs.setdefault("seed", study_seed)
        kwargs.setdefault("seed", robust_config.seed)
        kwargs.setdefault("batch_size", robust_config.profile.batch_size)
        kwargs.setdefault("soundness", robust_config.soundness)
        kwargs.setdefault("randomized", robust_config.randomized)
        kwargs.setdefault("execution", robust_config.execution)
        if kwargs.get("policy") is None:
            default = request.config.stash[POLICY_KEY]
            if callable(getattr(default, "decide", None)):
                kwargs["policy"] = default
            else:  # a comparison policy (--robust-policy non-inferiority): judges the baseline part
                from pytest_robust.policies import LowerConfidenceBound

                kwargs.setdefault("baseline_policy", default)
                kwargs["policy"] = LowerConfidenceBound()
        context: dict[str, Any] = {
            "profile": robust_config.profile.name,
            "test": request.node.nodeid,
            "seed": kwargs["seed"],
        }
        if study_seed is not None:  # the training draw of a multi-seed study (the attack seed may differ)
            context["study_seed"] = study_seed
        built = request.config.stash[BUILT_KEY].get(id(model))
        if built is not None and built[0] is model:
            context["checkpoint"] = built[1]
        kwargs["context"] = {**context, **(kwargs.get("context") or {})}
        store = request.config.stash.get(BASELINE_KEY, None)
        with terminal_output(request.config):
            if store is not None and kwargs.get("baseline") is None:  # an explicit baseline= wins
                kwargs.pop("baseline", None)
                run = functools.partial(gate.assert_robust, model, attack, record=record)
                return store.run(request.node, run, kwargs)
            return gate.assert_robust(model, attack, record=record, **kwargs)

    return bound


def memoised_evaluate(
    memo: dict[str, Any],
    model: nn.Module,
    data: ImageDataset,
    attack: Attack | str,
    threat: Any,
    *,
    result_cache: ResultCache | None = None,
    recompute: bool = False,
    counts: dict[str, int] | None = None,
    **kwargs: Any,
) -> Any:
    """:func:`~pytest_robust.evaluate.evaluate`, reusing an earlier identical evaluation.

    Identical means the same model - the same object (its ``id``, pinned by keeping a reference),
    weights, module structure and outputs on a probe batch, so two wrappers that share weights
    never share results - and the same data (fingerprint), attack configuration, threat model,
    device, seed, batch size, number of examples and soundness configuration. Evaluation is
    deterministic for those, so reuse changes no number; it saves the findings tests from
    re-attacking models that the per-model tests already attacked.

    First this process's ``memo``; then, with ``result_cache``, the content-addressed store on disk
    (:mod:`pytest_robust.result_cache`: the same key without the object's ``id`` and with the device
    type instead of the device, plus the library versions), shared across runs and pytest-xdist
    workers; ``recompute`` skips reading it. ``counts`` (``hit``, ``computed``) counts the disk
    cache's answers. An evaluation with a stop rule that has no ``key`` is never stored on disk.
    """
    from dataclasses import replace

    from pytest_robust.attacks import coerce_attack
    from pytest_robust.evaluate import evaluate, execution_plan, library_versions
    from pytest_robust.models import (
        as_classifier,
        behaviour_fingerprint,
        model_device,
        model_fingerprint,
        resolve_device,
        structure_fingerprint,
    )
    from pytest_robust.result_cache import result_key

    kwargs.setdefault("check_cache", None)
    kwargs.setdefault("execution", "auto")
    attack_ = coerce_attack(attack)
    weights = model_fingerprint(model)
    soundness = kwargs.get("soundness")
    probe = data.images[: min(8, len(data))]
    try:
        # through the harness's view (float32, [0, z] for one logit): the user's outputs for ordinary models
        view = as_classifier(model, data.num_classes)
        behaviour = behaviour_fingerprint(view, probe.to(model_device(model)))
        if isinstance(kwargs["execution"], str):  # the plan is part of the key: made once, here
            kwargs["execution"] = execution_plan(
                model,
                data,
                kwargs["execution"],
                device=kwargs.get("device", "auto"),
                soundness=soundness,
                calibration_dir=kwargs.get("calibration_dir"),
                execution_cache=kwargs.get("execution_cache"),
            )
    except Exception:  # a model that fails here fails in evaluate with a proper message
        return evaluate(model, data, attack_, threat, model_sha256=weights, **kwargs)
    stop = kwargs.get("stop")
    stop_key = getattr(stop, "key", None)
    kind = type(attack_)
    # everything that determines the result but the device (the disk keys only its type)
    parts: dict[str, Any] = {
        "model": {"weights": weights, "structure": structure_fingerprint(model), "behaviour": behaviour},
        "data_fingerprint": data.fingerprint(),
        "sample_ids": data.sample_ids(),
        "attack": {"config": attack_.config(), "class": f"{kind.__module__}.{kind.__qualname__}"},
        "threat": threat.to_json(),
        "seed": kwargs.get("seed", 0),
        "batch_size": kwargs.get("batch_size", 128),
        "examples": kwargs.get("examples", 0),
        "soundness": soundness.to_json() if soundness is not None else None,
        "positive_label": kwargs.get("positive_label", 1),
        "focus": list(kwargs.get("focus", ())),
        "stop": stop_key,
        "execution": kwargs["execution"].to_json(),
    }
    unkeyed_stop = stop is not None and stop_key is None
    key = json.dumps(
        [id(model), str(kwargs.get("device")), id(stop) if unkeyed_stop else None, parts],
        sort_keys=True,
        default=str,
    )
    if key in memo:
        return memo[key][1]

    def compute() -> Any:
        return evaluate(model, data, attack_, threat, model_sha256=weights, **kwargs)

    if result_cache is None or unkeyed_stop:
        memo[key] = (model, compute())
        return memo[key][1]
    try:
        device = str(resolve_device(kwargs.get("device", "auto")))
    except RobustError:  # evaluate reports a bad device properly
        memo[key] = (model, compute())
        return memo[key][1]
    disk_key, material = result_key(**parts, device=device, versions=library_versions())
    result, hit = result_cache.get_or_compute(disk_key, material, compute, recompute=recompute)
    if hit:  # the same numbers; the device is the one asked for (the key holds only its type)
        result = replace(result, device=device)
    if counts is not None:
        counts["hit" if hit else "computed"] += 1
    memo[key] = (model, result)
    return result


@pytest.fixture
def record_finding(request: pytest.FixtureRequest) -> Callable[..., bool]:
    """``record_finding(name, claim=..., measured=..., holds=..., results=[...])``: note a named
    finding for reports.

    Stored as plain JSON in the test's ``user_properties`` (so it survives pytest-xdist), shown in
    the report's Findings table; returns ``holds`` so a test can ``assert record_finding(...)``.
    ``results``: the results (``RobustResult`` or ``EvalResult``) the finding was computed from; when
    one of them is of a degenerate model (:mod:`pytest_robust.degeneracy`) the finding does not hold,
    whatever ``holds`` says: ``reason`` ("degenerate model: ...") and ``degenerate`` say why.
    """

    def record(
        name: str, *, claim: str, measured: str, holds: bool, results: Sequence[Any] = (), **extra: Any
    ) -> bool:
        degenerate = _degenerate_models(results)
        payload = {"name": name, "claim": claim, "measured": measured, "holds": bool(holds), **extra}
        if degenerate:
            payload.update(
                holds=False,
                reason="degenerate model: " + "; ".join(f"{d['model']}: {d['reason']}" for d in degenerate),
                degenerate=degenerate,
            )
        if request.config.stash[CONFIG_KEY].seeds and "robust_seed" in request.fixturenames:
            payload.setdefault("seed", request.getfixturevalue("robust_seed"))  # the seed study's
        request.node.user_properties.append((FINDING, json.dumps(payload, sort_keys=True, default=str)))
        return bool(payload["holds"])

    return record


def _degenerate_models(results: Sequence[Any]) -> list[dict[str, str]]:
    """The degenerate models among a finding's ``results`` (``RobustResult`` or ``EvalResult``): the
    model's label (its context's ``model``, else its weights' hash) and why."""
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise RobustConfigError(
            f"record_finding(results=...) takes a list of the RobustResult / EvalResult the finding was "
            f"computed from, got {results!r}"
        )
    out = []
    for r in results:
        evaluation = getattr(r, "evaluation", r)
        measure = getattr(evaluation, "degeneracy", None)
        if measure is None:
            raise RobustConfigError(
                f"record_finding(results=...): {r!r} is not a RobustResult or EvalResult (what "
                "assert_robust returns, or its .evaluation)"
            )
        if measure.degenerate:
            context = getattr(r, "context", None) or {}
            model = context.get("model") or f"model {evaluation.model.get('fingerprint', '?')[:12]}"
            entry = {"model": str(model), "reason": measure.reason}
            if entry not in out:
                out.append(entry)
    return out


# --- reporting ---------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Show pytest-robust's own errors as the test line plus the message, not a deep traceback.

    The exception still propagates with its type (``pytest.raises(RobustConfigError)`` works);
    only the failure report is shortened: the message already says what is wrong and what to do.
    """
    report = yield
    excinfo = call.excinfo
    if excinfo is None or not excinfo.errisinstance(RobustError):
        return report
    entries = [e for e in excinfo.traceback if Path(str(e.path)) == item.path]
    where = ""
    if entries:
        entry = entries[-1]
        source = str(entry.statement).strip() if entry.statement is not None else ""
        where = f"{item.path.name}:{entry.lineno + 1}: {source}\n"
    message = str(excinfo.value).replace("\n", "\nE   ")
    report.longrepr = f"{where}E   {excinfo.typename}: {message}"
    return report
