"""Typed exceptions raised by pytest-robust.

Every error a user can trigger with bad input is one of these, with a message that says what was
wrong and how to fix it. They subclass the builtin that fits (``ValueError`` for a bad value) so
callers can catch them either way. This module imports nothing heavy.
"""

from __future__ import annotations


class RobustError(Exception):
    """Base class of every error pytest-robust raises on purpose."""


class RobustConfigError(RobustError, ValueError):
    """A parameter (eps, min_acc, norm, attack name, profile, ...) has an invalid value."""


class ResumeStateError(RobustConfigError):
    """A training resume state is unreadable or belongs to another training (config or data).

    The checkpoint cache owns its resume states: it discards such a one and trains from the start.
    """


class StorageError(RobustError, OSError):
    """pytest-robust could not write what it must keep (a checkpoint, a training's resume state):
    a full disk, a read-only folder. The message names the folder and where else to put it."""


class StaleLockError(RobustError, TimeoutError):
    """A soft cache lock (``PYTEST_ROBUST_CACHE_LOCK=soft``) was not refreshed for the stale time: its
    holder probably died. The message names the lock file to delete once nobody uses the entry."""


class RobustModelError(RobustError, ValueError):
    """The model misbehaves: wrong output shape, NaN/inf logits, ..."""


class RobustDataError(RobustError, ValueError):
    """The data set is empty, out of range, unreadable or inconsistent."""


class PerturbationError(RobustError, AssertionError):
    """An attack returned an adversarial input outside the threat model.

    This is a bug in the attack (or a hostile model), never a robustness result: the evaluation
    stops rather than report a number that was measured outside the eps-ball.
    """


class AttackUnavailableError(RobustError, ImportError):
    """An attack needs an optional package that is not installed."""


class RobustDataWarning(UserWarning):
    """The data is not what was asked for, and the run goes on: images resized from another size,
    fewer samples than the ``n`` requested. The message names both and how to change it."""


class ResultCacheWarning(UserWarning):
    """A result-cache entry was unreadable, truncated or failed its hash check: it is recomputed."""


class DegenerateModelWarning(UserWarning):
    """The evaluated model (almost) never predicts some class of the data (:mod:`pytest_robust.degeneracy`):
    its robust accuracy measures the class balance, not robustness. Under ``soundness="strict"`` the
    gate also fails (DEGENERATE); under ``"warn"`` this warning and the DEGENERATE mark are all there is."""
