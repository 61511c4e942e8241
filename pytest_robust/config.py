"""Run configuration: named profiles and the ``RobustConfig`` resolved once per session.

Torch-free: the plugin parses and validates options with this module at start-up without
importing torch. Precedence: marker kwargs > command line > ini > profile default.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from pytest_robust.errors import RobustConfigError

#: ``--robust-n all`` / ``@pytest.mark.robust(n="all")``: every sample of the data
ALL_SAMPLES: Final = "all"
#: ``--robust-execution``: how the attack's passes run (:mod:`pytest_robust.execution`): ``auto`` the
#: measured per-architecture table, ``fp32`` the opt-out, ``calibrate`` timed once and cached
EXECUTION_MODES: Final = ("auto", "fp32", "calibrate")
DEFAULT_EXECUTION: Final = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackBudgets:
    """Budgets of the three evaluation attacks for one profile."""

    pgd_steps: int
    pgd_rel_step_size: float
    pgd_restarts: int
    apgd_steps: int
    apgd_restarts: int
    square_queries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A named set of defaults: samples per evaluation, image size, attack budgets.

    ``paper`` is the reference study's recipe (Table IV) for GPUs; ``ci`` fits a 2-core CPU in
    CI time; ``smoke`` runs in seconds, for tests. Every result records the profile it ran under.
    """

    name: str
    description: str
    n_eval: int | None
    image_size: int
    batch_size: int
    budgets: AttackBudgets
    #: set for a profile whose numbers only show that the harness runs (``smoke``): why they are
    #: not measurements; the terminal and the report say so beside every number
    plumbing: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "smoke": Profile(
            name="smoke",
            description="a plumbing check in about a minute: tiny attack budgets, 32 samples",
            n_eval=32,
            image_size=32,
            batch_size=64,
            budgets=AttackBudgets(
                pgd_steps=5,
                pgd_rel_step_size=0.5,
                pgd_restarts=1,
                apgd_steps=5,
                apgd_restarts=1,
                square_queries=20,
            ),
            plumbing=(
                "smoke profile: a plumbing check, not a measurement - 32 samples, 5-step attacks (its "
                "built-in models train 1 epoch on 64 images); the numbers show that the harness runs end "
                "to end, not how robust a model is (use --robust-profile ci or paper)"
            ),
        ),
        "ci": Profile(
            name="ci",
            description="a 2-core CPU in CI time: PGD-20 as in the study, AutoAttack scaled down",
            n_eval=256,
            image_size=32,
            batch_size=128,
            budgets=AttackBudgets(
                pgd_steps=20,
                pgd_rel_step_size=0.5,
                pgd_restarts=1,
                apgd_steps=25,
                apgd_restarts=1,
                square_queries=100,
            ),
        ),
        "paper": Profile(
            name="paper",
            description=(
                "the reference study's evaluation (Table IV): all samples, 224 px, PGD-20 step "
                "eps/2, AutoAttack APGD-CE (100 steps, 5 restarts) + Square (5000 queries)"
            ),
            n_eval=None,
            image_size=224,
            batch_size=32,
            budgets=AttackBudgets(
                pgd_steps=20,
                pgd_rel_step_size=0.5,
                pgd_restarts=1,
                apgd_steps=100,
                apgd_restarts=5,
                square_queries=5000,
            ),
        ),
    }
)

DEFAULT_PROFILE = "ci"
DEFAULT_SEED = 0
#: the gate's policy without ``--robust-policy``: the exact lower confidence bound of the robust
#: accuracy must clear the requirement (a PASS is evidence); ``point-estimate`` is the study's practice
DEFAULT_POLICY = "lower-bound"


def default_cache_dir() -> Path:
    """Where trained checkpoints live: ``$PYTEST_ROBUST_CACHE_DIR`` or the user cache folder.

    Deliberately outside pytest's own cache, so ``--cache-clear`` does not destroy trained models.
    """
    env = os.environ.get("PYTEST_ROBUST_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pytest-robust"))


