"""The documentation site as a reader sees it: built with `mkdocs build --strict`, served over HTTP, opened in
headless Chromium through Playwright.

What a strict build cannot see is checked here: that the pages render (a visible title, code blocks), that the API
reference shows the documented functions with their signatures, that every figure on a results page loads (a broken
image path builds without a warning), and that the home page's navigation leads to pages that exist.

Needs Debian's Chromium (/usr/bin/chromium: `apt-get install chromium`; .ci/run installs it) and the `playwright`
package (requirements.txt); the module is skipped, with the reason, when either is missing. Playwright drives the
system's Chromium: `playwright install` (a browser download) is never needed. Requests that leave the local server
(MathJax and fonts from a CDN) are aborted, so the test neither waits on the network nor depends on it; an image
from outside the site therefore counts as broken: the site's figures are its own (docs/figures).

With NTK_RNN_SCREENSHOTS=<folder>, full-page screenshots of the home page, guide/models, api/kernels and
results/training are written there for a person to look at; nothing is written otherwise.
"""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium: neither /usr/bin/chromium nor `chromium` on PATH (Debian: `apt-get install chromium`)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is missing (`pip install playwright`; requirements.txt pins it)",
)

# headless Chromium in a container as root, with no network past the local server and nothing of its own to fetch
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000

