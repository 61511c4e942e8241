"""benchmarks/peers.py (issue #12 item 3) with a tiny budget: the table's shape and the block replacement.

No timing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from pytest_robust.attacks import PGD, AutoAttack
from pytest_robust.data.synthetic import generate_synthetic
from pytest_robust.models import small_cnn
from pytest_robust.training import seeded

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def peers() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "benchmarks" / "peers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_peers", None)


def _tiny(peers: ModuleType) -> tuple[list[Any], torch.Tensor, torch.Tensor, Any]:
    with seeded(0):
        model = small_cnn(width=4)
    data = generate_synthetic(8, size=16, seed=0, split="test")
    settings = peers.Settings(
        n=8, size=16, pgd_steps=2, apgd_steps=2, square_queries=3, reps=2, floor_passes=1
    )
    return [peers.ModelCase("tiny", model)], data.images, data.labels, settings


def _expected_pairs(peers: ModuleType) -> list[tuple[str, str, str]]:
    pgd_ours = ["PGD-2"] + (["PGD-2, early_exit=False"] if peers.has_field(PGD, "early_exit") else [])
    aa_ours = ["AutoAttack"] + (
        ["AutoAttack, early_exit=False", "AutoAttack, early_exit=False, library_checks=False"]
        if peers.has_field(AutoAttack, "early_exit")
        else []
    )
    aa = "AutoAttack (APGD-CE 2 + Square 3)"
    return [
        ("FGSM", "FGSM", "torchattacks FGSM"),
        *[("PGD-2", o, "torchattacks PGD") for o in pgd_ours],
        *[(aa, o, p) for o in aa_ours for p in ("pyautoattack direct", "pyautoattack lean")],
    ]


def test_table_has_a_row_per_attack_variant_and_peer(peers: ModuleType) -> None:
    models, x, y, settings = _tiny(peers)
    report = peers.run(models, x, y, settings)
    pairs = [(r.attack, r.ours, r.peer.removesuffix(" (not installed)")) for r in report.rows]
    assert pairs == _expected_pairs(peers)
    table = peers.markdown_table(report.rows).splitlines()
    assert table[0] == "| " + " | ".join(peers.COLUMNS) + " |"
    assert len(table) == 2 + len(report.rows)
    for line in table[2:]:
        assert line.startswith("| tiny | ")
        assert line.count(" | ") == len(peers.COLUMNS) - 1
    for row in report.rows:
        assert 0.0 <= row.ours_acc <= row.clean_acc <= 1.0
        assert row.floor_wall > 0
        assert row.ours_wall > 0
    assert not any("INVALID" in n for n in report.notes)
    assert any(n.startswith("ours never weaker") for n in report.notes)
    text = peers.render(report, "header line")
    assert text.startswith("header line\n\n| model |")


def test_missing_torchattacks_leaves_its_peer_cells_empty(
    peers: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    models, x, y, settings = _tiny(peers)
    monkeypatch.setattr(peers, "_torchattacks", lambda: None)
    report = peers.run(models, x, y, settings)
    ta = [r for r in report.rows if r.peer.startswith("torchattacks")]
    assert ta
    assert all(r.peer.endswith("(not installed)") and r.peer_acc is None for r in ta)
    assert all(r.cells()[6] == "—" and r.cells()[9] == "—" for r in ta)
    assert any("torchattacks is not installed" in n for n in report.notes)
    pya = [r for r in report.rows if r.peer.startswith("pyautoattack")]
    assert pya
    assert all(r.peer_acc is not None for r in pya)


def test_block_replacement_keeps_the_rest_byte_identical(peers: ModuleType, tmp_path: Path) -> None:
    before = "# Benchmarks\r\n\r\nintro with ünïcode and trailing spaces   \n\n## Against the peers\n\n"
    after = "\n\nprose after the block\n\n## Next section\n| a | b |\n"
    path = tmp_path / "BENCH.md"
    path.write_bytes((before + peers.START + "\nold table\n| x |\n" + peers.END + after).encode("utf-8"))
    peers.write_block(path, "new header\n\n| new | table |\n")
    data = path.read_bytes()
    head = (before + peers.START).encode("utf-8")
    tail = (peers.END + after).encode("utf-8")
    assert data.startswith(head)
    assert data.endswith(tail)
    assert data[len(head) : len(data) - len(tail)] == b"\nnew header\n\n| new | table |\n"
    peers.write_block(path, "new header\n\n| new | table |")  # idempotent
    assert path.read_bytes() == data
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "text",
    ["no markers", "<!-- peers:end --> <!-- peers:start -->", "<!-- peers:start -->\n<!-- peers:start -->\n"],
)
def test_block_replacement_needs_one_pair_of_markers(peers: ModuleType, text: str) -> None:
    with pytest.raises(ValueError, match="peers:start"):
        peers.replace_block(text, "x")
