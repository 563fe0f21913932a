"""``logitscope attribute``: direct logit attribution of a target token, per block's attention and MLP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..io.formats import PLOT_SUFFIXES
from .common import (
    DEVICE,
    DEVICE_MAP,
    DTYPE,
    MAX_MEMORY,
    MODEL,
    OFFLOAD_FOLDER,
    TRUNCATE_FIRST,
    TRUST_REMOTE_CODE,
    check_out_file,
    clean_errors,
    fail,
    load_scope,
    memory,
)

FORMATS = ("table", "json", "csv")


def register(app: typer.Typer) -> None:
    """Add the ``attribute`` command to the CLI."""
    app.command("attribute")(attribute)


@clean_errors
def attribute(
    model: str = MODEL,
    text: str = typer.Argument(..., help="Input text."),
    target: str | None = typer.Option(
        None, "--target", help="One token to attribute at every position (default: the model's top-1)."
    ),
    position: int = typer.Option(-1, "--position", help="Position shown in the table and --bars (default: last)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table (one position), json or csv (every position)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write json/csv here instead of stdout."),
    plot: Path | None = typer.Option(None, "--plot", help="Heatmap of every position: .png, .svg, .pdf or .html."),
    bars: Path | None = typer.Option(None, "--bars", help="Bar chart of --position: .png, .svg, .pdf or .html."),
    truncate: bool = TRUNCATE_FIRST,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:
    """How much the embeddings and each block's attention and MLP add to a token's logit in TEXT."""
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "table" and out is not None:
        fail("--format table prints to the terminal; use json or csv with --out")
    for flag, path in (("--plot", plot), ("--bars", bars)):
        if path is not None and path.suffix.lower() not in PLOT_SUFFIXES:
            fail(f"{flag} {path}: the suffix must be .png, .svg, .pdf or .html")
    for flag, path in (("--out", out), ("--plot", plot), ("--bars", bars)):
        check_out_file(path, flag)
    scope = load_scope(
        model,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        **memory(device_map, max_memory, offload_folder),
    )
    res = scope.attribute(text, target=target, truncate=truncate)
    p = res.position(position)
    if fmt == "table":
        from rich.console import Console

        from ..render.attribution import attribution_table

        console = Console()
        console.print(attribution_table(res, p))
        kinds = res.by_kind()
        console.print(
            f"embeddings {kinds['embed'][p]:+.3f}   attention {kinds['attn'][p]:+.3f}   "
            f"MLP {kinds['mlp'][p]:+.3f}   bias {res.bias[p]:+.3f}"
        )
    else:
        _write(res, fmt, out)
    if plot is not None:
        res.plot(plot)
    if bars is not None:
        res.plot(bars, position=p)


def _write(res, fmt: str, out: Path | None) -> None:
    from ..io.atomic import atomic_file

    if fmt == "json":
        text = json.dumps(res.to_dict(), ensure_ascii=False) + "\n"
        if out is None:
            sys.stdout.write(text)
            return
        with atomic_file(out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return
    frame = res.to_pandas()
    if out is None:
        frame.to_csv(sys.stdout, index=False)
        return
    with atomic_file(out) as tmp:
        frame.to_csv(tmp, index=False)
