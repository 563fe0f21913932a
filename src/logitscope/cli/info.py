"""``logitscope info``: what a model is: architecture, size, layers, width, vocabulary, head, ties."""

from __future__ import annotations

import json
import sys

import typer

from .common import (
    DEVICE,
    DEVICE_MAP,
    DTYPE,
    MAX_MEMORY,
    MODEL,
    OFFLOAD_FOLDER,
    TRUST_REMOTE_CODE,
    clean_errors,
    load_scope,
    memory,
)
from .logits import check_format


def register(app: typer.Typer) -> None:
    """Add the ``info`` command to the CLI."""
    app.command("info")(info)


@clean_errors
def info(
    model: str = MODEL,
    fmt: str = typer.Option("table", "--format", "-f", help="table or json (schema: docs/logits_embeddings.md)."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:
    """Show MODEL's architecture, parameters, layers, d_model, vocabulary, tied embeddings and head."""
    check_format(fmt)
    data = (
        load_scope(
            model,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            **memory(device_map, max_memory, offload_folder),
        )
        .info()
        .to_dict()
    )
    if fmt == "json":
        sys.stdout.write(json.dumps(data) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, title=data["name"], title_style="bold")
    table.add_column(style="dim")
    table.add_column()
    for key, value in data.items():
        if key == "n_params":
            value = f"{value:,}"
        elif key == "tied_embeddings" and value is not None:
            value = f"{value} ({data['tie']})"
        elif key == "tie":
            continue
        table.add_row(key, "-" if value is None else str(value))
    Console().print(table)
