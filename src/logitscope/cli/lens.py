"""``logitscope lens``: the logit lens of a model on a text, as a table, JSON, CSV, Parquet or plot."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``lens`` command to the CLI."""
    app.command("lens")(lens)


def lens(model: str = typer.Argument(..., help="Hub id, local directory or 'demo'.")) -> None:
    """Show what MODEL predicts at every layer and position of TEXT."""
    raise typer.Exit(1)
