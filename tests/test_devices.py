"""One GPU per pytest-xdist worker (``pytest_robust.devices``), tested on a CPU with made-up GPU counts.

The mapping is a pure function of the requested device, the worker id and the GPU count; the plugin
is tested through pytester with the count faked in the inner conftest (a ``torch.device("cuda:1")``
is only a name: nothing runs on it), and one real run under ``-n 2`` evaluates on the CPU and brings
the results back to the controller with the device each worker used.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
from typing import Any

import pytest

from pytest_robust.devices import assign_device, device_groups, shared_devices, worker_index, worker_order
from pytest_robust.errors import RobustConfigError
from pytest_robust.report.terminal import worker_lines
from tests.inner import PRELUDE


@pytest.mark.parametrize(
    ("requested", "worker", "gpus", "device"),
    [
        ("auto", None, 0, "cpu"),
        ("auto", "gw3", 0, "cpu"),  # no GPU: every worker on the CPU (threads divided)
        ("auto", None, 4, "cuda"),  # one process: the current GPU, as before
        ("auto", "gw0", 4, "cuda:0"),
        ("auto", "gw3", 4, "cuda:3"),
        ("auto", "gw5", 4, "cuda:1"),  # more workers than GPUs: worker i on cuda:(i mod k)
        ("auto", "gw7", 1, "cuda:0"),
        ("AUTO", "gw1", 2, "cuda:1"),
        ("auto", "master", 2, "cuda"),  # pytest-xdist's name for a process without workers
        ("cuda", None, 2, "cuda"),
        ("cuda", "gw2", 2, "cuda:0"),  # cuda without an index under xdist: the worker's GPU
        ("cuda", "gw3", 2, "cuda:1"),
        ("cuda:1", None, 2, "cuda:1"),  # an explicit GPU is kept as given
        ("cuda:1", "gw0", 2, "cuda:1"),
        ("cuda:1", "gw7", 2, "cuda:1"),
        ("cpu", "gw3", 8, "cpu"),
        ("mps", "gw1", 0, "mps"),
    ],
)
def test_the_device_of_each_process(requested: str, worker: str | None, gpus: int, device: str) -> None:
    assert assign_device(requested, worker, gpus) == device


@pytest.mark.parametrize(
    ("requested", "worker", "gpus", "names"),
    [
        ("cuda:2", None, 2, ["'cuda:2'", "shows 2 CUDA devices", "cuda:0 to cuda:1", "CUDA_VISIBLE_DEVICES"]),
        ("cuda:1", "gw0", 1, ["'cuda:1'", "shows 1 CUDA device ", "(cuda:0;", "--robust-device=auto"]),
        ("cuda:0", "gw1", 0, ["'cuda:0'", "CUDA is not available here"]),
        ("cuda", "gw1", 0, ["'cuda'", "CUDA is not available here", "auto or cpu"]),
    ],
)
def test_a_gpu_this_machine_lacks_is_an_error_that_says_what_it_has(
    requested: str, worker: str | None, gpus: int, names: list[str]
) -> None:
    with pytest.raises(RobustConfigError) as info:
        assign_device(requested, worker, gpus)
    for name in names:
        assert name in str(info.value)


def test_worker_ids() -> None:
    assert [worker_index(w) for w in (None, "master", "gw0", "gw12")] == [None, None, 0, 12]
    with pytest.raises(RobustConfigError, match="'worker-1'"):
        worker_index("worker-1")
    assert sorted(["gw10", "gw2", "gw1"], key=worker_order) == ["gw1", "gw2", "gw10"]
    with pytest.raises(ValueError, match="cuda_count"):
        assign_device("auto", None, -1)


def _workers(devices: dict[str, str | None], host: str = "node1") -> dict[str, dict[str, Any]]:
    return {w: {"device": d, "host": host, "threads": 4} for w, d in devices.items()}


def test_which_workers_shared_a_gpu() -> None:
    four_on_two = _workers({f"gw{i}": f"cuda:{i % 2}" for i in range(4)})
    assert device_groups(four_on_two) == [("cuda:0", ["gw0", "gw2"]), ("cuda:1", ["gw1", "gw3"])]
    assert shared_devices(four_on_two) == device_groups(four_on_two)
    one_each = _workers({"gw1": "cuda:1", "gw0": "cuda:0", "gw2": None})  # gw2 needed no device
    assert device_groups(one_each) == [("cuda:0", ["gw0"]), ("cuda:1", ["gw1"])]
    assert shared_devices(one_each) == []
    assert shared_devices(_workers({"gw0": "cpu", "gw1": "cpu"})) == []  # a CPU is shared by design
    ten = _workers({f"gw{i}": f"cuda:{i}" for i in range(11)})
    assert [d for d, _ in device_groups(ten)][:3] == ["cuda:0", "cuda:1", "cuda:2"]
    assert device_groups(ten)[-1] == ("cuda:10", ["gw10"])


def test_workers_on_two_machines_are_grouped_by_host() -> None:
    """``--tx`` on two 2-GPU machines: gw0..gw3 on a, gw4..gw7 on b; cuda:0 of a is not cuda:0 of b."""
    a = _workers({f"gw{i}": f"cuda:{i % 2}" for i in range(2)}, host="a")
    b = _workers({f"gw{i}": f"cuda:{i % 2}" for i in range(2, 4)}, host="b")
    assert shared_devices({**a, **b}) == []
    assert device_groups({**a, **b}) == [
        ("cuda:0 on a", ["gw0"]),
        ("cuda:1 on a", ["gw1"]),
        ("cuda:0 on b", ["gw2"]),
        ("cuda:1 on b", ["gw3"]),
    ]


def test_the_terminal_names_the_devices_and_the_shared_gpus() -> None:
    doc = {"run": {"workers": _workers({f"gw{i}": f"cuda:{i % 2}" for i in range(3)})}}
    assert worker_lines(doc) == [
        "devices: cuda:0 gw0, gw2; cuda:1 gw1",
        "shared GPUs: cuda:0 (gw0, gw2): several workers on one GPU share its memory and time; "
        "-n <number of GPUs> gives one worker per GPU",
    ]
    assert worker_lines({"run": {"workers": {}}}) == []
    assert worker_lines({"run": {"xdist_workers": None}}) == []  # a document written before workers


# --- through pytest ---------------------------------------------------------------------------------

#: an inner conftest that makes the plugin see ``gpus`` CUDA devices (nothing runs on them)
FAKE_GPUS = textwrap.dedent(
    """
    import pytest_robust.devices

    pytest_robust.devices.cuda_device_count = lambda: {gpus}
    """
)

DEVICE_TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_device(robust_device, worker_id, i):
        assert str(robust_device) == f"cuda:{int(worker_id[2:]) % 2}"
    """
)


