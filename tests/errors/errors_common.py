"""What the error tests share: the CLI run in-process (a failure is one ``error:`` line, exit 2), the
leftovers of an atomic write, and two short documents."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from logitscope.cli import app

DOCS = ["In the beginning God created the heaven and the earth.", "And God said, Let there be light."]


def cli(*args, ok: bool = False):
    """Run the CLI in-process; a failure must be one ``error:`` line and exit code 2."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    else:
        assert result.exit_code == 2, (result.output, result.exception)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output
    return result


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders that an atomic write left behind."""
    return [p.name for p in folder.rglob(".*") if ".tmp" in p.name]
