"""The README's first Python example runs as written (no substitutions) on the
only model a fresh clone has offline, and every tracked token is one token of it."""

from __future__ import annotations

import os
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_first_python_example_runs_verbatim(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert 'load("demo")' in code
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        env: dict = {}
        exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - the README's own code
    finally:
        os.chdir(cwd)
    res = env["res"]
    assert res.tracked_probs.shape[0] == 2 and (tmp_path / "lens.png").stat().st_size > 0
    assert res.top_tokens[-1][-1][0] in res.tracked_tokens  # the example shows something real
