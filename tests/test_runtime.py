"""Device choice, seeding and thread settings."""

import pytest
import torch

from kl_helpers.notebook.setup import setup_notebook
from kl_helpers.runtime import pick_device, seed_everything, set_cpu_threads


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
