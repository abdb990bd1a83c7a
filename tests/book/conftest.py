"""The web book's browser tests (`make book-check`): skipped unless the site has been built.

`make book` builds the site into build/book/html (or $KL_BOOK_HTML). Without it, without the
`playwright` package (the `book` extra) or without a Chromium binary, every test here is skipped
with the reason, so the normal `pytest tests` run is unaffected.
"""

from pathlib import Path

import pytest

from .book_paths import why_skip


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "book: the built web book in headless Chromium (make book-check)"
    )


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    reason = why_skip()
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.book)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
