"""``--robust-seeds``: a multi-seed study through the plugin (issue #10 item 4)."""

from __future__ import annotations

import json
import textwrap

import pytest

from pytest_robust.report.results import seed_study, spread
from tests.inner import PRELUDE, run_smoke

CONFTEST = PRELUDE + textwrap.dedent(
    """
    TRAINED = {trained!r}

    @pytest.fixture(scope="session")
    def robust_data():
        return blobs(64, 1, shift=0.12)

    @pytest.fixture(scope="session")
    def trained(robust_seed):
        with open(TRAINED, "a") as fh:
            fh.write(f"{{robust_seed}}\\n")
        torch.manual_seed(robust_seed)
        net = nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.ReLU(), nn.Linear(8, 2))
        data = blobs(128, 2, shift=0.12)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        for i in range(30):
            loss = nn.functional.cross_entropy(net(data.images), data.labels)
            opt.zero_grad(); loss.backward(); opt.step()
        return net.eval()

    @pytest.fixture(scope="session")
    def fixed():  # outside the study: one training whatever the seeds
        return tiny_model(128, 20)
    """
)

TESTS = textwrap.dedent(
    """
    def test_gate(assert_robust, trained, fgsm):
        assert_robust(trained, fgsm, eps=4 / 255, min_acc=0.0, context={"model": "tiny"})

    def test_clean(assert_robust, trained):
        assert_robust(trained, "none", eps=0.0, min_acc=0.0, context={"model": "tiny"})

    def test_even_seed(record_finding, robust_seed):
        even = robust_seed % 2 == 0
        record_finding("even", claim="the seed is even", measured=str(robust_seed), holds=even)

    def test_without_seed(record_finding):
        pass

    def test_outside(assert_robust, fixed):  # attacked with --robust-seed 0, not study seed 0
        assert_robust(fixed, "none", eps=0.0, min_acc=0.0, context={"model": "fixed"})
    """
)


@pytest.fixture
def study(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.format(trained=str(pytester.path / "trained.txt")))
    pytester.makepyfile(test_study=TESTS)
    return pytester


def test_each_seed_trains_and_attacks_once_and_the_report_spans_them(study: pytest.Pytester) -> None:
    result = run_smoke(study, "--robust-seeds=0,1,2", "--robust-report=R", "-v")
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(["*test_gate?seed0? PASSED*", "*test_gate?seed2? PASSED*"])
    assert sorted((study.path / "trained.txt").read_text().split()) == ["0", "1", "2"]  # once per seed
    doc = json.loads((study.path / "R" / "latest" / "results.json").read_text())
    tiny = [r for r in doc["rows"] if r["model"] == "tiny"]
    assert sorted({r["study_seed"] for r in tiny}) == [0, 1, 2]
    assert [r["study_seed"] for r in doc["rows"] if r["model"] == "fixed"] == [None]
    assert doc["manifest"]["config"]["seeds"] == [0, 1, 2]
    config = json.loads((study.path / "R" / "latest" / "config.json").read_text())
    assert config["options"]["robust_seeds"] == [0, 1, 2]
    seeds = doc["seed_study"]
    assert seeds["seeds"] == [0, 1, 2]
    assert {c["model"] for c in seeds["cells"]} == {"tiny"}  # the fixed model is in no seed's table
    cells = {c["cell"]: c for c in seeds["cells"] if c["model"] == "tiny"}
    assert set(cells) == {"clean", "fgsm"}
    fgsm = cells["fgsm"]
    attacked = [r for r in tiny if r["attack"] == "fgsm"]
    per_seed = [r["robust_acc"] for s in (0, 1, 2) for r in attacked if r["study_seed"] == s]
    assert [fgsm["per_seed"][s] for s in ("0", "1", "2")] == per_seed
    assert fgsm["mean"] == pytest.approx(sum(per_seed) / 3)
    assert fgsm["ci"][0] <= fgsm["mean"] <= fgsm["ci"][1]
    [finding] = seeds["findings"]
    assert (finding["name"], finding["seeds_holding"], finding["holds"]) == ("even", 2, False)
    html = (study.path / "R" / "latest" / "report.html").read_text()
    assert "Across seeds 0, 1, 2" in html
    assert "2 of 3 seeds" in html


def test_one_seed_is_no_study(study: pytest.Pytester) -> None:
    run_smoke(study, "--robust-report=R").assert_outcomes(passed=5)
    assert (study.path / "trained.txt").read_text().split() == ["0"]
    doc = json.loads((study.path / "R" / "latest" / "results.json").read_text())
    assert "seed_study" not in doc


@pytest.mark.parametrize(
    ("value", "message"), [("1", "at least two seeds"), ("0,0", "distinct"), ("0,x", "integer")]
)
def test_bad_seeds_are_a_usage_error(study: pytest.Pytester, value: str, message: str) -> None:
    result = run_smoke(study, f"--robust-seeds={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_the_interval_is_a_t_interval_across_seeds() -> None:
    out = spread([0.5, 0.6, 0.7])
    assert out["mean"] == pytest.approx(0.6)
    assert out["sd"] == pytest.approx(0.1)
    # t(0.975, 2) = 4.303: half-width 4.303 * 0.1 / sqrt(3) = 0.2484
    assert out["ci"] == pytest.approx([0.6 - 0.24841, 0.6 + 0.24841], abs=1e-4)
    assert spread([0.4])["ci"] is None
    assert spread([0.01, 0.02, 0.9])["ci"][0] == 0.0  # clipped to [0, 1]


def test_findings_of_one_name_are_told_apart_by_their_claim() -> None:
    """The suite records one finding name per architecture: each claim is judged across seeds alone."""

    def finding(arch: str, seed: int, holds: bool) -> dict[str, object]:
        return {
            "name": "collapses",
            "claim": f"{arch} collapses",
            "measured": "-",
            "holds": holds,
            "seed": seed,
        }

    document = {
        "manifest": {"config": {"seeds": [0, 1]}},
        "rows": [],
        "tests": [
            {"findings": [finding("a", 0, True), finding("b", 0, False)]},
            {"findings": [finding("a", 1, True), finding("b", 1, True)]},
        ],
    }
    study = seed_study(document)
    assert study is not None
    verdicts = {f["claim"]: (f["seeds_holding"], f["holds"]) for f in study["findings"]}
    assert verdicts == {"a collapses": (2, True), "b collapses": (1, False)}
