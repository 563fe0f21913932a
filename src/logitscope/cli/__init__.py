"""The ``logitscope`` command line: this module only registers commands.

Each command lives in its own module (``cli/<name>.py``) exposing ``register(app)``; heavy imports
(torch, transformers, plotting) happen inside the command functions so ``--help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module

import typer

from .common import OneLineErrors

COMMANDS = [
    "demo",
    "lens",
    "logits",
    "embed",
    "info",
    "eval",
    "train_lens",
    "fit_jlens",
    "serve",
    "attribute",
    "diff",
]  # modules under logitscope.cli, in help order

app = typer.Typer(
    cls=OneLineErrors,  # usage errors are one "error:" line too
    name="logitscope",
    help="See what a language model predicts at every layer and position.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"logitscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the logitscope version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """See what a language model predicts at every layer and position."""


for _name in COMMANDS:
    import_module(f".{_name}", __name__).register(app)


def main() -> None:
    """Console-script entry point."""
    app()
