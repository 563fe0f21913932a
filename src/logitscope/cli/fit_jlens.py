"""``logitscope fit-jlens``: fit a Jacobian lens for MODEL on a corpus, or merge shards, in the published format.

Runs on one process, or under ``torchrun`` (prompts split across ranks, sums all-reduced; rank 0
shows progress, writes checkpoints and the lens file). Shards fitted in separate processes (on
separate --data files) are combined with ``--merge A.pt B.pt ...`` (prompt-weighted: a joint fit).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from .common import DEVICE_MAP, MAX_MEMORY, OFFLOAD_FOLDER, check_out_file, clean_errors, fail, memory, status


def register(app: typer.Typer) -> None:
    """Add the ``fit-jlens`` command to the CLI."""
    app.command("fit-jlens", context_settings={"allow_extra_args": True})(fit_jlens_command)


def parse_ints(spec: str | None, flag: str) -> list[int] | None:
    """``"0,2,-3"`` → ``[0, 2, -3]``; anything else is a one-line error."""
    if spec is None:
        return None
    try:
        return [int(s) for s in spec.split(",")]
    except ValueError:
        fail(f"{flag} {spec!r}: give block indices separated by commas, e.g. 0,1,2")


@clean_errors
def fit_jlens_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Hub id, local directory or 'demo'."),
    data: str | None = typer.Option(None, "--data", help="Prompts: a .txt/.jsonl/.json/.parquet/.arrow/.csv file, a folder, a save_to_disk folder or hf:NAME; each document is cut into --max-seq-len-token prompts."),
    out: Path = typer.Option(..., "--out", help="The lens file (.pt, published layout, float16)."),
    prompts: int | None = typer.Option(None, "--prompts", min=1, help="Stop after this many prompts fitted (default: all)."),
    skip_first: int = typer.Option(16, "--skip-first", min=0, help="Leading positions left out of the average (attention sinks)."),
    max_seq_len: int = typer.Option(128, "--max-seq-len", min=2, help="Tokens per prompt, BOS included."),
    dim_batch: int = typer.Option(8, "--dim-batch", min=1, help="Output dimensions per backward pass (memory only)."),
    source_layers: str | None = typer.Option(None, "--source-layers", help="Blocks to fit, e.g. '0,1,2' (default: all below the target)."),
    target_layer: int | None = typer.Option(None, "--target-layer", help="Block differentiated (default: the last)."),
    save_every: int = typer.Option(50, "--save-every", min=0, help="Prompts between checkpoints (0: none)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint file (default: OUT.ckpt beside --out, e.g. lens.pt.ckpt)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint (bit-identical to an uninterrupted fit)."),
    merge: list[Path] | None = typer.Option(None, "--merge", help="Merge these lens files (prompt-weighted) into --out instead of fitting: --merge A.pt B.pt ..."),
    text_field: str = typer.Option("text", "--text-field", help="Key (JSON) or column (Parquet, CSV, datasets) of the document text."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps ... (torchrun: cuda:LOCAL_RANK)."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype: auto, float32, bfloat16, float16."),
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
    backend: str | None = typer.Option(None, "--backend", help="torch.distributed backend under torchrun: nccl or gloo."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model's own code (only if you trust it)."),
) -> None:  # fmt: skip
    """Fit a Jacobian lens for MODEL: one forward and ceil(d/dim-batch) backward passes per prompt."""
    from ..loading import check_device_map

    extra = list(ctx.args)
    check_device_map(device_map)
    mem = memory(device_map, max_memory, offload_folder)
    if extra and not merge:
        fail(f"unexpected argument {extra[0]!r}")
    check_out_file(out, "--out")
    if merge:
        if data is not None or resume:
            fail("--merge combines finished lens files; do not combine it with --data or --resume")
        files = [*merge, *map(Path, extra)]
        return _merge(model, files, out, device=device, dtype=dtype, trust=trust_remote_code, mem=mem)
    if data is None:
        fail("give --data PATH (the prompts to fit on), or --merge A.pt B.pt ...")
    if backend not in (None, "nccl", "gloo"):
        fail(f"unknown --backend {backend!r}; use nccl or gloo")
    from ..data.corpus import Corpus
    from ..data.distributed import init_from_env, model_device, shutdown
    from ..jacobian.checkpoint import default_path
    from ..jacobian.progress import FitProgress

    ckpt = checkpoint if checkpoint is not None else default_path(out)
    if resume and not ckpt.is_file():
        fail(f"--resume: no checkpoint at {ckpt}")
    corpus = Corpus(data, text_field=text_field)  # a path that is not a corpus fails here, before loading
    layers = parse_ints(source_layers, "--source-layers")
    dist = init_from_env(backend)
    try:
        if dist.enabled and device_map is not None:
            fail("--device-map spreads one model copy over this node's devices; do not combine it with torchrun")
        from ..loading import load

        with status(f"loading {model}") if dist.is_main else nullcontext():
            device = model_device(dist, device)
            scope = load(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem)
        with FitProgress(enabled=dist.is_main) as progress:
            lens = scope.fit_jacobian_lens(
                corpus, skip_first=skip_first, max_seq_len=max_seq_len, dim_batch=dim_batch,
                source_layers=layers, target_layer=target_layer, n_prompts=prompts, out=out, checkpoint=ckpt,
                resume=resume, save_every=save_every, dist=dist, progress=progress,
                metadata=dict(corpus=data),
            )  # fmt: skip
        if dist.is_main:
            _summary(lens, out)
    finally:
        shutdown(dist)


def _merge(model: str, files: list[Path], out: Path, *, device: str, dtype: str, trust: bool, mem: dict) -> None:
    from ..jacobian import JacobianLens
    from ..loading import load

    lenses = [JacobianLens.load(f) for f in files]  # every shard read and checked before the model loads
    with status(f"loading {model}"):
        scope = load(model, device=device, dtype=dtype, trust_remote_code=trust, **mem)
    merged = JacobianLens.merge(lenses)
    merged.check(scope)
    merged.source = str(out)
    merged.save(out)
    _summary(merged, out)


def _summary(lens, out: Path) -> None:
    from rich.console import Console

    console = Console()
    meta = lens.metadata
    seconds = meta.get("fit_seconds")
    timing = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) and "merged_from" not in meta else ""
    console.print(
        f"Jacobian lens: {lens.n_prompts} prompts{timing}, source layers {lens.source_layers}, d_model {lens.d_model}"
        + (f", {meta['n_skipped']} prompts skipped (too short)" if meta.get("n_skipped") else "")
    )
    console.print(f"wrote {out}")
