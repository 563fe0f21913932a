"""Every output method and command names the user's path in one ``OutputError``
(never a temporary), and checks the destination before doing any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.errors import OutputError

# /proc accepts no new files, yet os.access() says it is writable to root: only trying tells.
UNWRITABLE = ["/nonexistent/x", "/proc/x"]


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


@pytest.fixture(scope="module")
def results(demo):
    return {
        "lens": demo.lens("In the beginning God", track=[" the"]),
        "logits": demo.logits("In the beginning"),
        "attribution": demo.attribute("In the beginning God", target=" created"),
    }


def writers(results):
    lens, logits, attr = results["lens"], results["logits"], results["attribution"]
    return {
        "LensResult.save": (lambda p: lens.save(p), ".json"),
        "LensResult.save csv": (lambda p: lens.save(p), ".csv"),
        "LensResult.plot png": (lambda p: lens.plot(p), ".png"),
        "LensResult.plot html": (lambda p: lens.plot(p), ".html"),
        "LensResult.plot_trajectory": (lambda p: lens.plot_trajectory(-1, p), ".png"),
        "LogitsResult.save npy": (lambda p: logits.save(p), ".npy"),
        "LogitsResult.save safetensors": (lambda p: logits.save(p), ".safetensors"),
        "AttributionResult.plot": (lambda p: attr.plot(p), ".png"),
        "AttributionResult.plot bars": (lambda p: attr.plot(p, position=-1), ".png"),
        "AttributionResult.plot html": (lambda p: attr.plot(p), ".html"),
    }


@pytest.mark.parametrize("base", UNWRITABLE)
def test_every_writer_names_the_users_path(results, base):
    for name, (write, suffix) in writers(results).items():
        path = base + suffix
        with pytest.raises(OutputError) as info:
            write(path)
        msg = str(info.value)
        assert repr(path) in msg, (name, msg)
        assert ".tmp" not in msg, (name, msg)


def test_read_only_target_is_refused_and_kept(results, tmp_path):
    for name, (write, suffix) in writers(results).items():
        path = tmp_path / f"ro{suffix}"
        path.write_bytes(b"keep me")
        path.chmod(0o444)
        with pytest.raises(OutputError, match="read-only") as info:
            write(path)
        assert repr(str(path)) in str(info.value), name
        assert path.read_bytes() == b"keep me"
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_checked_before_any_work(results, monkeypatch):
    """The destination is refused before a figure is drawn or a table is built."""
    import matplotlib.figure

    def boom(*a, **k):
        raise AssertionError("work done before the destination was checked")

    monkeypatch.setattr(matplotlib.figure.Figure, "__init__", boom)
    monkeypatch.setattr(type(results["lens"]), "to_dict", boom)
    for name, (write, suffix) in writers(results).items():
        if "html" in name or "Logits" in name:
            continue
        with pytest.raises(OutputError):
            write("/proc/x" + suffix)


def test_a_write_that_fails_midway_names_the_users_path(results, tmp_path, monkeypatch):
    """A full disk while writing the temporary: the message names the user's file, and nothing is left."""
    real = Path.write_text

    def full(self, *a, **k):
        real(self, "partial")
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    dest = tmp_path / "r.json"
    with pytest.raises(OutputError, match=r"No space left on device") as info:
        results["lens"].save(dest)
    assert repr(str(dest)) in str(info.value) and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []


def cli_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_cli_fails_before_the_model_loads(monkeypatch, tmp_path):
    import logitscope.cli.common as common

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(common, "load_scope", no_load)
    monkeypatch.setattr("logitscope.cli.lens.load_scope", no_load)
    monkeypatch.setattr("logitscope.cli.demo.load_scope", no_load)
    err = cli_error("lens", "demo", "x", "-o", "/proc/x.json")
    assert "'/proc/x.json'" in err and ".tmp" not in err
    err = cli_error("lens", "demo", "x", "--plot", "/proc/x.png")
    assert "'/proc/x.png'" in err
    err = cli_error("demo", "--out", "/proc/nope")
    assert "'/proc/nope'" in err and ".tmp" not in err
    err = cli_error("demo", "--out", "/proc/nope/deeper")
    assert "'/proc/nope/deeper'" in err
    ro = tmp_path / "ro.json"
    ro.write_text("{}")
    ro.chmod(0o444)
    assert "read-only" in cli_error("lens", "demo", "x", "-o", ro)


@pytest.mark.parametrize("name", ["x", "x.xyz", "x.tmp"])
def test_plots_refuse_a_path_without_an_image_suffix_before_drawing(results, demo, tmp_path, name):
    """No suffix used to reach matplotlib as the atomic temporary's ('Format 'tmp' is not supported'),
    an unknown one as a raw ValueError; now one InputError naming the path, and no file is left."""
    from logitscope.errors import InputError

    diff = demo.compare(inputs="In the beginning", against="In the end")
    plots = [p for n, (p, _) in writers(results).items() if ".plot" in n] + [lambda p: diff.plot(p)]
    for plot in plots:
        path = tmp_path / name
        with pytest.raises(InputError, match="plot format") as info:
            plot(path)
        assert repr(str(path)) in str(info.value)
        assert list(tmp_path.iterdir()) == []


def test_every_image_suffix_the_check_accepts_is_written(results, tmp_path):
    from logitscope.io.formats import IMAGE_SUFFIXES

    for suffix in IMAGE_SUFFIXES:
        out = tmp_path / f"heat{suffix}"
        results["lens"].plot(out)
        assert out.stat().st_size > 100, suffix
