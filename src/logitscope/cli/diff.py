"""``logitscope diff``: lens diff of two models on a text, or of one model on two prompts."""

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
    OFFLOAD_FOLDER,
    TRUNCATE_FIRST,
    TRUST_REMOTE_CODE,
    check_out_file,
    clean_errors,
    fail,
    load_scope,
    memory,
    status,
)

FORMATS = ("table", "json", "csv", "parquet")


def register(app: typer.Typer) -> None:
    """Add the ``diff`` command to the CLI."""
    app.command("diff")(diff)


@clean_errors
def diff(
    args: list[str] = typer.Argument(..., help="MODEL_A MODEL_B TEXT, or MODEL TEXT with --against."),
    against: str | None = typer.Option(None, "--against", help="Second prompt: compare the last positions."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Top tokens kept per side and cell."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="table|json|csv|parquet (default: table, or --out's)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write json/csv/parquet here instead of stdout."),
    plot: Path | None = typer.Option(None, "--plot", help="Heatmap: .png, .svg, .pdf or .html."),
    metric: str = typer.Option("delta", "--metric", "-m", help="Plot colour: delta (diverging) or kl."),
    truncate: bool = TRUNCATE_FIRST,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:
    """Where two models (A, B) part ways on TEXT, layer by layer: KL(A ‖ B), top-1 agreement, top-k.

    Rows are A's layers; when depths differ B's row is matched by fraction of depth.
    """
    want = 2 if against is not None else 3
    if len(args) != want:
        usage = "MODEL TEXT --against OTHER" if against is not None else "MODEL_A MODEL_B TEXT"
        fail(f"expected {usage} ({want} arguments), got {len(args)}")
    fmt = fmt or (out.suffix.lower().lstrip(".") if out is not None else "table")
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "table" and out is not None:
        fail("--format table prints to the terminal; use json, csv or parquet with --out")
    if fmt == "parquet" and out is None:
        fail("--format parquet writes a binary file: give --out FILE.parquet")
    if out is not None and fmt != "table" and out.suffix.lower() != f".{fmt}":
        fail(f"--out {out}: use the suffix .{fmt} for --format {fmt}")
    if metric not in ("delta", "kl"):
        fail(f"unknown --metric {metric!r}; use delta or kl")
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        fail(f"--plot {plot}: the suffix must be .png, .svg, .pdf or .html")
    for flag, path in (("--out", out), ("--plot", plot)):
        check_out_file(path, flag)
    mem = memory(device_map, max_memory, offload_folder)
    load = lambda name: load_scope(name, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem)  # noqa: E731
    a = load(args[0])
    b = load(args[1]) if against is None else None
    res = a.compare(b, args[-1], against=against, top_k=top_k, truncate=truncate)
    if fmt == "table":
        from rich.console import Console

        from ..render.diff import diff_tables

        console = Console()
        for table in diff_tables(res, width=console.width):
            console.print(table)
        from rich.text import Text

        from ..render.table import join_fitting

        pairs = [f"{n} {v:.3f}" for n, v in zip(res.layer_names, res.per_layer()["kl"])]
        pairs[0] = f"mean KL(A \u2016 B) by layer: {pairs[0]}"
        console.print(join_fitting([Text(p) for p in pairs], console.width - 1, sep=", "))
    elif out is None:
        if fmt == "json":
            sys.stdout.write(json.dumps(res.to_dict(), ensure_ascii=False) + "\n")
        else:
            res.to_pandas().to_csv(sys.stdout, index=False)
    else:
        res.save(out)
    if plot is not None:
        res.plot(plot, metric=metric)


def load_compare(scope, model_b: str, *, device: str, dtype: str, trust_remote_code: bool = False, **mem):
    """Model B of ``eval --compare``, loaded and checked against A (vocabulary, kind) before any work."""
    from ..diff.run import check_comparable

    b = load_scope(model_b, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem)
    check_comparable(scope, b)
    return b


def eval_compare(scope, b, corpus, out: Path, *, plots: bool, **kwargs) -> None:
    """``logitscope eval A --compare B``: per-layer KL(A ‖ B) curves over the corpus, saved beside A's."""
    from rich.console import Console
    from rich.table import Table

    from ..diff.corpus import compare_corpus

    with status(f"comparing with {b.name}"):
        res = compare_corpus(scope, b, corpus, **kwargs)
    from ..diff.corpus import compare_files

    paths = compare_files(res.save(out, plots=plots), plots)
    level = int(round(100 * res.meta["confidence"]))
    table = Table(title=f"A = {res.meta['model_a']} vs B = {res.meta['model_b']} ({res.n_tokens:,} tokens)")
    for col in ("layer", "B layer", "KL(A \u2016 B)", f"{level}% CI", "top-1 agree"):
        table.add_column(col, justify="right")
    for i, name in enumerate(res.layer_names):
        lo, hi = res.kl_ci[i]
        table.add_row(
            name, res.b_layer_names[i], f"{res.kl[i]:.4f}", f"{lo:.4f}..{hi:.4f}", f"{res.top1_agreement[i]:.1%}"
        )
    console = Console()
    console.print(table)
    for path in paths.values():
        console.print(f"wrote {path}")
