"""The web book (`make book`) in a real browser, page by page, as a reader at a laptop sees it.

Serves build/book/html on 127.0.0.1 and drives headless Chromium (Debian's, through Playwright)
at 1280x800. On every page: no console error, no failed request and no request to another host
(requests off 127.0.0.1 are blocked and reported, never sent); every <img> decoded; maths typeset
by the site's own MathJax, with no raw TeX left in the visible text; on notebook pages the Colab
button and the download link name that page's notebook, the set-up and check cells are collapsed
and the check cell shows its table; saved widgets rendered; every link into the site resolves
(HTTP 200, anchor present). A full-page screenshot of each page goes to build/book-screens/.

Every check is a function that returns a list of problems. The tests at the end run the same
functions on deliberately broken copies of a built page, so each check is shown to fail.
"""

from __future__ import annotations

import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

from .book_paths import BOOK_HTML, REPO, chromium_path

pytestmark = pytest.mark.book

SCREENS = REPO / "build" / "book-screens"
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
COLAB = "https://colab.research.google.com/github/kl-regularization/kl-regularization/blob/main/"
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
# The reference pages in book/_toc.yml's order, after the notebooks (its "Reference" part).
REFERENCE = re.findall(
    r"^\s*- file: (docs/\w+)\s*$", (REPO / "book" / "_toc.yml").read_text(), re.M
)
PAGES = ["README", *(f"notebooks/{name}" for name in NOTEBOOKS), *REFERENCE]
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\s][^$\n]*\\[A-Za-z]+[^$\n]*\$")


# --- serving and loading -------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port) from a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname in LOCAL_HOSTS


@dataclass
class PageLoad:
    """A loaded page and what the browser reported while loading it."""

    page: object
    url: str
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    off_host: list[str] = field(default_factory=list)


def _block_off_host(route):
    if is_local(route.request.url):
        route.continue_()
    else:
        route.abort("blockedbyclient")


