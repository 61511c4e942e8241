"""Render an HTML file in headless Chromium and record what a reader's browser would see.

Used by the tests of the self-contained HTML report: the page must render without console errors,
request nothing from the network (an archived report is opened offline) and show its figures at a
non-zero size. Chromium is the system one (Debian package ``chromium``), driven by the Python
``playwright`` package; playwright's own browser download is never used (it needs the network).

    from tests.browser import find_chromium, render, skip_reason
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Request, Route

#: Environment variable naming the Chromium executable to use (overrides the search).
CHROMIUM_ENV = "PYTEST_ROBUST_CHROMIUM"
#: Environment variable naming a folder where tests copy artefacts (screenshots) to keep.
ARTIFACTS_ENV = "PYTEST_ROBUST_ARTIFACTS"

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")

#: Command-line flags for an offline, unattended Chromium. Without the background-networking flags
#: Chromium contacts Google services at start-up (component updates, sync, field trials), which a
#: closed network turns into delays and noise. --disable-dev-shm-usage: containers often have a tiny
#: /dev/shm (64 MB in Docker), where Chromium crashes on large pages; /tmp is used instead.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1280, 900

# Top-level figures: every <img>, and every <svg> that is not nested inside another <svg>.
_FIGURES_JS = """
() => Array.from(document.querySelectorAll('svg, img'))
  .filter(el => !(el.parentElement && el.parentElement.closest('svg')))
  .map(el => {
    const box = el.getBoundingClientRect();
    const tag = el.tagName.toLowerCase();
    const title = tag === 'svg' ? el.querySelector(':scope > title') : null;
    let name;
    if (el.id) name = `${tag}#${el.id}`;
    else if (el.getAttribute('alt')) name = `${tag}[alt=${el.getAttribute('alt')}]`;
    else if (el.getAttribute('aria-label')) name = `${tag}[aria-label=${el.getAttribute('aria-label')}]`;
    else if (title && title.textContent.trim()) name = `${tag}[title=${title.textContent.trim()}]`;
    else name = el.outerHTML.replace(/\\s+/g, ' ').slice(0, 80);
    const loaded = tag === 'img' ? (el.complete && el.naturalWidth > 0) : true;
    return {name: name, width: box.width, height: box.height, loaded: loaded};
  })
"""


@dataclass(frozen=True)
class Figure:
    """One ``<svg>`` or ``<img>`` of the rendered page, with its laid-out size in CSS pixels."""

    name: str
    width: float
    height: float
    #: For ``<img>``: the image decoded (a broken ``src`` still gets a box). Always True for ``<svg>``.
    loaded: bool = True


@dataclass(frozen=True)
class RenderResult:
    """What rendering one HTML file produced."""

    #: Console messages of type error, then uncaught exceptions ("pageerror: ...").
    console_errors: tuple[str, ...]
    #: URLs requested other than the page's own file:// URL and data: URLs (includes websockets).
    external_requests: tuple[str, ...]
    figures: tuple[Figure, ...]
    #: Number of <script> elements in the page.
    scripts: int
    title: str


def find_chromium() -> str | None:
    """The Chromium executable to drive, or None when there is none.

    ``$PYTEST_ROBUST_CHROMIUM`` wins when set (None if it is not an executable file); otherwise
    Debian's ``/usr/bin/chromium``, then ``chromium`` or ``chromium-browser`` on the PATH.
    """
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        return override if _is_executable(Path(override)) else None
    if _is_executable(DEBIAN_CHROMIUM):
        return str(DEBIAN_CHROMIUM)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def playwright_available() -> bool:
    """Whether the ``playwright`` Python package can be imported."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def skip_reason() -> str | None:
    """Why :func:`render` cannot run here (a message for ``pytest.skip``), or None when it can."""
    if not playwright_available():
        return "playwright not installed (pip install -e '.[test]'; no browser download needed)"
    if find_chromium() is None:
        override = os.environ.get(CHROMIUM_ENV)
        if override:
            return f"Chromium not installed: ${CHROMIUM_ENV}={override} is not an executable file"
        return "Chromium not installed (apt-get install chromium)"
    return None


def render(html_path: Path, screenshot: Path, *, timeout_s: float = 30.0) -> RenderResult:
    """Open ``html_path`` in headless Chromium, record errors, requests and figures, take a screenshot.

    Requests that would leave the machine (anything but file: and data: URLs) are recorded and
    aborted, so the check never touches the network. The screenshot is a full-page PNG at a
    1280x900 viewport. Raises ``RuntimeError`` when Chromium cannot be found.
    """
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(skip_reason() or "Chromium not found")
    url = html_path.resolve().as_uri()
    timeout_ms = timeout_s * 1000
    errors: list[str] = []
    page_errors: list[str] = []
    requests: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    def on_request(request: Request) -> None:
        req_url = request.url
        if req_url.startswith("data:") or _same_document(req_url, url):
            return
        requests.append(req_url)

    def on_route(route: Route) -> None:
        # Own file and data: URLs load; anything else (http, https, ws, other files) is refused.
        req_url = route.request.url
        if req_url.startswith("data:") or _same_document(req_url, url):
            route.continue_()
        else:
            route.abort()

    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True, timeout=timeout_ms
        )
        try:
            context = browser.new_context(
                viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT}, service_workers="block"
            )
            context.set_default_timeout(timeout_ms)
            context.route("**/*", on_route)
            page = context.new_page()
            page.on("console", on_console)
            page.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))
            page.on("request", on_request)
            page.on("websocket", lambda ws: requests.append(ws.url))
            page.goto(url, wait_until="load")
            # Let late work (timers, fonts, lazy images) settle; a self-contained page is idle at once.
            page.wait_for_load_state("networkidle")
            figures = tuple(
                Figure(str(f["name"]), float(f["width"]), float(f["height"]), bool(f["loaded"]))
                for f in page.evaluate(_FIGURES_JS)
            )
            scripts = int(page.evaluate("() => document.querySelectorAll('script').length"))
            title = page.title()
            page.screenshot(path=str(screenshot), full_page=True)
            context.close()
        finally:
            browser.close()
    return RenderResult(
        console_errors=(*errors, *page_errors),
        external_requests=tuple(requests),
        figures=figures,
        scripts=scripts,
        title=title,
    )


def keep_artifact(path: Path, name: str | None = None) -> Path | None:
    """Copy ``path`` into ``$PYTEST_ROBUST_ARTIFACTS`` (as ``name``) when that is set; the copy's path."""
    folder = os.environ.get(ARTIFACTS_ENV)
    if not folder:
        return None
    target = Path(folder) / (name or path.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _same_document(request_url: str, page_url: str) -> bool:
    """The page's own URL, ignoring a #fragment (in-page links)."""
    return request_url.split("#", 1)[0] == page_url