def test_auto_puts_each_worker_on_its_gpu_and_says_which_share_one(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makeconftest(FAKE_GPUS.format(gpus=2))
    pytester.makepyfile(test_devices=DEVICE_TESTS)
    result = pytester.runpytest_subprocess(
        "-n", "3", "--robust-device=auto", "--robust-report=R", "-p", "no:cacheprovider", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "robust: device=auto under pytest-xdist: worker gwI evaluates on cuda:(I mod the GPUs*",
            "devices: cuda:0 gw0, gw2; cuda:1 gw1",
            "shared GPUs: cuda:0 (gw0, gw2): several workers on one GPU share*",
        ]
    )
    run = json.loads((pytester.path / "R" / "latest" / "results.json").read_text())["run"]
    assert {w: info["device"] for w, info in run["workers"].items()} == {
        "gw0": "cuda:0",
        "gw1": "cuda:1",
        "gw2": "cuda:0",
    }
    assert {info["host"] for info in run["workers"].values()} == {socket.gethostname()}


def test_a_gpu_beyond_the_count_is_a_usage_error_at_start(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_GPUS.format(gpus=2))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--robust-device=cuda:2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--robust-device cuda:2: device 'cuda:2' requested but this machine shows 2 CUDA devices*"]
    )


REAL = PRELUDE + textwrap.dedent(
    """

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(64, 1)

    @pytest.fixture(scope="session")
    def model():
        return tiny_model(train=256, steps=100)
    """
)


def test_workers_evaluate_on_their_device_and_the_controller_records_it(pytester: pytest.Pytester) -> None:
    """A real ``-n 2`` run on this machine (``auto``: the CPU here, a GPU per worker on a GPU machine):
    every result reaches the controller with the device its worker used, and the run records each
    worker's device and threads (cores divided among the workers, as before)."""
    pytest.importorskip("xdist")
    from pytest_robust.devices import cuda_device_count

    pytester.makeconftest(REAL)
    pytester.makepyfile(
        test_gates="""
        import pytest

        @pytest.mark.parametrize("eps", [1/255, 2/255, 3/255, 4/255])
        def test_gate(assert_robust, model, eps):
            assert_robust(model, "fgsm", eps=eps, min_acc=0.0)
        """
    )
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "--robust-device=auto",
        "--robust-profile=smoke",
        "--robust-soundness=warn",
        f"--robust-cache-dir={pytester.path / 'cache'}",
        "--robust-report=R",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(passed=4)
    gpus = cuda_device_count()
    expected = {w: assign_device("auto", w, gpus) for w in ("gw0", "gw1")}
    doc = json.loads((pytester.path / "R" / "latest" / "results.json").read_text())
    workers = doc["run"]["workers"]
    assert {w: info["device"] for w, info in workers.items()} == expected
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert {info["threads"] for info in workers.values()} == {threads}
    devices = [d["evaluation"]["device"] for d in doc["details"]]
    assert len(devices) == 4
    assert set(devices) <= set(expected.values())
    assert doc["manifest"]["devices"] == sorted(set(devices))
    assert all(row["device"] in expected.values() for row in doc["rows"])
    groups = "; ".join(f"{d} {', '.join(ws)}" for d, ws in device_groups(workers))
    result.stdout.fnmatch_lines([f"devices: {groups}"])
