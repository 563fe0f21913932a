"""Nothing is ever half-written: every output is all or nothing (interrupts included), and options
and destinations are checked before any work; unwritable or full destinations are one error line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from errors_common import DOCS, cli, leftovers
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.errors import OutputError


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


def test_interrupted_eval_save_leaves_nothing(demo, tmp_path, monkeypatch):
    res = demo.evaluate(DOCS, seq_len=8, n_boot=10)
    monkeypatch.setattr(type(res), "plot_html", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        res.save(tmp_path / "runs" / "r")
    assert not (tmp_path / "runs").exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    from logitscope.evaluate.result import run_files

    paths = run_files(res.save(tmp_path / "runs" / "r"))
    assert sorted(p.name for p in (tmp_path / "runs" / "r").iterdir()) == sorted(p.name for p in paths.values())
    assert json.loads(paths["metrics"].read_text())["n_windows"] == res.n_windows


def test_lens_outputs_are_all_or_nothing(tiny_lm_dir, tmp_path, monkeypatch):
    from logitscope.render import trajectory

    def broken(result, position, path, **kw):
        Path(path).write_bytes(b"half")  # a writer that dies half-way
        raise KeyboardInterrupt

    monkeypatch.setattr(trajectory, "trajectory", broken)
    out, plot, traj = tmp_path / "o.csv", tmp_path / "h.png", tmp_path / "t.png"
    result = CliRunner().invoke(
        app, ["lens", str(tiny_lm_dir), "The fox", "--track", " the", "-o", str(out), "--plot", str(plot),
              "--trajectory", str(traj)]
    )  # fmt: skip
    assert result.exit_code != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no o.csv, no h.png, no temporaries


def test_demo_out_is_all_or_nothing(tmp_path, monkeypatch):
    from logitscope.lens.result import LensResult

    monkeypatch.setattr(LensResult, "save", lambda self, path, format=None: (_ for _ in ()).throw(KeyboardInterrupt()))
    result = CliRunner().invoke(app, ["demo", "--prompt", "And God said", "--out", str(tmp_path / "d")])
    assert result.exit_code != 0 and not (tmp_path / "d").exists() and leftovers(tmp_path) == []


def test_atomic_file_permissions_and_special_files(tmp_path):
    from logitscope.io.atomic import atomic_file

    with atomic_file(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0o600
    with atomic_file(os.devnull) as tmp:  # written in place, never replaced by a regular file
        assert str(tmp) == os.devnull
    assert not Path(os.devnull).is_file()


def test_options_and_destinations_checked_before_loading(tmp_path):
    missing_model = tmp_path / "no-model"  # the check must fire before the model is looked up
    args = ("lens", missing_model, "The fox")
    err = cli(*args, "--trajectory", tmp_path / "t.png", "--plot", tmp_path / "h.png", "-o", tmp_path / "o.csv")
    assert "--track" in err.stderr
    err = cli(*args, "--plot", tmp_path / "nodir" / "x.png", "-f", "csv")
    assert err.stdout == "" and "does not exist" in err.stderr
    cli(*args, "--plot", tmp_path, "-f", "json")  # a directory where a file is wanted
    cli(*args, "-f", "table", "-o", tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_destinations_that_cannot_be_written(tmp_path):
    existing = tmp_path / "existing_file"
    existing.write_text("keep")
    for cmd in (["eval", tmp_path / "no-model", "--data", existing], ["demo"]):
        assert "is not a directory" in cli(*cmd, "--out", existing).stderr
    assert existing.read_text() == "keep"
    with pytest.raises(OutputError, match="not a directory"):
        logitscope.load("demo").evaluate(DOCS, seq_len=8, n_boot=10).save(existing)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_an_error_line(tiny_lm_dir):
    assert (
        "No space left on device: /dev/full"
        in cli("lens", tiny_lm_dir, "The fox", "-f", "json", "-o", "/dev/full").stderr
    )
