"""``logitscope logits``: the model's own output distribution at every position, as a table or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .common import (
    DEVICE,
    DEVICE_MAP,
    DTYPE,
    MAX_MEMORY,
    MODEL,
    OFFLOAD_FOLDER,
    TRUNCATE,
    TRUST_REMOTE_CODE,
    check_out_file,
    clean_errors,
    fail,
    load_scope,
    memory,
)

FORMATS = ("table", "json")
# What each row's target is, by kind (the column header of the table).
TARGET_HEADER = {"causal": "next", "seq2seq": "next", "masked": "actual", "generate": "generated"}


def register(app: typer.Typer) -> None:
    """Add the ``logits`` command to the CLI."""
    app.command("logits")(logits)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


@clean_errors
def logits(
    model: str = MODEL,
    text: str = typer.Argument(..., help="Input text (the encoder's input for encoder-decoder models)."),
    target: str | None = typer.Option(None, "--target", help="Continuation (causal) or decoder text to teacher-force."),
    generate: int | None = typer.Option(None, "--generate", min=1, help="Greedy-decode N tokens; one row per step."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Top tokens shown per position."),
    save: Path | None = typer.Option(None, "--save", help="Also write the full logits: .safetensors or .npy."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json (schema: docs/logits_embeddings.md)."),
    truncate: bool = TRUNCATE,
    device: str = DEVICE,
    dtype: str = DTYPE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:
    """Show the top tokens MODEL predicts at every position of TEXT (masked LMs: at each [MASK])."""
    check_format(fmt)
    if save is not None:
        if not save.name.endswith((".safetensors", ".npy")):
            fail(f"--save {save}: the suffix must be .safetensors or .npy")
        check_out_file(save, "--save")
    if generate is not None and target is not None:
        fail("give --target or --generate, not both")
    scope = load_scope(
        model,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        **memory(device_map, max_memory, offload_folder),
    )
    vocab = scope.model.get_input_embeddings().weight.shape[0]
    if top_k > vocab:
        fail(f"--top-k {top_k} is more than the vocabulary ({vocab} tokens)")
    out = scope.logits(text, target=target, generate=generate, truncate=truncate)
    if save is not None:
        out.save(save)
        typer.echo(f"saved logits {tuple(out.logits.shape)} to {save}", err=True)
    top = out.top(top_k, positions=out.mask_positions if len(out.mask_positions) else None)
    if fmt == "json":
        sys.stdout.write(json.dumps(top.to_dict(), ensure_ascii=False) + "\n")
        return
    from rich.console import Console

    Console().print(top_table(top, target_header=TARGET_HEADER["generate" if generate else scope.kind]))
    if top.generated_text is not None:
        from rich.text import Text

        Console().print(Text(f"generated: {top.generated_text!r}"))


def top_table(top, *, target_header: str = "target", max_chars: int = 12):
    """A rich table of a :class:`~logitscope.outputs.logits.TopTokens`: one row per position, the top-k across."""
    from rich.table import Table
    from rich.text import Text

    from ..render.text import label

    meta = top.meta
    caption = None
    if top.source_tokens is not None:
        caption = "input: " + label("".join(top.source_tokens), 80, space=None)
    table = Table(title=f"{meta.get('model', '')} \u00b7 {meta.get('kind', '')}", caption=caption, title_style="bold")
    table.add_column("pos", justify="right", style="dim")
    table.add_column("token", no_wrap=True)
    has_target = bool((top.target_ids >= 0).any())
    if has_target:
        table.add_column(f"{target_header}\np (rank)", no_wrap=True, style="italic")
    for j in range(top.top_ids.shape[1]):
        table.add_column(f"top {j + 1}", no_wrap=True)
    for i, pos in enumerate(top.positions):
        cells = [str(pos), Text(label(top.tokens[i], max_chars))]
        if has_target:
            tgt = top.target_tokens[i]
            cells.append(
                Text("")
                if tgt is None
                else Text(f"{label(tgt, max_chars)}\n{top.target_probs[i]:.3f} ({top.target_ranks[i] + 1})")
            )
        for tok, p in zip(top.top_tokens[i], top.top_probs[i]):
            cell = Text(label(tok, max_chars))
            cell.append(f"\n{p:.3f}", style="dim")
            cells.append(cell)
        table.add_row(*cells)
    return table
