"""pytest configuration shared by unit tests and nbval."""

# Widget views carry a random model id on every run; their text/plain fallback is still compared.
_NBVAL_SKIP = (
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)


def pytest_collectstart(collector):
    """Ignore output types that change on every run when nbval compares notebooks."""
    if getattr(collector, "fspath", None) and collector.fspath.ext == ".ipynb":
        collector.skip_compare += _NBVAL_SKIP