def open_page(context, url: str) -> PageLoad:
    """Load ``url`` in a new tab and wait for MathJax, the widgets and the network to settle."""
    page = context.new_page()
    load = PageLoad(page=page, url=url)

    def on_console(message):
        if message.type == "error":
            load.console.append(f"console.error: {message.text}")

    def on_request(request):
        if not is_local(request.url):
            load.off_host.append(request.url)

    def on_failed(request):
        if is_local(request.url):
            load.failed.append(f"{request.url} ({request.failure})")

    def on_response(response):
        if response.status >= 400:
            load.failed.append(f"{response.url} (HTTP {response.status})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: load.console.append(f"uncaught: {error}"))
    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.goto(url, wait_until="load")
    page.evaluate(
        """async () => {
            if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                await MathJax.startup.promise;
            }
            if (document.fonts) { await document.fonts.ready; }
        }"""
    )
    try:  # widgets render after the load event; a page whose widgets fail is reported below
        page.wait_for_function(WIDGETS_SETTLED, timeout=15_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError; check_widgets says what is wrong
        pass
    page.wait_for_load_state("networkidle")
    return load


WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'
WIDGETS_SETTLED = f"""() => {{
    const views = document.querySelectorAll('{WIDGET_VIEW}');
    return document.querySelectorAll('.widget-subarea').length >= views.length;
}}"""


# --- the checks: each returns a list of problems ---------------------------------------------


def check_console(load: PageLoad) -> list[str]:
    """Console errors and uncaught exceptions."""
    return list(load.console)


def check_requests(load: PageLoad) -> list[str]:
    """Requests that failed (or answered 4xx/5xx), and any request to a host other than this one."""
    return [f"failed request: {f}" for f in load.failed] + [
        f"request to another host: {u}" for u in load.off_host
    ]


def check_images(page) -> list[str]:
    """Every <img> decoded (naturalWidth > 0), lazy ones included."""
    broken = page.evaluate(
        """async () => {
            const images = Array.from(document.images);
            images.forEach(img => { img.loading = 'eager'; });
            await Promise.all(images.map(img => img.decode().catch(() => null)));
            return images.filter(img => !(img.complete && img.naturalWidth > 0))
                         .map(img => img.getAttribute('src'));
        }"""
    )
    return [f"image not decoded: {src}" for src in broken]


def check_maths(page) -> list[str]:
    """Maths typeset by MathJax (every .math element holds its output, no TeX error) and no raw
    TeX delimiters in the visible text outside code."""
    found = page.evaluate(
        """() => {
            const maths = Array.from(document.querySelectorAll('.math'));
            const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                                   .map(m => m.textContent.trim().slice(0, 60));
            const errors = Array.from(document.querySelectorAll('mjx-merror'))
                                .map(e => e.getAttribute('data-mjx-error') || e.textContent);
            const main = document.querySelector('main') || document.body;
            const copy = main.cloneNode(true);
            copy.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight')
                .forEach(e => e.remove());
            return {count: maths.length, untypeset, errors,
                    mathjax: !!(window.MathJax && MathJax.version), text: copy.textContent};
        }"""
    )
    problems = [f"maths not typeset: {t!r}" for t in found["untypeset"]]
    problems += [f"MathJax error: {e}" for e in found["errors"]]
    if found["count"] and not found["mathjax"]:
        problems.append(f"{found['count']} maths elements but MathJax did not load")
    for match in RAW_TEX.finditer(found["text"]):
        start = max(0, match.start() - 30)
        problems.append(f"raw TeX in the text: {found['text'][start : match.end() + 30]!r}")
    return problems


def check_colab(page, notebook: str | None) -> list[str]:
    """A notebook page has a Colab launch button whose link names its notebook, and every Colab
    link on it (the badge too) names that notebook; other pages have no Colab button."""
    links = page.evaluate(
        """() => ({
            button: Array.from(document.querySelectorAll('.dropdown-launch-buttons a'))
                         .map(a => a.href).filter(h => h.includes('colab.research.google.com')),
            all: Array.from(document.querySelectorAll('a'))
                      .map(a => a.href).filter(h => h.includes('colab.research.google.com')),
        })"""
    )
    if notebook is None:
        return [f"Colab button on a page that is no notebook: {h}" for h in links["button"]]
    want = f"{COLAB}notebooks/{notebook}.ipynb"
    problems = [] if links["button"] else ["no Colab launch button"]
    problems += [f"Colab link {h} is not {want}" for h in links["all"] if h != want]
    return problems


def check_notebook_page(page, notebook: str) -> list[str]:
    """The download menu offers this notebook's .ipynb; the code of the set-up cell and of the
    check cell (the first and the last code cell) is collapsed, and the check cell shows its table
    of claims."""
    found = page.evaluate(
        """() => {
            const state = cell => cell ? {classes: cell.className,
                                          open: !!cell.querySelector('details.hide[open]'),
                                          hidden: !!cell.querySelector('details.hide'),
                                          table: !!cell.querySelector('.cell_output table')} : null;
            const cells = Array.from(document.querySelectorAll('.cell'));
            return {
                downloads: Array.from(document.querySelectorAll('.dropdown-download-buttons a'))
                                .map(a => a.getAttribute('href')),
                firstCell: state(cells[0]),
                lastCell: state(cells[cells.length - 1]),
            };
        }"""
    )
    problems = []
    ipynb = f"_sources/notebooks/{notebook}.ipynb"
    if not any(h and h.endswith(ipynb) for h in found["downloads"]):
        problems.append(f"no download link to {notebook}.ipynb: {found['downloads']}")
    for name, cell in (("set-up", found["firstCell"]), ("check", found["lastCell"])):
        if cell is None or "tag_hide-input" not in cell["classes"] or not cell["hidden"]:
            problems.append(f"the {name} cell is not collapsed: {cell}")
        elif cell["open"]:
            problems.append(f"the {name} cell is collapsible but open")
    if found["lastCell"] and not found["lastCell"]["table"]:
        problems.append("the check cell shows no table of claims")
    return problems


def check_widgets(page) -> list[str]:
    """Every saved widget view is rendered from its saved state, none with an error."""
    found = page.evaluate(
        """() => ({
            views: document.querySelectorAll(
                'script[type="application/vnd.jupyter.widget-view+json"]').length,
            rendered: document.querySelectorAll('.widget-subarea').length,
            errors: Array.from(document.querySelectorAll('.widget-subarea'))
                         .filter(w => /Error displaying widget/.test(w.textContent)).length,
        })"""
    )
    problems = []
    if found["rendered"] < found["views"]:
        missing = found["views"] - found["rendered"]
        problems.append(f"{missing} of {found['views']} widgets not shown")
    if found["errors"]:
        problems.append(f"{found['errors']} widgets show an error")
    return problems


def check_layout(page) -> list[str]:
    """At the laptop viewport nothing pushes the page or a sidebar sideways (wide code and tables
    scroll inside their own box)."""
    found = page.evaluate(
        """() => {
            const wide = [];
            if (document.documentElement.scrollWidth > window.innerWidth) {
                wide.push(`page ${document.documentElement.scrollWidth}px`);
            }
            for (const s of ['.bd-sidebar-primary', '.bd-sidebar-secondary', '.bd-article']) {
                const e = document.querySelector(s);
                if (e && e.scrollWidth > e.clientWidth + 1) {
                    wide.push(`${s} ${e.scrollWidth}px in ${e.clientWidth}px`);
                }
            }
            return wide;
        }"""
    )
    return [f"wider than the viewport: {w}" for w in found]


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


_FETCHED: dict[str, tuple[int, set[str]]] = {}


def fetch(url: str) -> tuple[int, set[str]]:
    """(HTTP status, ids in the page) of a local URL; cached."""
    if url not in _FETCHED:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - 127.0.0.1
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, b""
        ids = _Ids()
        if url.endswith((".html", "/")):
            ids.feed(body.decode("utf-8", "replace"))
        _FETCHED[url] = (status, ids.ids)
    return _FETCHED[url]


def check_links(page) -> list[str]:
    """Every link to this host answers HTTP 200, and its #anchor exists in the target page."""
    here = urlsplit(page.url)
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    problems = []
    for href in sorted(set(hrefs)):
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https") or parts.netloc != here.netloc:
            continue
        target, anchor = urldefrag(href)
        status, ids = fetch(target)
        if status != 200:
            problems.append(f"link {href}: HTTP {status}")
        elif anchor and unquote(anchor) not in ids:
            problems.append(f"link {href}: no #{anchor} in {target}")
    return problems


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def context(tmp_path_factory):
    """One headless Chromium with a fresh profile; requests off this host are blocked."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser_context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            service_workers="block",
        )
        browser_context.route("**/*", _block_off_host)
        yield browser_context
        browser_context.close()


@pytest.fixture(scope="session")
def site():
    with serve(BOOK_HTML) as base:
        yield base


@pytest.fixture(scope="session")
def screens():
    shutil.rmtree(SCREENS, ignore_errors=True)
    SCREENS.mkdir(parents=True)
    return SCREENS


# --- the built site --------------------------------------------------------------------------


@pytest.mark.parametrize("docname", PAGES)
def test_page(context, site, screens, docname):
    load = open_page(context, f"{site}{docname}.html")
    page = load.page
    try:
        notebook = docname.split("/", 1)[1] if docname.startswith("notebooks/") else None
        problems = check_console(load) + check_requests(load)
        problems += check_images(page) + check_maths(page) + check_colab(page, notebook)
        problems += check_widgets(page) + check_layout(page) + check_links(page)
        if notebook:
            problems += check_notebook_page(page, notebook)
        page.screenshot(path=str(screens / f"{docname.replace('/', '__')}.png"), full_page=True)
    finally:
        page.close()
    assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


def test_every_notebook_has_a_page_in_order(context, site):
    """The sidebar lists the notebooks in numeric order, and "next" walks every page in order."""
    load = open_page(context, f"{site}README.html")
    page = load.page
    try:
        sidebar = page.evaluate(
            "() => Array.from(document.querySelectorAll('.bd-sidenav a'))"
            ".map(a => new URL(a.href).pathname)"
        )
        walked = ["README"]
        for _ in range(len(PAGES)):
            following = page.query_selector("a.right-next")
            if following is None:
                break
            page.goto(following.evaluate("a => a.href"), wait_until="domcontentloaded")
            walked.append(urlsplit(page.url).path.lstrip("/").removesuffix(".html"))
    finally:
        page.close()
    assert [p.lstrip("/").removesuffix(".html") for p in sidebar] == PAGES
    assert walked == PAGES


def test_search_finds_a_notebook(context, site):
    load = open_page(context, f"{site}search.html?q=Gaussian")
    page = load.page
    try:
        page.wait_for_selector("#search-results ul.search li", timeout=15_000)
        hits = page.evaluate(
            "() => Array.from(document.querySelectorAll('#search-results ul.search li a'))"
            ".map(a => new URL(a.href).pathname)"
        )
        problems = check_console(load) + check_requests(load)
    finally:
        page.close()
    assert not problems, problems
    assert "/notebooks/02_gaussian_examples.html" in hits, hits


# --- the checks fail when they should --------------------------------------------------------

BROKEN = {
    "broken_img": ('<img src="../_images/no-such-figure.png" alt="missing">', None),
    "raw_maths": ("<p>$$x$$ and \\(y\\)</p>", "drop-mathjax"),
    "console_error": ('<script>console.error("x")</script>', None),
    "off_host": ('<img src="https://example.invalid/figure.png" alt="remote">', None),
    "broken_links": (
        '<a href="no-such-page.html">a</a> <a href="notation.html#no-such-id">b</a>',
        None,
    ),
    "wrong_colab": (f'<a href="{COLAB}notebooks/99_other.ipynb">colab</a>', None),
    "too_wide": ('<div style="width: 3000px">a line wider than any laptop</div>', None),
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """The built site (linked, not copied) plus broken copies of docs/notation.html in docs/."""
    root = tmp_path_factory.mktemp("broken-book")
    for entry in BOOK_HTML.iterdir():
        if entry.name != "docs":
            (root / entry.name).symlink_to(entry.resolve())
    (root / "docs").mkdir()
    for entry in (BOOK_HTML / "docs").iterdir():
        (root / "docs" / entry.name).symlink_to(entry.resolve())
    original = (BOOK_HTML / "docs" / "notation.html").read_text(encoding="utf-8")
    assert "</article>" in original and "tex-mml-chtml.js" in original
    for name, (insert, change) in BROKEN.items():
        html = original.replace("</article>", insert + "</article>", 1)
        if change == "drop-mathjax":
            html = re.sub(r"<script[^>]*tex-mml-chtml\.js[^>]*></script>", "", html)
            assert "tex-mml-chtml.js" not in html
        (root / "docs" / f"{name}.html").write_text(html, encoding="utf-8")
    with serve(root) as base:
        yield base


@pytest.fixture()
def broken(context, broken_site):
    pages = []

    def load(name):
        loaded = open_page(context, f"{broken_site}docs/{name}.html")
        pages.append(loaded.page)
        return loaded

    yield load
    for page in pages:
        page.close()


def test_the_unbroken_copy_passes_every_check(context, broken_site, broken):
    load = broken("notation")
    page = load.page
    problems = check_console(load) + check_requests(load) + check_images(page)
    problems += check_maths(page) + check_colab(page, None) + check_layout(page)
    problems += check_links(page)
    assert not problems, problems


def test_check_images_reports_a_broken_image(broken):
    load = broken("broken_img")
    assert any("no-such-figure.png" in p for p in check_images(load.page))
    assert any("no-such-figure.png" in p and "404" in p for p in check_requests(load))


def test_check_maths_reports_raw_tex_without_mathjax(broken):
    problems = check_maths(broken("raw_maths").page)
    assert any("$$x$$" in p for p in problems), problems
    assert any("MathJax did not load" in p for p in problems), problems
    assert any("maths not typeset" in p for p in problems), problems


def test_check_console_reports_console_error(broken):
    assert check_console(broken("console_error")) == ["console.error: x"]


def test_check_requests_reports_a_request_to_another_host(broken):
    problems = check_requests(broken("off_host"))
    assert any("another host: https://example.invalid/figure.png" in p for p in problems)


def test_check_links_reports_missing_page_and_anchor(broken):
    problems = check_links(broken("broken_links").page)
    assert any("no-such-page.html: HTTP 404" in p for p in problems), problems
    assert any("no #no-such-id" in p for p in problems), problems


def test_check_colab_reports_a_link_to_another_notebook(broken):
    problems = check_colab(broken("wrong_colab").page, "01_kl_definitions")
    assert "no Colab launch button" in problems
    assert any("99_other.ipynb" in p for p in problems), problems


def test_check_layout_reports_a_page_wider_than_the_viewport(broken):
    problems = check_layout(broken("too_wide").page)
    assert any(".bd-article" in p for p in problems), problems