GUIDE_PAGES = ["index.html", "guide/models.html"]
API_PAGE = "api/kernels.html"
API_NAMES = ["limit_ntk", "empirical_ntk_fn"]
# the results pages, from the sources (collection must not wait for the build, and must be the same on every worker)
RESULTS_PAGES = sorted(f"results/{p.stem}.html" for p in (ROOT / "docs" / "results").glob("*.md"))
# results pages whose figures have no image yet: their figures are headings with ids starting with "fig"
NO_IMAGES_YET = {"results/cells.html"}
# the pages saved as full-page screenshots when NTK_RNN_SCREENSHOTS is set
SCREENSHOTS = {"index.html", "guide/models.html", API_PAGE, "results/training.html"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built strictly into a fresh folder (one per xdist worker: tmp_path_factory keeps them apart)."""
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"  # the venv's, next to this Python (not resolved: a symlink)
    cmd = [str(mkdocs), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300
    )
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{proc.stdout}", pytrace=False)
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # no line per request on stderr
        pass


@pytest.fixture(scope="module")
def base_url(site):
    """The site served over HTTP on 127.0.0.1, on a port the OS picks (free, and distinct for each xdist worker)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="docs-site", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _new_context(browser, base_url):
    """A fresh browser context whose requests go to the local server only: anything else is aborted at once."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base_url) else route.abort())
    return context


@pytest.fixture
def page(browser, base_url):
    context = _new_context(browser, base_url)
    yield context.new_page()
    context.close()


def _open(page, path: str):
    response = page.goto(path, wait_until="load")
    assert response is not None, f"{path}: no response"
    assert response.status == 200, f"{path}: HTTP {response.status}"
    return response


def _screenshot(page, path: str) -> None:
    folder = os.environ.get("NTK_RNN_SCREENSHOTS")
    if folder and path in SCREENSHOTS:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(Path(folder) / (path.removesuffix(".html").replace("/", "-") + ".png")), full_page=True
        )


@pytest.mark.parametrize("path", GUIDE_PAGES)
def test_guide_page_renders(page, path):
    _open(page, path)
    _screenshot(page, path)
    h1 = page.locator(".md-content h1").first
    assert h1.count() == 1, f"{path}: no <h1> in the page's content"
    assert h1.is_visible(), f"{path}: its <h1> is not visible"
    blocks = page.locator(".md-content pre > code").count()
    assert blocks > 0, f"{path}: no code blocks (<pre><code>) in the page's content"


# For one documented name: the elements that name it (an id ending in it, as mkdocstrings' "module.name", or a
# heading that reads it), each with whether it is shown and whether a signature `name(` follows it (in the heading
# itself, or in what comes after it up to the next heading: mkdocstrings' separate .doc-signature block).
_FIND_DOCUMENTED = r"""
(name) => {
    const isHeading = (el) => /^H[1-6]$/.test(el.tagName);
    const sig = new RegExp("(^|\\W)" + name + "\\s*\\(");
    const text = (el) => (el.textContent || "").replace(/\u00b6/g, "").trim();
    const found = [];
    for (const el of document.querySelectorAll(".md-content [id], .md-content h1, .md-content h2, .md-content h3, "
                                               + ".md-content h4, .md-content h5, .md-content h6")) {
        const byId = el.id === name || el.id.endsWith("." + name);
        const byHeading = isHeading(el) && new RegExp("^([\\w.]+\\.)?" + name + "(\\s*\\(|$)").test(text(el));
        if (!byId && !byHeading) continue;
        let signature = sig.test(text(el));
        for (let next = el.nextElementSibling; !signature && next && !isHeading(next); next = next.nextElementSibling) {
            signature = sig.test(text(next));
        }
        found.push({id: el.id, tag: el.tagName, visible: el.getClientRects().length > 0, signature});
    }
    return found;
}
"""


@pytest.fixture(scope="module")
def api_page(browser, base_url):
    """api/kernels.html, opened once for the names checked on it."""
    context = _new_context(browser, base_url)
    page = context.new_page()
    _open(page, API_PAGE)
    _screenshot(page, API_PAGE)
    yield page
    context.close()


@pytest.mark.parametrize("name", API_NAMES)
def test_api_reference_documents(api_page, name):
    found = api_page.evaluate(_FIND_DOCUMENTED, name)
    assert found, f"{API_PAGE}: no element whose id or heading names {name}"
    shown = [f for f in found if f["visible"]]
    assert shown, f"{API_PAGE}: {name} is named only by hidden elements: {found}"
    assert any(f["signature"] for f in shown), f"{API_PAGE}: no signature `{name}(...)` with its heading: {found}"


# every <img> loaded eagerly (a lazy one below the fold would otherwise never load), then its natural size
_IMAGES = """
async () => {
    const images = Array.from(document.images);
    for (const img of images) if (img.loading === "lazy") img.loading = "eager";
    await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
        img.addEventListener("load", done, {once: true});
        img.addEventListener("error", done, {once: true});
        setTimeout(done, 5000);
    })));
    return images.map((img) => ({src: img.getAttribute("src"), width: img.naturalWidth}));
}
"""


@pytest.mark.parametrize("path", RESULTS_PAGES)
def test_results_page_shows_figures(page, path):
    _open(page, path)
    images = page.evaluate(_IMAGES)
    _screenshot(page, path)
    broken = [img["src"] for img in images if img["width"] == 0]
    assert not broken, f"{path}: images that did not load: {broken}"
    if path in NO_IMAGES_YET:
        figures = page.locator(".md-content :is(h1, h2, h3, h4, h5, h6)[id^='fig']").count()
        assert figures > 0, f"{path}: no figure headings (ids starting with 'fig')"
    else:
        assert images, f"{path}: no figures (<img>) on the page"


def test_home_navigation_resolves(page, base_url):
    _open(page, "index.html")
    hrefs = page.eval_on_selector_all("nav.md-nav--primary a[href]", "links => links.map((a) => a.href)")
    local = sorted({href.split("#")[0] for href in hrefs if href.startswith(base_url)})
    for section in ("guide/", "api/", "results/"):
        assert any(href.startswith(base_url + section) for href in local), (
            f"the home page's navigation has no link into {section}"
        )
    failed = {}
    for href in local:
        status = page.request.get(href).status
        if status != 200:
            failed[href.removeprefix(base_url)] = status
    assert not failed, f"navigation links from the home page that do not resolve: {failed}"
