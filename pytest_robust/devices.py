"""Which device each process evaluates on: one GPU per pytest-xdist worker.

Pure and torch-free but for :func:`cuda_device_count` (which imports torch when called), so the
mapping is tested on any machine with a made-up GPU count and worker id.

``--robust-device`` → the device of one process (:func:`assign_device`), given the pytest-xdist worker
id (``gw3``; None outside xdist) and the number of CUDA devices this machine shows
(``CUDA_VISIBLE_DEVICES`` renumbers them from 0):

- ``auto``: worker ``gw<i>`` on ``cuda:<i mod k>`` with k GPUs; ``cuda`` (the current GPU) outside
  xdist; ``cpu`` without a GPU (torch threads are then divided among the workers, ``--robust-threads``);
- ``cuda``: as ``auto``, but without a GPU it is an error;
- ``cuda:N``: kept as given (every worker on that GPU); N beyond the GPUs shown is an error;
- ``cpu``, ``mps``: kept as given.

More workers than GPUs is allowed - several workers then share a GPU (its memory too);
:func:`shared_devices` says which, from what the workers report (on several machines, by
host).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pytest_robust.errors import RobustConfigError

_WORKER = re.compile(r"gw(\d+)")


def worker_index(worker_id: str | None) -> int | None:
    """``gw3`` → 3; None (or ``master``, pytest-xdist's name for a process without workers) → None."""
    if worker_id is None or worker_id == "master":
        return None
    match = _WORKER.fullmatch(worker_id)
    if match is None:
        raise RobustConfigError(f"unexpected pytest-xdist worker id {worker_id!r} (expected gw0, gw1, ...)")
    return int(match.group(1))


def assign_device(requested: str, worker_id: str | None, cuda_count: int) -> str:
    """The device this process uses for ``--robust-device requested`` (see the module's rules).

    A CUDA device this machine does not have is a :class:`~pytest_robust.errors.RobustConfigError`
    that says how many it has.
    """
    if isinstance(cuda_count, bool) or not isinstance(cuda_count, int) or cuda_count < 0:
        raise ValueError(f"cuda_count must be a non-negative integer, got {cuda_count!r}")
    text = str(requested).strip().lower()
    index = worker_index(worker_id)
    head, _, number = text.partition(":")
    if head == "auto" and not number:
        if cuda_count == 0:
            return "cpu"
        return "cuda" if index is None else f"cuda:{index % cuda_count}"
    if head != "cuda":
        return text  # cpu, mps: as given (models.resolve_device checks mps)
    if cuda_count == 0:
        raise RobustConfigError(
            f"device {requested!r} requested but CUDA is not available here (no CUDA device visible); "
            "use --robust-device=auto or cpu"
        )
    if not number:
        return "cuda" if index is None else f"cuda:{index % cuda_count}"
    if not number.isdigit():
        raise RobustConfigError(f"unknown device {requested!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if int(number) >= cuda_count:
        shown = "cuda:0" if cuda_count == 1 else f"cuda:0 to cuda:{cuda_count - 1}"
        raise RobustConfigError(
            f"device {requested!r} requested but this machine shows {cuda_count} CUDA device"
            f"{'s' if cuda_count != 1 else ''} ({shown}; CUDA_VISIBLE_DEVICES renumbers them from 0); "
            "use one of those, or --robust-device=auto (one GPU per pytest-xdist worker)"
        )
    return f"cuda:{int(number)}"


def cuda_device_count() -> int:
    """How many CUDA devices torch sees here (0 without CUDA). Imports torch."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def worker_order(worker: str) -> tuple[int, str]:
    """A sort key of worker ids: ``gw2`` before ``gw10``."""
    match = _WORKER.fullmatch(worker)
    return (int(match.group(1)) if match else -1, worker)


def _device_order(device: str) -> tuple[str, int]:
    kind, _, number = device.partition(":")
    return (kind, int(number) if number.isdigit() else -1)


def device_groups(workers: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Which workers used which device: ``[("cuda:0", ["gw0", "gw2"]), ("cuda:1", ["gw1", "gw3"])]``.

    ``workers``: worker id → what it reported (``device``: None when it needed none; ``host``). A
    device is named with its host (``cuda:0 on node1``) when the workers ran on several machines.
    By host, then device (``cuda:2`` before ``cuda:10``), workers in index order; workers without a
    device are left out.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for worker, info in workers.items():
        if info.get("device"):
            groups.setdefault((str(info["device"]), str(info.get("host") or "?")), []).append(worker)
    several = len({host for _, host in groups}) > 1
    return [
        (f"{device} on {host}" if several else device, sorted(names, key=worker_order))
        for (device, host), names in sorted(
            groups.items(), key=lambda kv: (kv[0][1], _device_order(kv[0][0]))
        )
    ]


def shared_devices(workers: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The GPUs that several workers used (:func:`device_groups` of CUDA devices with more than one
    worker); a CPU is shared by design (its threads divided among the workers)."""
    return [(d, names) for d, names in device_groups(workers) if d.startswith("cuda") and len(names) > 1]
