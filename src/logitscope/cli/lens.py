"""``logitscope lens``: the logit lens of a model on a text, as a table, JSON, CSV, Parquet or plot."""

from __future__ import annotations

import contextlib
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
    TRUNCATE,
    TRUST_REMOTE_CODE,
    check_lens_paths,
    check_out_file,
    clean_errors,
    fail,
    load_scope,
    memory,
    stdout_is_terminal,
)

FORMATS = ("table", "json", "csv", "parquet")
METRICS = ("entropy", "prob", "target", "rank", "kl")


def register(app: typer.Typer) -> None:
    """Add the ``lens`` command to the CLI."""
    app.command("lens")(lens)


def parse_layers(spec: str | None) -> list[int | str] | None:
    """``"0,4,8,-1"`` → ``[0, 4, 8, -1]``; names such as ``embed`` pass through (the library checks them).

    Anything else that starts with a digit or a sign (``--1``, ``4x``), an empty item or an empty
    list is a one-line error.
    """
    if spec is None:
        return None
    items = [s.strip() for s in spec.split(",")]
    if not any(items):
        fail(f"--layers {spec!r} names no layers; give e.g. '0,4,-1' or 'embed'")
    from ..engine.rows import is_int_text, looks_like_row

    out: list[int | str] = []
    for item in items:
        if not item:
            fail(f"--layers {spec!r} has an empty item")
        if not looks_like_row(item):
            fail(f"--layers: {item!r} is neither a layer index nor a layer name")
        out.append(int(item) if is_int_text(item) else item)
    return out


def read_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of a UTF-8 file (a leading byte-order mark dropped);
    a bad byte is an error naming its line."""
    from ..errors import InputError
    from ..io.textfile import decode_file_bytes

    if path.is_dir():
        raise InputError(f"--input-file {str(path)!r} is a directory; give a file of texts")
    if not path.exists():
        raise InputError(f"--input-file {str(path)!r}: no such file")
    try:  # a regular file, or /dev/stdin, a FIFO, /dev/null (which holds no texts)
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"--input-file {str(path)!r}: cannot read it ({err.strerror or err})") from None
    text = decode_file_bytes(raw, path)  # a UTF-8 byte-order mark is not text (editors on Windows add one)
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_inputs(path: Path) -> list[tuple[str, str | None]]:
    """(text, target) pairs from a file of lines, or of JSON Lines ``{"text": ..., "target": ...}``."""
    numbered_lines = read_lines(path)
    lines = [line for _, line in numbered_lines]
    as_json = path.suffix.lower() in (".jsonl", ".ndjson") or (lines and all(s.lstrip().startswith("{") for s in lines))
    if not as_json:
        return [(line, None) for line in lines]
    out = []
    for n, line in numbered_lines:
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            fail(f"{path}:{n}: not valid JSON ({err.msg})")
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            fail(f'{path}:{n}: expected an object with a "text" string')
        if not isinstance(item.get("target"), (str, type(None))):
            fail(f'{path}:{n}: "target" must be a string or null, not {type(item["target"]).__name__}')
        out.append((item["text"], item.get("target")))
    return out


def pick_format(fmt: str | None, out: Path | None) -> str:
    """The output format: as asked, else from ``--out``'s suffix, else a table on a terminal, else JSON."""
    if fmt is not None:
        if fmt not in FORMATS:
            fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    if out is not None:
        from ..lens.export import format_for

        return {"jsonl": "json"}.get(format_for(out), format_for(out))
    return "table" if stdout_is_terminal() else "json"


def numbered(path: Path, i: int, n: int) -> Path:
    """``heat.png`` → ``heat_3.png`` when there are several results."""
    return path if n == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")


