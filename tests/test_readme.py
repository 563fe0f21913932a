"""The README's promises, run: every public name imports, and every Python and CLI call of the README
runs on the bundled demo model (hub model names become ``demo``; sizes shrink so it stays quick).

The calls are read from README.md itself (its ```python and ```bash blocks), so a README edit that
breaks a call breaks this test. Calls that need a network, a GPU cluster or a long-running server
(``torchrun``, ``logitscope serve``) are listed in :data:`SKIPPED` with the reason.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEMO_TEXT = ROOT / "src" / "logitscope" / "demo_model" / "heldout.txt"

PUBLIC = {
    "logitscope": None,  # its __all__
    "logitscope.errors": None,
    "logitscope.export": None,
    "logitscope.render": None,
    "logitscope.tuned": None,
    "logitscope.evaluate": None,
    "logitscope.serve": None,
}
# hub models the README names → the offline demo model; long runs → short ones
SUBSTITUTIONS = [
    (
        r"sentence-transformers/all-MiniLM-L6-v2|bert-base-uncased|distilgpt2|t5-small|gpt2|meta-llama/Llama-3\.1-8B",
        "demo",
    ),
    (r"\bMODEL\b", "demo"),
    (r"out/demo-psalms", "demo"),
    (r"--data DIR|--data corpus\.jsonl|--data corpus\.txt|--data corpus/|--data part\d\.jsonl", "--data corpus.txt"),
    (r"n_prompts=1000", "n_prompts=1, max_seq_len=24, skip_first=4"),
    (r"--prompts \d+", "--prompts 1 --max-seq-len 24 --skip-first 4"),
    (r"--out my-lens \[", "--out my-lens --force ["),  # the Python block above trained my-lens already
    (r"--max-tokens \d+", "--max-tokens 300"),
    (r"--seq-len \d+", "--seq-len 32"),
    (r"max_tokens=1_000_000", "max_tokens=300, seq_len=32"),
    (r"steps=250", "steps=2, tokens_per_step=128, seq_len=32"),
    (r"\[--steps --tokens-per-step --resume\]", "--steps 2 --tokens-per-step 128 --seq-len 32"),
    (r"--generate 10", "--generate 3"),
    (r'track=\[" dog", " cat"\]', 'track=[" God", " LORD"]'),  # single tokens of the demo vocabulary
    (r'nearest\("weekend"', 'nearest(" LORD"'),
]
SKIPPED = {
    "torchrun": "needs several processes (tests/data/test_distributed.py runs them)",
    "logitscope serve": "a long-running server (tests/serve/test_serve_api.py drives the app)",
    "bash scripts/dev.sh": "creates virtual environments",
    "logitscope eval meta-llama": "a hub model on a cluster",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _shrink(text: str) -> str:
    for pattern, repl in SUBSTITUTIONS:
        text = re.sub(pattern, repl, text)
    return text


def _cli_calls() -> list[str]:
    calls, pending = [], ""
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = pending + line.split("  #")[0].strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if not line.startswith("logitscope ") or any(line.startswith(skip) for skip in SKIPPED):
                continue  # comments, dev.sh, ruff/pytest/python lines, torchrun, serve
            calls.append(line)
    return calls


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with the corpus files the README names, made of the demo model's held-out text."""
    work = tmp_path_factory.mktemp("readme")
    text = DEMO_TEXT.read_text(encoding="utf-8")[:20_000]
    for name in ("corpus.txt", "heldout.txt"):
        (work / name).write_text(text, encoding="utf-8")
    (work / "corpus").mkdir()
    (work / "corpus" / "part.txt").write_text(text, encoding="utf-8")
    (work / "prompts.jsonl").write_text('{"text": "And the LORD said"}\n{"text": "In the beginning"}\n')
    return work


def test_every_public_name_imports():
    import importlib

    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            assert getattr(module, name) is not None, f"{module_name}.{name}"
    import logitscope

    for name in ("load", "Scope", "LensResult", "compare", "TunedLens", "LayerLogits", "LogitscopeError"):
        assert name in logitscope.__all__


def test_readme_python_runs_on_the_demo_model(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    blocks = [_shrink(b) for b in _blocks("python")]
    assert len(blocks) >= 6
    namespace: dict = {}
    for block in blocks:
        if "scope" in block and "scope = " not in block and "scope" not in namespace:
            exec("import logitscope\nscope = logitscope.load('demo', device='cpu')", namespace)  # noqa: S102
        if "h)" in block and "h" not in namespace:  # `scope.unembed(h)`: a hidden state to feed it
            exec("import torch\nh = torch.randn(3, scope.model.config.hidden_size)", namespace)  # noqa: S102
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["res"] is not None and namespace["z"].shape[-1] == namespace["scope"].parts.vocab_size


def test_readme_command_lines_run_on_the_demo_model(workdir, monkeypatch):
    from typer.testing import CliRunner

    from logitscope.cli import app

    monkeypatch.chdir(workdir)
    calls = [_shrink(c) for c in _cli_calls()]
    assert sum(c.startswith("logitscope lens") for c in calls) >= 4
    runner = CliRunner()
    failures = []
    for call in calls:
        argv = shlex.split(call)
        assert argv[0] == "logitscope", call
        out = runner.invoke(app, argv[1:])
        if out.exit_code != 0:
            failures.append(f"{call}\n  -> exit {out.exit_code}: {out.output[-400:]}")
    assert not failures, "\n".join(failures)
