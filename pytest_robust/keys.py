"""Names the plugin and the reporter share: stash keys and ``user_properties`` names.

A leaf module (pytest and the torch-free config only), so that :mod:`pytest_robust.plugin` and
:mod:`pytest_robust.report` both import it and never each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_robust.baseline_store import BaselineStore
    from pytest_robust.config import RobustConfig
    from pytest_robust.policies import NonInferiority, Policy

#: the run's resolved configuration
CONFIG_KEY: pytest.StashKey[RobustConfig] = pytest.StashKey()
#: ``user_properties`` name under which each result's JSON is recorded.
PROPERTY = "pytest_robust.result"
#: ``user_properties`` name of a suite's named finding (plain JSON: what was compared, the outcome).
FINDING = "pytest_robust.finding"
#: Where ``--robust-report`` without a value writes (relative to the invocation directory).
DEFAULT_REPORT_DIR = "reports"

#: evaluations made in this process, by the identity of model, data, attack and settings
MEMO_KEY = pytest.StashKey[dict[str, Any]]()
#: the model checks of the soundness module, per model and data (they do not depend on the attack)
CHECKS_KEY = pytest.StashKey[dict[str, Any]]()
#: the execution settings' fidelity-check outcomes, per model, probe, attack, threat and setting
EXECUTION_KEY = pytest.StashKey[dict[str, Any]]()
#: the run's id (the controller's, handed to pytest-xdist workers)
RUN_ID_KEY = pytest.StashKey[str]()
#: the ``--robust-baseline`` store (absent without the option)
BASELINE_KEY: pytest.StashKey[BaselineStore] = pytest.StashKey()
#: the gate's default policy, resolved from ``--robust-policy`` by ``pytest_robust_make_policy``
POLICY_KEY: pytest.StashKey[Policy | NonInferiority] = pytest.StashKey()
#: checkpoints the plugin's fixtures built: ``id(model)`` → (model, its manifest record); a gate on
#: one of them records the checkpoint, so ``pytest-robust verify`` and ``export`` can find it
BUILT_KEY = pytest.StashKey[dict[int, tuple[Any, dict[str, Any]]]]()
#: this process's result-cache counts (``hit``, ``computed``), summed over workers on the controller
RESULT_COUNTS_KEY = pytest.StashKey[dict[str, int]]()
#: ``workeroutput`` name under which a pytest-xdist worker hands its result-cache counts back
WORKER_COUNTS = "pytest_robust_result_cache"
#: the device this process evaluates on (set by the ``robust_device`` fixture; absent until then)
DEVICE_KEY = pytest.StashKey[str]()
#: the controller's record of its pytest-xdist workers: worker id → ``device``, ``host``, ``threads``
WORKERS_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
#: ``workeroutput`` name under which a pytest-xdist worker hands back its device, host and threads
WORKER_INFO = "pytest_robust_worker"