@clean_errors
def lens(
    model: str = MODEL,
    text: str | None = typer.Argument(None, help="Input text (or use --input-file)."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Top tokens kept per cell."),
    layers: str | None = typer.Option(
        None, "--layers", help="Layers to show, e.g. '0,4,8,-1' (0 = embed) or '5.attn,5'."
    ),
    target: str | None = typer.Option(None, "--target", help="Continuation to teacher-force and score."),
    track: list[str] | None = typer.Option(None, "--track", help="Token to follow across layers (repeatable)."),
    metric: str = typer.Option("entropy", "--metric", "-m", help="Cell colour: " + "|".join(METRICS) + "."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="table|json|csv|parquet (default: table on a terminal)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the result here instead of stdout."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw a heatmap: .png, .svg, .pdf or .html."),
    trajectory: Path | None = typer.Option(None, "--trajectory", help="Also plot the --track tokens across layers."),
    position: int | None = typer.Option(
        None, "--position", help="Position of the --trajectory plot and the tracked-token table (default: the last)."
    ),
    input_file: Path | None = typer.Option(None, "--input-file", help="Texts, one per line, or JSONL with 'text'."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Inputs per forward pass."),
    truncate: bool = TRUNCATE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
    tuned: str | None = typer.Option(None, "--tuned", help="Use a tuned lens: a tuned-lens folder, or 'demo'."),
    lens_path: str | None = typer.Option(
        None, "--lens", help="Use any lens: a lens folder or file (its kind is read from it), 'logit' or 'demo'."
    ),
    jacobian: str | None = typer.Option(
        None, "--jacobian", help="Use a Jacobian lens: a J-lens file (.pt), or 'demo' (docs/jacobian_lens.md)."
    ),
    sublayers: bool = typer.Option(
        False, "--sublayers", help="Add each block's stream after attention as a row 'L.attn' (docs/inside.md)."
    ),
) -> None:
    """Show what MODEL predicts at every layer and position of TEXT."""
    from ..render.metrics import get_metric

    metric = get_metric(metric).name
    if (text is None) == (input_file is None):
        fail("give either TEXT or --input-file (exactly one)")
    items = read_inputs(input_file) if input_file is not None else [(text, None)]
    if not items:
        fail(f"--input-file {str(input_file)!r} holds no texts (it is empty or only blank lines)")
    if target == "":
        fail("--target is empty: give the continuation to score, or leave --target out")
    if sublayers and tuned is not None:
        fail("--sublayers works with the logit lens only, not with --tuned")
    if track and any(not t for t in track):
        fail("--track is empty: give a single-token string such as ' the', or a token id")
    fmt = pick_format(fmt, out)
    check_options(fmt, out, plot, trajectory, position, track)
    if sum(x is not None for x in (tuned, lens_path, jacobian)) > 1:
        fail("give one of --lens, --tuned and --jacobian: a result holds one lens")
    check_lens_paths(lens=lens_path, tuned=tuned, jacobian=jacobian)
    layer_list = parse_layers(layers)
    scope = load_scope(
        model,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        **memory(device_map, max_memory, offload_folder),
    )
    kwargs = dict(track=track or None, layers=layer_list, top_k=top_k, truncate=truncate)
    if sublayers:
        kwargs["sublayers"] = True
    if tuned is not None or lens_path is not None:  # read and checked once, applied to every batch
        from ..lens.select import pick_lens

        kwargs["lens"] = pick_lens(scope, lens=lens_path, tuned=tuned)
    if jacobian is not None:
        from ..jacobian import JacobianLens

        kwargs["lens"] = JacobianLens.load(jacobian, scope=scope)
    results = run_all(scope, items, target, batch_size=batch_size, **kwargs)
    position = -1 if position is None else position
    if trajectory is not None or (fmt == "table" and track):  # --position is used: check it before writing
        for res in results:
            check_position(position, res.n_positions)
    write_all(results, fmt, out, plot, trajectory, metric=metric, position=position, many=input_file is not None)


def check_options(fmt: str, out: Path | None, plot, trajectory, position, track) -> None:
    """Every option combination and output destination, checked before the model is even loaded."""
    if fmt == "parquet" and out is None:
        fail("--format parquet writes a binary file: give --out FILE.parquet")
    if fmt == "table" and out is not None:
        fail("--format table prints to the terminal; use json, csv or parquet with --out")
    for flag, path in (("--plot", plot), ("--trajectory", trajectory)):
        if path is not None and path.suffix.lower() not in PLOT_SUFFIXES:
            fail(f"{flag} {path}: the suffix must be .png, .svg, .pdf or .html")
    if trajectory is not None and not track:
        fail("--trajectory plots the --track tokens across layers: add --track TOKEN")
    if position is not None and trajectory is None and not (fmt == "table" and track):
        fail("--position picks the position of --trajectory or of the table's --track tokens; it does nothing here")
    for flag, path in (("--out", out), ("--plot", plot), ("--trajectory", trajectory)):
        check_out_file(path, flag)


def write_all(results: list, fmt: str, out, plot, trajectory, *, metric: str, position: int, many: bool) -> None:
    """Write every output all or nothing: each file is rendered to a temporary name first, and all are
    moved into place together once everything (stdout included) has been written."""
    from contextlib import ExitStack

    from ..io.atomic import atomic_file

    n = len(results)
    with ExitStack() as stack:
        for i, res in enumerate(results):
            if plot is not None:
                res.plot(stack.enter_context(atomic_file(numbered(plot, i, n))), metric=metric)
            if trajectory is not None:
                res.plot_trajectory(position, stack.enter_context(atomic_file(numbered(trajectory, i, n))))
        target = stack.enter_context(atomic_file(out)) if out is not None else None
        try:
            write_results(results, fmt, target, metric=metric, position=position, many=many)
        except OSError as err:  # e.g. a full disk: name the destination, not the temporary
            raise OSError(err.errno, err.strerror, str(out) if out is not None else "<stdout>") from None


def run_all(scope, items: list[tuple[str, str | None]], target: str | None, *, batch_size: int, **kwargs) -> list:
    """Lens every (text, target) item in batches, with a progress bar on a terminal when there are several."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    results = []
    progress = Progress(
        TextColumn("lens"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=len(items) == 1 or not console.is_terminal,
    )  # fmt: skip
    # a disabled Progress is never entered: rich < 14.3 writes a stray newline to stderr on leaving one
    with progress if not progress.disable else contextlib.nullcontext():
        task = progress.add_task("lens", total=len(items))
        for b0 in range(0, len(items), batch_size):
            batch = items[b0 : b0 + batch_size]
            targets = [t if t is not None else target for _, t in batch]
            tgt = None if all(t is None for t in targets) else targets
            results.extend(scope.lens([x for x, _ in batch], target=tgt, batch_size=batch_size, **kwargs))
            progress.advance(task, len(batch))
    return results


def write_results(results: list, fmt: str, out: Path | None, *, metric: str, position: int, many: bool) -> None:
    """Write results as a table (stdout), JSON (JSONL when ``many``), CSV or Parquet."""
    from ..lens import export

    if fmt == "table":
        if out is not None:
            fail("--format table prints to the terminal; use json, csv or parquet with --out")
        print_tables(results, metric=metric, position=position)
        return
    if fmt == "json":
        if many:
            text = "".join(export.to_json(r, input=i) + "\n" for i, r in enumerate(results))
        else:
            text = export.to_json(results[0]) + "\n"
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text, encoding="utf-8")
        return
    data = export.frame(results if many else results[0])
    if fmt == "csv":
        data.to_csv(out if out is not None else sys.stdout, index=False)
    else:
        data.to_parquet(out, index=False)


def check_position(position: int, n_positions: int) -> int:
    """``position`` as an index in ``0 .. P-1`` (negative counts from the end); out of range is an error."""
    from ..render.view import select_positions

    return select_positions(n_positions, [position])[0]


def print_tables(results: list, *, metric: str, position: int) -> None:
    """Print each result as paged rich tables, a colour legend and (with --track) the tracked tokens."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..render.table import legend, lens_tables
    from ..render.text import label

    console = Console()
    for i, res in enumerate(results):
        if len(results) > 1:
            console.rule(Text(f"input {i}: {label(''.join(res.tokens), 60, space=None)}"))
        for table in lens_tables(res, metric=metric, width=console.width):
            console.print(table)
        console.print(legend(res, metric, width=console.width))
        if len(res.tracked_ids):
            p = check_position(position, res.n_positions)
            console.print(Text(f"tracked tokens at position {p} ({label(res.tokens[p])}): probability (rank)"))
            table = Table()
            table.add_column("layer", justify="right")
            for tok in res.tracked_tokens:
                table.add_column(Text(label(tok)), justify="right")
            for r in range(res.n_streams - 1, -1, -1):
                cells = [
                    f"{res.tracked_probs[k, r, p]:.3f} ({res.tracked_ranks[k, r, p] + 1})"
                    for k in range(len(res.tracked_ids))
                ]
                table.add_row(res.layer_names[r], *cells)
            console.print(table)
