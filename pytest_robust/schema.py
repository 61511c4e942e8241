"""The schema identifiers of every document pytest-robust writes: one place for writers and readers.

Bump a version when a field changes meaning or disappears (new fields may appear within a version)
and say so in the document's description. Stdlib only: the plugin, the report and ``verify``
import it without torch.
"""

from __future__ import annotations

from typing import Final

#: ``results.json``: the document type (``schema``), described in ``docs/results-schema.md``.
RESULTS_SCHEMA: Final = "pytest-robust/results"
#: ``results.json``'s ``schema_version``. 2: soundness columns in the rows (``status``, ``sound``,
#: ``soundness``, ``failed_checks``, ``check_<name>``) and ``summary.unsound``; 1: the first
#: release. Added since, without a bump (only new fields): clinical columns (robust sensitivity /
#: specificity, positives flipped to negative), the baseline comparison (``vs_baseline_*``,
#: ``newly_broken``), every requirement of a gate (``requirements``), the samples a sequential
#: policy used and each pytest-xdist worker's device, host and threads (``run.workers``).
RESULTS_SCHEMA_VERSION: Final = 2

#: One gate's result as JSON (``RobustResult.to_json()``'s ``schema``): a test report's
#: ``user_properties`` and each of ``results.json``'s ``details``.
RESULT_SCHEMA_VERSION: Final = 1

#: ``verification.json`` (``pytest-robust verify``): its ``schema``.
VERIFICATION_SCHEMA_VERSION: Final = 1

#: A result-cache entry and its key material (:mod:`pytest_robust.result_cache`): bump when the key
#: material or the payload changes meaning; old entries are then never looked up. 2: the execution
#: plan in the key material and ``execution`` in the result (issue #12).
RESULT_CACHE_SCHEMA: Final = 2

#: A baseline file (:mod:`pytest_robust.baseline`): its ``schema``, name and version in one string.
BASELINE_SCHEMA: Final = "pytest-robust-baseline/1"
