"""The headless-Chromium helper (tests/browser.py) on small static pages: it passes a clean
self-contained page and catches the failures the HTML report check relies on it to catch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import RenderResult, keep_artifact, render, skip_reason

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A valid 2x2 red PNG, embedded as a data: URL.
RED_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4"
    "nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


@pytest.fixture
def chromium() -> None:
    """Skip (naming what is missing) when playwright or Chromium is unavailable."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)


def _render(tmp_path: Path, request: pytest.FixtureRequest, html: str) -> RenderResult:
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "page.png"
    result = render(page, shot)
    assert shot.read_bytes().startswith(PNG_MAGIC), "the screenshot is not a PNG"
    keep_artifact(shot, f"{request.node.name}.png")
    return result


@pytest.mark.usefixtures("chromium")
def test_self_contained_page_renders_cleanly(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Clean report</title>
<style>body {{ font-family: sans-serif; }}</style></head>
<body><h1>Clean report</h1>
<svg id="curve" width="320" height="200" viewBox="0 0 320 200" xmlns="http://www.w3.org/2000/svg">
  <title>accuracy vs epsilon</title>
  <polyline points="0,10 100,60 200,150 320,190" fill="none" stroke="black"/>
  <svg x="10" y="10" width="20" height="20"><rect width="20" height="20" fill="red"/></svg>
</svg>
<img alt="sample" width="64" height="64" src="data:image/png;base64,{RED_PNG}">
<p><a href="#curve">to the curve</a></p>
</body></html>"""
    result = _render(tmp_path, request, html)

    assert result.console_errors == ()
    assert result.external_requests == ()
    assert result.title == "Clean report"
    assert result.scripts == 0
    names = [f.name for f in result.figures]
    assert names == ["svg#curve", "img[alt=sample]"], "the nested <svg> is not a figure of its own"
    curve, sample = result.figures
    assert (curve.width, curve.height) == (320, 200)
    assert (sample.width, sample.height) == (64, 64)
    assert sample.loaded


@pytest.mark.usefixtures("chromium")
def test_external_request_and_console_error_are_caught(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    html = """<!doctype html>
<html><head><meta charset="utf-8"><title>Leaky report</title></head>
<body>
<img alt="remote" src="https://example.invalid/x.png">
<img alt="broken" width="10" height="10" src="data:image/png;base64,bm90IGEgcG5n">
<script>console.error("boom")</script>
</body></html>"""
    result = _render(tmp_path, request, html)

    assert result.external_requests == ("https://example.invalid/x.png",)
    assert any("boom" in e for e in result.console_errors), result.console_errors
    assert result.scripts == 1
    by_name = {f.name: f for f in result.figures}
    assert not by_name["img[alt=remote]"].loaded
    assert not by_name["img[alt=broken]"].loaded


@pytest.mark.usefixtures("chromium")
def test_uncaught_exception_is_a_console_error(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    html = """<!doctype html><html><head><title>t</title></head><body>
<script>throw new Error("kaput")</script></body></html>"""
    result = _render(tmp_path, request, html)

    assert any("pageerror" in e and "kaput" in e for e in result.console_errors), result.console_errors
    assert result.external_requests == ()
    assert result.figures == ()
