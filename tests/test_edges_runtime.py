"""kl_helpers.runtime at its edges (issue 30): pick_device with prefer as a name, a
torch.device, "" and None, $KL_DEVICE set or empty, CUDA/MPS present or absent; seed_everything
at seeds 0, 1 and 2**32 - 1 against fresh random.Random, numpy RandomState and torch Generator
draws, and seeds -1, 2**32 and 0.5 refused before anything is seeded; set_cpu_threads with 1, 2,
$KL_THREADS " 2 ", "0", "two" and no setting; quiet_libraries keeping a caller's environment;
in_colab with and without google.colab; quick_mode and show_progress for every true, false,
padded, capitalised, empty and unknown value; progress_bar off, on, over an iterable or a total;
RuntimeInfo.summary's line."""

from __future__ import annotations

import os
import random
import sys
import types

import numpy as np
import pytest
import torch

from kl_helpers import runtime
from kl_helpers.runtime import (
    RuntimeInfo,
    in_colab,
    pick_device,
    progress_bar,
    quick_mode,
    quiet_libraries,
    seed_everything,
    set_cpu_threads,
    show_progress,
)


@pytest.mark.parametrize("prefer", ["cpu", "cpu:0", "meta", torch.device("cpu")])
def test_pick_device_takes_what_it_is_given(monkeypatch, prefer):
    monkeypatch.setenv("KL_DEVICE", "meta")
    assert pick_device(prefer) == torch.device(prefer)


@pytest.mark.parametrize(
    ("env", "cuda", "mps", "expected"),
    [
        ("", False, None, "cpu"),
        ("", True, None, "cuda"),
        ("", False, True, "mps"),
        ("", False, False, "cpu"),
        ("", True, True, "cuda"),
        ("meta", True, True, "meta"),
    ],
)
def test_pick_device_order(monkeypatch, env, cuda, mps, expected):
    monkeypatch.setenv("KL_DEVICE", env)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    backend = None if mps is None else types.SimpleNamespace(is_available=lambda: mps)
    monkeypatch.setattr(torch.backends, "mps", backend, raising=False)
    for prefer in (None, ""):
        assert pick_device(prefer) == torch.device(expected)


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1])
def test_seed_everything_against_fresh_generators(seed):
    seed_everything(seed)
    drawn = random.random(), np.random.rand(3), torch.rand(3)
    assert drawn[0] == random.Random(seed).random()
    assert np.array_equal(drawn[1], np.random.RandomState(seed).rand(3))
    assert torch.equal(drawn[2], torch.rand(3, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("seed", [-1, 2**32, 0.5])
def test_seed_everything_refuses_seeds_numpy_cannot_take(seed):
    # failed before the fix: Python's generator was reseeded, then NumPy raised its own
    # ValueError (-1, 2**32) or a TypeError (0.5)
    random.seed(7)
    expected = random.Random(7).random()
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        seed_everything(seed)
    assert random.random() == expected  # nothing was seeded


@pytest.fixture()
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("count", [1, 2])
def test_set_cpu_threads_sets_torch(monkeypatch, threads, count):
    monkeypatch.setenv("KL_THREADS", "5")
    assert set_cpu_threads(count) == count == torch.get_num_threads()


def test_set_cpu_threads_from_the_environment(monkeypatch, threads):
    monkeypatch.setenv("KL_THREADS", " 2 ")
    assert set_cpu_threads() == 2 == torch.get_num_threads()
    monkeypatch.delenv("KL_THREADS")
    expected = min(os.cpu_count() or 1, 8)
    assert set_cpu_threads() == expected == torch.get_num_threads()
    for bad in ("0", "-3", "two", ""):
        monkeypatch.setenv("KL_THREADS", bad)
        with pytest.raises(ValueError):
            set_cpu_threads()
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        set_cpu_threads(0)
    assert torch.get_num_threads() == expected


def test_quiet_libraries_keeps_the_callers_settings(monkeypatch):
    import transformers

    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    before = transformers.logging.get_verbosity()
    try:
        quiet_libraries()
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert transformers.logging.get_verbosity() == transformers.logging.ERROR
    finally:
        transformers.logging.set_verbosity(before)


def test_in_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import raises ImportError
    assert in_colab() is False
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    assert in_colab() is True


@pytest.mark.parametrize(
    ("quick", "ci", "expected"),
    [
        (None, None, False),
        ("1", None, True),
        (" TRUE ", None, True),
        ("Yes", "false", True),
        ("on", None, True),
        ("0", "true", False),
        ("No", "1", False),
        ("off", "yes", False),
        ("maybe", "true", True),
        ("maybe", "nope", False),
        ("", " On ", True),
        (None, "", False),
    ],
)
def test_quick_mode(monkeypatch, quick, ci, expected):
    env = {k: v for k, v in (("KL_QUICK", quick), ("CI", ci)) if v is not None}
    assert quick_mode(env) is expected
    for name in ("KL_QUICK", "CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert quick_mode() is expected


@pytest.mark.parametrize(
    ("ci", "off", "expected"),
    [
        (None, None, True),
        ("", "", True),
        ("true", None, False),
        (None, "1", False),
        ("0", None, False),
    ],
)
def test_show_progress(monkeypatch, ci, off, expected):
    for name, value in (("CI", ci), ("KL_NO_PROGRESS", off)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert show_progress(None) is expected
    assert show_progress(True) is True and show_progress(False) is False


def test_progress_bar_off_and_on(monkeypatch, capsys):
    items = [3, 1, 2]
    off = progress_bar(items, desc="off", progress=False)
    assert off.disable and list(off) == items
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("KL_NO_PROGRESS", raising=False)
    on = progress_bar(iter(items), desc="on", total=3)
    assert not on.disable and list(on) == items and on.n == 3
    manual = progress_bar(desc="manual", total=5, progress=True)
    manual.update(2)
    manual.close()
    assert manual.n == 2 and manual.total == 5
    assert "on: 100%" in capsys.readouterr().err


def test_runtime_info_summary():
    info = RuntimeInfo(torch.device("cuda", 1), 2**32 - 1, 3, "3.11.7", "2.5.0")
    assert info.summary() == (
        "device=cuda:1 | seed=4294967295 | cpu threads=3 | python 3.11.7 | torch 2.5.0"
    )
    assert runtime.DEVICE_ENV == "KL_DEVICE" and runtime.THREADS_ENV == "KL_THREADS"
