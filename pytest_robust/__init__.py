"""pytest-robust: robustness regression testing for medical-imaging classifiers.

Importing this package is cheap: the public names below are loaded on first use, so the pytest
plugin adds no torch import to test suites that do not use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "assert_robust": "pytest_robust.gate",
    "RobustResult": "pytest_robust.gate",
    "RobustnessFailure": "pytest_robust.gate",
    "UnsoundEvaluation": "pytest_robust.gate",
    "Ensemble": "pytest_robust.attacks",
    "worst_case": "pytest_robust.evaluate",
    "SoundnessConfig": "pytest_robust.soundness",
    "Check": "pytest_robust.soundness",
    "PointEstimate": "pytest_robust.policies",
    "LowerConfidenceBound": "pytest_robust.policies",
    "NonInferiority": "pytest_robust.policies",
    "Policy": "pytest_robust.policies",
    "Sequential": "pytest_robust.policies",
    "Verdict": "pytest_robust.policies",
    "Baseline": "pytest_robust.baseline",
    "ThreatModel": "pytest_robust.threat",
    "Norm": "pytest_robust.threat",
    "FGSM": "pytest_robust.attacks",
    "PGD": "pytest_robust.attacks",
    "AutoAttack": "pytest_robust.attacks",
    "make_attack": "pytest_robust.attacks",
    "evaluate": "pytest_robust.evaluate",
    "EvalResult": "pytest_robust.evaluate",
    "ImageDataset": "pytest_robust.data.dataset",
    "generate_synthetic": "pytest_robust.data.synthetic",
    "load_image_folder": "pytest_robust.data.folder",
    "NormalizedModel": "pytest_robust.models",
    "RobustError": "pytest_robust.errors",
    "RobustConfigError": "pytest_robust.errors",
    "RobustDataError": "pytest_robust.errors",
    "RobustModelError": "pytest_robust.errors",
    "PerturbationError": "pytest_robust.errors",
}

__all__ = [
    "FGSM",
    "PGD",
    "AutoAttack",
    "Baseline",
    "Check",
    "Ensemble",
    "EvalResult",
    "ImageDataset",
    "LowerConfidenceBound",
    "NonInferiority",
    "Norm",
    "NormalizedModel",
    "PerturbationError",
    "PointEstimate",
    "Policy",
    "RobustConfigError",
    "RobustDataError",
    "RobustError",
    "RobustModelError",
    "RobustResult",
    "RobustnessFailure",
    "Sequential",
    "SoundnessConfig",
    "ThreatModel",
    "UnsoundEvaluation",
    "Verdict",
    "__version__",
    "assert_robust",
    "evaluate",
    "generate_synthetic",
    "load_image_folder",
    "make_attack",
    "worst_case",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_robust' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from pytest_robust.attacks import FGSM, PGD, AutoAttack, Ensemble, make_attack
    from pytest_robust.baseline import Baseline
    from pytest_robust.data.dataset import ImageDataset
    from pytest_robust.data.folder import load_image_folder
    from pytest_robust.data.synthetic import generate_synthetic
    from pytest_robust.errors import (
        PerturbationError,
        RobustConfigError,
        RobustDataError,
        RobustError,
        RobustModelError,
    )
    from pytest_robust.evaluate import EvalResult, evaluate, worst_case
    from pytest_robust.gate import RobustnessFailure, RobustResult, UnsoundEvaluation, assert_robust
    from pytest_robust.models import NormalizedModel
    from pytest_robust.policies import (
        LowerConfidenceBound,
        NonInferiority,
        PointEstimate,
        Policy,
        Sequential,
        Verdict,
    )
    from pytest_robust.soundness import Check, SoundnessConfig
    from pytest_robust.threat import Norm, ThreatModel
