"""No warnings a user did not cause (generate, loading in a notebook)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import tiny

import logitscope


def test_generate_is_silent(capfd):
    scope = logitscope.load("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        scope.logits("In the beginning", generate=3)
        scope.logits("In the beginning", generate=3)
    err = capfd.readouterr().err
    assert "deprecated" not in err and "past_key_values" not in err, err


def test_seq2seq_generate_is_silent(capfd):
    from logitscope.scope import Scope

    scope = Scope(tiny.build("t5"), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = scope.logits([5, 6, 7], generate=3)
    assert 1 <= len(res.generated_ids) <= 3
    err = capfd.readouterr().err
    assert "deprecated" not in err and "past_key_values" not in err, err


NOTEBOOK = """
import sys, types
ipy = types.ModuleType("IPython")
ipy.get_ipython = lambda: type("ZMQInteractiveShell", (), {})()
sys.modules["IPython"] = ipy  # what tqdm sees inside a Jupyter kernel (without ipywidgets)
sys.modules["ipykernel"] = types.ModuleType("ipykernel")
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
import logitscope
logitscope.load("demo")
print("loaded")
"""


def test_load_in_a_notebook_without_ipywidgets_is_silent():
    out = subprocess.run([sys.executable, "-c", NOTEBOOK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "loaded" in out.stdout, out.stderr
    assert "Tqdm" not in out.stderr and "IProgress" not in out.stderr, out.stderr


def _help(*command) -> str:
    from typer.testing import CliRunner

    from logitscope.cli import app

    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.stdout


def test_help_texts():
    from logitscope.cli import COMMANDS

    for command in [[]] + [[c.replace("_", "-")] for c in COMMANDS]:
        assert "<bool>" not in _help(*command), command  # flags take no value
    assert "--target" not in _help("diff").split("--truncate", 1)[1].split("--", 1)[0]
    assert "--target" in _help("lens").split("--truncate", 1)[1].split("│ --", 1)[0]
    assert "OUT.ckpt.pt" in _help("train-lens") and "Checkpoint file ." not in _help("train-lens")
    assert "lens.pt.ckpt" in _help("fit-jlens") and "(default: the last)" in _help("fit-jlens")
    for command in [[c.replace("_", "-")] for c in COMMANDS]:  # "[default: x]" in a help is markup: swallowed
        assert not re.search(r"\w \.(\s|$)", _help(*command), re.M), command
