"""``logitscope embed``: the tokens nearest to each token of the input in the input-embedding space."""

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
    fail,
    load_scope,
    memory,
)
from .logits import check_format

METRICS = ("cosine", "dot")


def register(app: typer.Typer) -> None:
    """Add the ``embed`` command to the CLI."""
    app.command("embed")(embed)


@clean_errors
def embed(
    model: str = MODEL,
    token_or_text: str = typer.Argument(..., help="A token (e.g. 'weekend' or ' weekend') or a text."),
    nearest: int = typer.Option(10, "--nearest", "-n", min=1, help="Neighbours shown per token."),
    metric: str = typer.Option("cosine", "--metric", "-m", help="cosine or dot."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json (schema: docs/logits_embeddings.md)."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:
    """Show the tokens whose input embeddings are nearest to each token of TOKEN_OR_TEXT.

    Needs only the input embeddings, so it works on encoders without an LM head too.
    """
    check_format(fmt)
    if metric not in METRICS:
        fail(f"unknown --metric {metric!r}; choose one of {', '.join(METRICS)}")
    scope = load_scope(
        model,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        **memory(device_map, max_memory, offload_folder),
    )
    vocab = scope.model.get_input_embeddings().weight.shape[0]
    if nearest >= vocab:
        fail(f"--nearest {nearest}: the vocabulary has only {vocab - 1} other tokens")
    emb = scope.embed(token_or_text, special_tokens=False)
    near = scope.nearest(emb.token_ids.tolist(), k=nearest, metric=metric)
    if fmt == "json":
        sys.stdout.write(json.dumps([n.to_dict() for n in near], ensure_ascii=False) + "\n")
        return
    from rich.console import Console

    console = Console()
    console.print(nearest_table(near, emb.norms, caption=scope.name, width=console.width))


def nearest_table(near: list, norms, *, caption: str | None = None, max_chars: int = 16, width: int | None = None):
    """One token: its neighbours, one per row. Several: one row per token, neighbours across,
    wrapped (for a console ``width``) between neighbours, never between a token and its score."""
    from rich.table import Table
    from rich.text import Text

    from ..render.table import join_fitting
    from ..render.text import label

    if len(near) == 1:
        n = near[0]
        title = f"nearest to {label(n.query)} by {n.metric} (id {n.query_id}, norm {norms[0]:.3g})"
        table = Table(title=title, caption=caption, title_style="bold")
        for name, justify in (("rank", "right"), ("token", "left"), ("id", "right"), (n.metric, "right")):
            table.add_column(name, justify=justify)
        for rank, (tok, i, s) in enumerate(zip(n.tokens, n.ids, n.scores), 1):
            table.add_row(str(rank), Text(label(tok, max_chars)), str(i), f"{s:.4f}")
        return table
    table = Table(title=f"nearest by {near[0].metric}", caption=caption, title_style="bold")
    for name, justify in (("pos", "right"), ("token", "left"), ("id", "right"), ("norm", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("nearest", no_wrap=width is not None)
    rows = [
        (str(pos), label(n.query, max_chars), str(n.query_id), f"{norm:.3g}")
        for pos, (n, norm) in enumerate(zip(near, norms))
    ]
    fixed = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(("pos", "token", "id", "norm"))]
    room = None if width is None else max(width - sum(w + 3 for w in fixed) - 4, 20)  # borders and pads
    for row, n in zip(rows, near):
        pairs = []
        for tok, s in zip(n.tokens, n.scores):
            pair = Text(label(tok, max_chars))
            pair.append(f" {s:.3f}", style="dim")
            pairs.append(pair)
        table.add_row(row[0], Text(row[1]), row[2], row[3], join_fitting(pairs, room, sep="  "))
    return table
