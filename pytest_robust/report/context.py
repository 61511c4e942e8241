"""What the report needs to know of the run, taken from pytest once: a frozen value.

The collector (:mod:`pytest_robust.report.collector`, the only pytest-facing part of the report)
builds it at the session's end and hands it to :mod:`pytest_robust.report.build`, which never
reads pytest's configuration nor imports the plugin.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_robust.config import RobustConfig
    from pytest_robust.hookspec import ReportSection


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """The run as the report records it (identity, command, configuration, timings, counts)."""

    config: RobustConfig
    run_id: str
    #: where the run folder goes (``--robust-report``); None: the document is only summarised
    base: Path | None
    rootpath: Path
    command: tuple[str, ...]
    invocation_dir: Path
    #: pytest-xdist's ``-n`` (None without pytest-xdist)
    xdist_workers: Any
    #: the run's ``--robust-*`` options as pytest resolved them (plain JSON values)
    options: Mapping[str, Any]
    #: the result cache's counts summed over the processes, whether it was read, its folder
    result_cache: Mapping[str, Any]
    #: per pytest-xdist worker (``gw0``, ...): the ``device`` it evaluated on (None: it needed none),
    #: its ``host`` and torch ``threads``, as the worker reported them; empty without workers
    workers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    started: datetime.datetime
    duration_s: float
    exitstatus: int
    interrupted: bool
    sections: tuple[ReportSection, ...] = field(default=())
