"""Where the built web book is and which Chromium drives it (shared by conftest and tests)."""

import importlib.util
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOOK_HTML = Path(os.environ.get("KL_BOOK_HTML", REPO / "build" / "book" / "html"))
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def chromium_path():
    """Debian's chromium ($KL_CHROMIUM first); None where there is none."""
    for candidate in (os.environ.get("KL_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def why_skip():
    if not (BOOK_HTML / "index.html").is_file():
        return f"the web book is not built ({BOOK_HTML}): run `make book`"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: `make book-check` installs it (the `book` extra)"
    if chromium_path() is None:
        return "no chromium binary: `make book-check` installs Debian's chromium"
    return None
