"""``import logitscope`` and ``logitscope --help`` stay light: no torch, transformers or plotting."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "matplotlib", "plotly", "pandas", "fastapi")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_import_is_light():
    loaded = _loaded_after("import logitscope; logitscope.__version__")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_help_is_light():
    code = "import sys; sys.argv = ['logitscope', '--help']\nfrom logitscope.cli import app\ntry:\n    app()\nexcept SystemExit:\n    pass"
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_public_api_resolves_lazily():
    loaded = _loaded_after("import logitscope; logitscope.Scope; logitscope.load")
    assert "torch" in loaded  # the lazy attributes really load the engine


def test_version_flag():
    import logitscope

    out = subprocess.run([sys.executable, "-m", "logitscope", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"logitscope {logitscope.__version__}"
