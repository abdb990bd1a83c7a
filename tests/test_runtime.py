"""Device choice, seeding and thread settings."""

import pytest
import torch

from kl_helpers.notebook.setup import setup_notebook
from kl_helpers.runtime import pick_device, progress_bar, seed_everything, set_cpu_threads


def test_env_var_forces_device(monkeypatch):
    monkeypatch.setenv("KL_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    assert pick_device("meta") == torch.device("meta")


def test_auto_device_prefers_cuda(monkeypatch):
    monkeypatch.delenv("KL_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_seed_everything_repeats():
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("KL_THREADS", "1")
        assert setup_notebook(seed=1).threads == 1
        with pytest.raises(ValueError, match="threads"):
            set_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_progress_bar_is_off_when_asked_and_tqdms_text_bar_outside_a_notebook(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("KL_NO_PROGRESS", raising=False)
    off = progress_bar(range(3), desc="runs", progress=False)
    assert off.disable and list(off) == [0, 1, 2]
    on = progress_bar(total=4, desc="pool", progress=True)
    assert not on.disable and "notebook" not in type(on).__module__
    on.update(4)
    on.close()
    assert on.n == 4


def test_a_saved_notebook_shows_the_bar_finished():
    """Executed as `make run` executes a notebook: the bar's saved plain text reads 3/3, not 0/3."""
    import nbclient
    import nbformat

    code = "from kl_helpers import runtime\nfor _ in runtime.progress_bar(range(3), desc='a'): pass"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    env_cell = "import os; os.environ.pop('CI', None); os.environ.pop('KL_NO_PROGRESS', None)"
    nb.cells.insert(0, nbformat.v4.new_code_cell(env_cell))
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    texts = [o["data"]["text/plain"] for o in nb.cells[1].outputs if "data" in o]
    assert len(texts) == 1 and "a: 100%" in texts[0] and "3/3" in texts[0], texts
