"""The report folder: never the user's files, checked before the run, ``latest`` never missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pytest_robust.errors import RobustConfigError
from pytest_robust.report.run import LATEST_MARK, latest_problem, report_folder_problem, write_run

FILES = {"results.json": b"{}\n", "report.html": b"<html></html>\n"}


def no_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without symbolic links (the copy fallback)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", refuse)


def test_the_users_own_latest_folder_is_never_replaced(tmp_path: Path) -> None:
    mine = tmp_path / "latest"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert latest_problem(tmp_path) is not None
    with pytest.raises(RobustConfigError, match="not made by pytest-robust"):
        write_run(tmp_path, "run-1", FILES)
    assert (mine / "notes.txt").read_text() == "mine"
    assert not mine.is_symlink()


def test_a_users_file_named_latest_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "latest").write_text("mine")
    assert report_folder_problem(tmp_path) is not None
    with pytest.raises(RobustConfigError):
        write_run(tmp_path, "run-1", FILES)
    assert (tmp_path / "latest").read_text() == "mine"


def test_a_link_is_replaced_by_a_link(tmp_path: Path) -> None:
    write_run(tmp_path, "run-1", FILES)
    write_run(tmp_path, "run-2", {**FILES, "results.json": b'{"run": 2}\n'})
    latest = tmp_path / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == "run-2"
    assert (latest / "results.json").read_bytes() == b'{"run": 2}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST_RUN", "latest", "run-1", "run-2"]


def test_without_links_latest_is_a_marked_copy_that_the_next_run_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_links(monkeypatch)
    write_run(tmp_path, "run-1", FILES)
    latest = tmp_path / "latest"
    assert not latest.is_symlink()
    assert (latest / LATEST_MARK).read_text() == "run-1\n"
    write_run(tmp_path, "run-2", {**FILES, "results.json": b'{"run": 2}\n'})
    assert (latest / "results.json").read_bytes() == b'{"run": 2}\n'
    assert (latest / LATEST_MARK).read_text() == "run-2\n"
    # nothing left beside it: no half-made or old copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST_RUN", "latest", "run-1", "run-2"]


def test_latest_stays_whole_when_the_copy_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed (here: failing) while copying leaves the previous ``latest`` as it was."""
    no_links(monkeypatch)
    write_run(tmp_path, "run-1", FILES)

    def broken_copy(src: object, dst: object, *args: object, **kwargs: object) -> None:
        Path(str(dst)).mkdir()
        raise OSError("No space left on device")

    monkeypatch.setattr(shutil, "copytree", broken_copy)
    with pytest.raises(OSError, match="No space"):
        write_run(tmp_path, "run-2", FILES)
    latest = tmp_path / "latest"
    assert (latest / LATEST_MARK).read_text() == "run-1\n"
    assert (latest / "results.json").read_bytes() == FILES["results.json"]


def test_an_unwritable_report_folder_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    problem = report_folder_problem(blocker / "reports")
    assert problem is not None
    assert "cannot write the report" in problem
    assert "is a file" in (report_folder_problem(blocker) or "")
    assert report_folder_problem(tmp_path / "new" / "reports") is None  # created


# --- through the plugin ---------------------------------------------------------------------------


def test_a_users_latest_folder_is_a_usage_error_at_start(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a(): pass")
    mine = pytester.path / "R" / "latest"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    result = pytester.runpytest_subprocess("--robust-report=R", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--robust-report R:*not made by pytest-robust*"])
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (pytester.path / "R").iterdir()) == ["latest"]


def test_an_unwritable_report_folder_is_a_usage_error_at_start(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a(): pass")
    (pytester.path / "blocker").write_text("x")
    result = pytester.runpytest_subprocess("--robust-report=blocker/R", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot write the report into*"])


def test_a_report_that_cannot_be_written_fails_the_run(pytester: pytest.Pytester) -> None:
    """The folder was fine at start and is gone when the run ends (full disk, removed mount)."""
    pytester.makepyfile(
        test_a="""
        import shutil
        from pathlib import Path

        def test_a():
            shutil.rmtree("R")
            Path("R").write_text("now a file")
        """
    )
    result = pytester.runpytest_subprocess("--robust-report=R", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*the report could not be written*"])