def default_result_cache_dir(cache_dir: Path) -> Path:
    """Where evaluation results are cached: ``$PYTEST_ROBUST_RESULT_CACHE_DIR`` or ``<cache_dir>/results``.

    Its own variable so a test harness can isolate results while sharing trained checkpoints.
    """
    env = os.environ.get("PYTEST_ROBUST_RESULT_CACHE_DIR")
    return Path(env).expanduser() if env else cache_dir / "results"


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustConfig:
    """Everything a robustness test needs to know about the run, resolved once."""

    profile: Profile
    device: str = "auto"
    seed: int = DEFAULT_SEED
    #: ``--robust-n``: a sample count, ``"all"`` (every sample), or None (the profile's)
    n: int | Literal["all"] | None = None
    data: Path | None = None
    cache_dir: Path | None = None
    retrain: bool = False
    #: ``--robust-skip-unreadable``: leave out unreadable data images (recorded) instead of stopping
    skip_unreadable: bool = False
    threads: int | None = None
    #: soundness policy of the gate: ``strict`` (a failed check fails the gate) or ``warn``
    soundness: str = "strict"
    #: the model under test is declared random (marker only): evaluated as the mean of its draws
    randomized: bool = False
    #: name of the gate's default policy (``--robust-policy``), resolved by the
    #: ``pytest_robust_make_policy`` hook: a built-in name or one a plugin provides
    policy: str = DEFAULT_POLICY
    #: ``--robust-seeds``: the training seeds of a multi-seed study (None: one seed, ``seed``);
    #: data generation and splits stay at ``seed``
    seeds: tuple[int, ...] | None = None
    #: ``--robust-execution``: one of :data:`EXECUTION_MODES`
    execution: str = DEFAULT_EXECUTION

    @property
    def n_eval(self) -> int | None:
        """Samples per evaluation (None: all): ``--robust-n`` when given, else the profile's."""
        if self.n == ALL_SAMPLES:
            return None
        return self.n if self.n is not None else self.profile.n_eval

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()

    def resolved_result_cache_dir(self) -> Path:
        return default_result_cache_dir(self.resolved_cache_dir())

    def with_overrides(self, **kwargs: Any) -> RobustConfig:
        """A copy with marker overrides applied (``n``, ``seed``, ``profile``, ``device``,
        ``soundness``, ``randomized``, ``execution``)."""
        allowed = {"n", "seed", "profile", "device", "soundness", "randomized", "execution"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise RobustConfigError(
                f"unknown robust marker argument(s) {sorted(unknown)}; valid: {sorted(allowed)}"
            )
        values: dict[str, Any] = {}
        if "n" in kwargs:
            values["n"] = parse_n(str(kwargs["n"]))
        if "seed" in kwargs:
            values["seed"] = parse_seed(str(kwargs["seed"]))
        if "profile" in kwargs:
            values["profile"] = parse_profile(str(kwargs["profile"]))
        if "device" in kwargs:
            values["device"] = parse_device(str(kwargs["device"]))
        if "soundness" in kwargs:
            values["soundness"] = parse_soundness(str(kwargs["soundness"]))
        if "execution" in kwargs:
            values["execution"] = parse_execution(str(kwargs["execution"]))
        if "randomized" in kwargs:
            if not isinstance(kwargs["randomized"], bool):
                raise RobustConfigError(f"randomized must be True or False, got {kwargs['randomized']!r}")
            values["randomized"] = kwargs["randomized"]
        return replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "device": self.device,
            "seed": self.seed,
            "n": self.n_eval,
            "data": str(self.data) if self.data is not None else None,
            "soundness": self.soundness,
            "policy": self.policy,
            "seeds": list(self.seeds) if self.seeds else None,
            "skip_unreadable": self.skip_unreadable,
            "execution": self.execution,
        }


# --- option parsers: argparse ``type=`` functions (ArgumentTypeError on bad input) -------------


def _fail(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


SOUNDNESS_MODES = ("strict", "warn")


def parse_execution(text: str) -> str:
    """``auto`` (the measured table), ``fp32`` (the opt-out) or ``calibrate`` (timed once, cached)."""
    value = text.strip().lower()
    if value not in EXECUTION_MODES:
        raise _fail(f"unknown execution mode {text!r}; valid: {', '.join(EXECUTION_MODES)}")
    return value


def parse_soundness(text: str) -> str:
    """``strict`` (a failed soundness check fails the gate) or ``warn`` (marks the result unsound)."""
    value = text.strip().lower()
    if value not in SOUNDNESS_MODES:
        raise _fail(f"unknown soundness policy {text!r}; valid: {', '.join(SOUNDNESS_MODES)}")
    return value


#: a policy name: lower case, starts with a letter, then letters, digits, ``-``, ``_``, ``.``
POLICY_NAME = re.compile(r"[a-z][a-z0-9_.-]*")


def parse_policy(text: str) -> str:
    """A policy name (syntax only: plugins may provide names the plugin does not know)."""
    value = text.strip().lower()
    if not POLICY_NAME.fullmatch(value):
        raise _fail(f"invalid policy name {text!r}: letters, digits, '-', '_' or '.', starting with a letter")
    return value


def parse_profile(text: str) -> Profile:
    key = text.strip().lower()
    if key not in PROFILES:
        raise _fail(f"unknown profile {text!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[key]


def parse_device(text: str) -> str:
    value = text.strip().lower()
    head, _, index = value.partition(":")
    if head in {"auto", "cpu", "mps"} and not index:
        return value
    if head == "cuda" and (not index or index.isdigit()):
        return value
    raise _fail(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")


def parse_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _fail(f"seed must be an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise _fail(f"seed must be in [0, 2**63), got {value}")
    return value


def parse_seeds(text: str) -> tuple[int, ...] | None:
    """``0,1,2`` → ``(0, 1, 2)``: the training seeds of a multi-seed study (distinct, at least two)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    seeds = tuple(parse_seed(p) for p in parts)
    if not seeds:
        return None
    if len(set(seeds)) != len(seeds):
        raise _fail(f"seeds must be distinct, got {text!r}")
    if len(seeds) < 2:
        raise _fail(
            f"a multi-seed run needs at least two seeds (e.g. 0,1,2), got {text!r}; for one "
            "seed use --robust-seed"
        )
    return seeds


def parse_n(text: str) -> int | Literal["all"]:
    """A positive sample count, or ``all`` for the whole data set."""
    if text.strip().lower() == ALL_SAMPLES:
        return ALL_SAMPLES
    try:
        value = int(text)
    except ValueError:
        raise _fail(f"number of samples must be a positive integer or 'all', got {text!r}") from None
    if value < 1:
        raise _fail(f"number of samples must be positive (or 'all' for every sample), got {value}")
    return value


def parse_threads(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise _fail(f"threads must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise _fail(f"threads must be >= 1, got {value}")
    return value


def parse_path(text: str) -> Path:
    return Path(text).expanduser()


def parse_data(text: str) -> Path | None:
    """A data folder, or ``synthetic`` for the embedded default."""
    if text.strip().lower() in {"", "synthetic"}:
        return None
    return parse_path(text)
