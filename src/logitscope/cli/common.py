"""Shared CLI plumbing: clean errors, loading with a spinner. Token display lives in ``render.text``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps

import typer

# Options shared by every command that loads a model (typer reads these as defaults).
MODEL = typer.Argument(..., help="Hub id, local directory, or 'demo'.")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda, mps, ...")
DTYPE = typer.Option("auto", "--dtype", help="auto, float32, bfloat16, float16.")
TRUST_REMOTE_CODE = typer.Option(False, "--trust-remote-code", help="Run the model's own code (off unless asked).")


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def clean_errors(fn: Callable) -> Callable:
    """Turn LogitscopeError (and bad-file errors) into a one-line message and exit code 2."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from ..errors import LogitscopeError

        try:
            return fn(*args, **kwargs)
        except LogitscopeError as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
            fail(f"{err.strerror}: {err.filename}")

    return wrapper


@contextmanager
def status(message: str):
    """A rich spinner on stderr while something slow runs (silent when not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


def load_scope(model: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False):
    """Load a model for a command, with a spinner."""
    from ..loading import load

    with status(f"loading {model}"):
        return load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
