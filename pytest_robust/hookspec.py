"""Hook specifications: the extension points of pytest-robust (attacks, policies, report sections).

Registered by :func:`pytest_robust.plugin.pytest_addhooks`. Implement them in a ``conftest.py`` or
an installed plugin, as for any pytest hook::

    def pytest_robust_register_attacks(register):
        register("shift", lambda **budget: ShiftAttack(**budget))

    def pytest_robust_make_policy(name, config):
        return HospitalPolicy() if name == "hospital" else None

    def pytest_robust_report_sections(config, results):
        return [ReportSection(title="Sign-off", text="reviewed by ...")]

Torch-free: the plugin imports this module at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_robust.errors import RobustConfigError

if TYPE_CHECKING:
    from pytest_robust.policies import Policy


@pytest.hookspec(historic=True)
def pytest_robust_register_attacks(register: Callable[..., None]) -> None:
    """Register attacks by name: call ``register(name, factory, *, replace=False)``.

    ``factory(**budget)`` returns an object satisfying :class:`pytest_robust.attacks.Attack`
    (``name``, ``config()``, ``describe()``, ``perturb(...)``). Afterwards ``make_attack(name)``,
    ``coerce_attack(name)`` and ``assert_robust(model, name, ...)`` build it. Called once when pytest
    configures (a conftest loaded later is called when it is loaded). Built-in names cannot be
    replaced; a name another plugin registered can be only with ``replace=True``. The registrations
    are undone when the session ends (``pytest_unconfigure``), so they never leak into another
    in-process session.
    """


@pytest.hookspec(firstresult=True)
def pytest_robust_make_policy(name: str, config: pytest.Config) -> Policy | None:
    """Return the gate's policy for ``name`` (``--robust-policy`` / ini ``robust_policy``), or None.

    A policy is any object with ``decide(result, min_acc) -> Verdict``
    (:class:`pytest_robust.policies.Policy`). The first non-None answer wins; pytest-robust's own
    implementation runs last and knows the built-in names
    (:func:`pytest_robust.plugin.builtin_policies`). Called once, when pytest configures: only
    plugins and conftest files loaded by then (the rootdir's, the test paths') can answer. A name
    nobody knows is a usage error.
    """


@pytest.hookspec
def pytest_robust_report_sections(
    config: pytest.Config, results: list[dict[str, Any]]
) -> Sequence[ReportSection] | None:
    """Return extra sections for the ``--robust-report`` page (a list of :class:`ReportSection`).

    ``results`` are the JSON results the report is built from (``RobustResult.to_json()``, in the
    report's order; a copy: changing them changes nothing). Sections are stored in
    ``results.json`` (``sections``), rendered, escaped, into ``report.html`` after the soundness
    table, and into the Markdown summary (:mod:`pytest_robust.report.markdown`). Called on the
    controlling process only, when the report is written.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSection:
    """One section a plugin adds to the report: a title and either a paragraph or a table.

    Plain data: every string is escaped where it is rendered (never markup). ``text`` for a
    paragraph; ``headers`` and ``rows`` (strings, each row as long as ``headers``) for a table.
    Lists are accepted and stored as tuples.
    """

    title: str
    text: str | None = None
    headers: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise RobustConfigError(f"ReportSection.title must be a non-empty string, got {self.title!r}")
        headers = _strings(self.headers, "headers")
        rows = tuple(_strings(row, f"rows[{i}]") for i, row in enumerate(_sequence(self.rows, "rows")))
        if self.text is not None and not isinstance(self.text, str):
            raise RobustConfigError(f"ReportSection.text must be a string, got {type(self.text).__name__}")
        if (self.text is None) == (not headers):
            raise RobustConfigError(
                f"ReportSection {self.title!r}: give either text (a paragraph) or headers and rows (a table)"
            )
        for i, row in enumerate(rows):
            if len(row) != len(headers):
                raise RobustConfigError(
                    f"ReportSection {self.title!r}: rows[{i}] has {len(row)} cells, "
                    f"headers has {len(headers)}"
                )
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "rows", rows)

    @property
    def is_table(self) -> bool:
        return self.text is None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "text": self.text,
            "headers": list(self.headers),
            "rows": [list(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReportSection:
        return cls(
            title=data["title"],
            text=data.get("text"),
            headers=data.get("headers") or (),
            rows=data.get("rows") or (),
        )


def _sequence(value: object, what: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise RobustConfigError(f"ReportSection.{what} must be a list or tuple, got {type(value).__name__}")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    items = tuple(_sequence(value, what))
    for item in items:
        if not isinstance(item, str):
            raise RobustConfigError(
                f"ReportSection.{what} must hold strings, got {type(item).__name__} {item!r} "
                "(format numbers yourself, e.g. f'{x:.3f}')"
            )
    return items


def check_sections(value: object, source: str) -> list[ReportSection]:
    """What a ``pytest_robust_report_sections`` implementation returned, validated.

    ``source`` names the implementation (plugin) in the error message.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        raise RobustConfigError(
            f"{source}: pytest_robust_report_sections must return a list of "
            f"pytest_robust.hookspec.ReportSection, got {type(value).__name__}"
        )
    for i, section in enumerate(value):
        if not isinstance(section, ReportSection):
            raise RobustConfigError(
                f"{source}: pytest_robust_report_sections returned {type(section).__name__} at index {i}; "
                "expected pytest_robust.hookspec.ReportSection(title=..., text=...) or "
                "ReportSection(title=..., headers=[...], rows=[[...]])"
            )
    return list(value)
