"""Sphinx extension of the web book (`make book`): notebooks read as saved, assets served locally.

* Notebooks are read as saved (the book never executes them). Cells tagged ``hide-input``
  (myst-nb's own tag) are collapsed, and so is the set-up cell every notebook starts with
  (found by its call of ``setup_notebook``, ``SETUP_MARKER``): it installs the package in Colab and
  means nothing on a web page.
* Each notebook's "Open in Colab" badge is drawn from the site's own copy
  (``book/_static/colab-badge.svg``) instead of colab.research.google.com: a page loads nothing
  from another host. The badge still links to Colab.
* MathJax 3 (the PyPI package ``django-static-mathjax``, which ships MathJax's files and depends
  on nothing) and the ipywidgets embedder (``@jupyter-widgets/html-manager`` from npm, unpacked
  by ``make book`` into ``kl_book_widgets_dist``) are copied into the site's ``_static/``.
  ``_config.yml`` points ``mathjax_path`` and ``nb_ipywidgets_js`` at those copies.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import nbformat
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

SETUP_MARKER = "RUNTIME = setup_notebook("
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "/book/_static/colab-badge.svg"  # "/" = relative to the source folder (repo root)

# MathJax's es5 folder less what this site never loads: the other combined bundles (the site
# uses tex-mml-chtml.js) and the SVG output. Its input/, output/chtml, ui/, a11y/ and sre/ stay:
# MathJax loads TeX extensions, fonts, the menu and the accessibility tools from them on demand.
MATHJAX_KEEP_TOP = {"tex-mml-chtml.js"}
MATHJAX_SKIP = {"output/svg", "output/svg.js"}
WIDGET_SUFFIXES = {".js", ".txt", ".woff", ".woff2", ".ttf", ".eot", ".svg"}


def read_notebook(text: str) -> nbformat.NotebookNode:
    """myst-nb's reader for .ipynb (``nb_custom_formats``), plus the collapsed set-up cell."""
    notebook = nbformat.reads(text, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and SETUP_MARKER in cell.source:
            tags = cell.metadata.setdefault("tags", [])
            if "hide-input" not in tags:
                tags.append("hide-input")
    return notebook


def local_colab_badge(app: Sphinx, doctree: nodes.document) -> None:
    """Serve the Colab badge image from the site (runs before Sphinx collects the images)."""
    for image in doctree.findall(nodes.image):
        if image.get("uri") == COLAB_BADGE:
            image["uri"] = LOCAL_BADGE


def mathjax_dir() -> Path:
    root = Path(str(files("mathjax"))) / "static" / "mathjax"
    if not (root / "es5" / "tex-mml-chtml.js").is_file():
        raise ExtensionError(f"MathJax 3 not found under {root}: pip install -e '.[book]'")
    return root


def widgets_dir(app: Sphinx) -> Path:
    dist = Path(app.srcdir) / app.config.kl_book_widgets_dist
    if not (dist / "embed.js").is_file():
        raise ExtensionError(
            f"the ipywidgets embedder is missing ({dist}/embed.js): `make book` unpacks "
            "@jupyter-widgets/html-manager there with npm"
        )
    return dist


def check_assets(app: Sphinx) -> None:
    """Fail before reading 11 notebooks if an asset the pages need is missing."""
    if app.builder.format == "html":
        mathjax_dir()
        widgets_dir(app)


def _copy_mathjax(destination: Path) -> None:
    root = mathjax_dir()
    es5 = root / "es5"
    for source in es5.rglob("*"):
        relative = source.relative_to(es5).as_posix()
        if source.is_dir():
            continue
        if "/" not in relative and relative not in MATHJAX_KEEP_TOP:
            continue
        if any(relative == skip or relative.startswith(skip + "/") for skip in MATHJAX_SKIP):
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    shutil.copy2(root / "LICENSE", destination / "LICENSE")


def _copy_widgets(app: Sphinx, destination: Path) -> None:
    dist = widgets_dir(app)
    destination.mkdir(parents=True, exist_ok=True)
    for source in dist.iterdir():
        if source.is_file() and source.suffix in WIDGET_SUFFIXES and "amd" not in source.name:
            shutil.copy2(source, destination / source.name)
    licence = dist.parent / "LICENSE"
    if licence.is_file():
        shutil.copy2(licence, destination / "LICENSE")


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    _copy_mathjax(static / "mathjax")
    _copy_widgets(app, static / "widgets")


def setup(app: Sphinx) -> dict:
    app.add_config_value(
        "kl_book_widgets_dist", "build/book-assets/html-manager/package/dist", "html", str
    )
    app.connect("builder-inited", check_assets)
    app.connect("doctree-read", local_colab_badge, priority=100)
    app.connect("build-finished", copy_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
