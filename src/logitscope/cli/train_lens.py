"""``logitscope train-lens``: train a tuned lens for MODEL on a corpus, written in tuned-lens's format.

Runs on one process, or data-parallel under ``torchrun`` (gradients summed across ranks; rank 0
shows progress, writes checkpoints and the output folder).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from .common import DEVICE_MAP, MAX_MEMORY, OFFLOAD_FOLDER, clean_errors, fail, memory, status


def register(app: typer.Typer) -> None:
    """Add the ``train-lens`` command to the CLI."""
    app.command("train-lens")(train_lens_command)


@clean_errors
def train_lens_command(
    model: str = typer.Argument(..., help="Hub id, local directory or 'demo'."),
    data: str = typer.Option(..., "--data", help="Training text, read as eval reads --data: .txt/.jsonl/.json/.parquet/.arrow/.csv, a folder, a save_to_disk folder, or hf:NAME[:CONFIG[:SPLIT]]."),
    out: Path = typer.Option(..., "--out", help="Output folder: config.json + params.pt (tuned-lens layout) + training_log.json."),
    steps: int = typer.Option(250, "--steps", min=1, help="Optimiser steps (paper: 250)."),
    tokens_per_step: int = typer.Option(2**18, "--tokens-per-step", min=1, help="Tokens per step over all processes (paper: 262144)."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Tokens per window (default 2048, capped at the model's context)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Windows per forward pass on each process (memory only; default 8, or for a streamed model all of a step's windows that memory holds)."),
    lr: float = typer.Option(1.0, "--lr", help="Learning-rate scale; SGD's rate is lr × (1 − momentum)."),
    momentum: float = typer.Option(0.9, "--momentum", help="Nesterov momentum."),
    weight_decay: float = typer.Option(1e-3, "--weight-decay", help="Weight decay (towards the identity translator)."),
    warmup_steps: int = typer.Option(0, "--warmup-steps", min=0, help="Linear warm-up steps before the linear decay."),
    grad_clip: float = typer.Option(1.0, "--grad-clip", help="Maximum gradient norm over the whole lens."),
    seed: int = typer.Option(0, "--seed", help="Seed of the window shuffle."),
    save_every: int = typer.Option(50, "--save-every", min=0, help="Steps between checkpoints (0: none)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint file (default: OUT.ckpt.pt)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder."),
    text_field: str = typer.Option("text", "--text-field", help="Key (JSON) or column (Parquet, CSV, datasets) of the document text."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps ... (torchrun: cuda:LOCAL_RANK)."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype: auto, float32, bfloat16, float16."),
    backend: str | None = typer.Option(None, "--backend", help="torch.distributed backend under torchrun: nccl or gloo."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model's own code (only if you trust it)."),
    device_map: str | None = DEVICE_MAP,
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
) -> None:  # fmt: skip
    """Train a tuned lens for MODEL: KL(final ‖ translated layer), one layer backpropagated at a time."""
    from ..data.corpus import Corpus
    from ..data.distributed import init_from_env, model_device, shutdown
    from ..tuned.api import check_out
    from ..tuned.checkpoint import default_path

    if backend not in (None, "nccl", "gloo"):
        fail(f"unknown --backend {backend!r}; use nccl or gloo")
    if not 0 <= momentum < 1 or not lr > 0 or not grad_clip > 0 or not weight_decay >= 0:
        fail("need --lr > 0, 0 <= --momentum < 1, --weight-decay >= 0 and --grad-clip > 0")
    check_out(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        fail(f"--out {out} exists and is not empty: add --force to replace its lens, or choose another folder")
    ckpt = checkpoint if checkpoint is not None else default_path(out)
    if resume and not ckpt.is_file():
        fail(f"--resume: no checkpoint at {ckpt}")
    corpus = Corpus(data, text_field=text_field)  # a path that is not a corpus fails here, before loading
    ctx = init_from_env(backend)
    try:
        from ..loading import load

        with status(f"loading {model}") if ctx.is_main else nullcontext():
            mem = memory(device_map, max_memory, offload_folder)
            scope = load(
                model, device=model_device(ctx, device), dtype=dtype, trust_remote_code=trust_remote_code, **mem
            )
        lens = scope.train_lens(
            corpus, out=out, checkpoint=ckpt, resume=resume, progress=True, dist=ctx,
            steps=steps, tokens_per_step=tokens_per_step, seq_len=seq_len, batch_size=batch_size, lr=lr,
            momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps, grad_clip=grad_clip,
            seed=seed, save_every=save_every,
        )  # fmt: skip
        if ctx.is_main:
            _summary(lens, out)
    except KeyboardInterrupt:
        if not ctx.is_main:
            raise typer.Exit(130) from None
        fail(_interrupted(ckpt, out, save_every), code=130)
    finally:
        shutdown(ctx)


def _interrupted(ckpt: Path, out: Path, save_every: int) -> str:
    """What an interrupted training left, and how to go on."""
    if ckpt.is_file():
        from ..tuned.checkpoint import load_checkpoint

        try:
            step = f" (after step {load_checkpoint(ckpt)['step']})"
        except Exception:  # noqa: BLE001 - the message must not fail
            step = ""
        return (
            f"interrupted: --out {out} was not written; the last checkpoint{step} is {ckpt}: run the same "
            "command with --resume to continue from it"
        )
    every = f"every {save_every} steps" if save_every else "never (--save-every 0)"
    return (
        f"interrupted before the first checkpoint (written {every}): nothing was written; run the same "
        "command again to start over"
    )


def _summary(lens, out: Path) -> None:
    """The first and last step's per-layer KL, and the files written."""
    from rich.console import Console

    from ..tuned.progress import format_kl

    console = Console()
    steps = lens.training_log["steps"]
    if steps:
        console.print(f"KL(final ‖ layer), nats/token, step {steps[0]['step']}: {format_kl(steps[0]['kl'])}")
        console.print(f"KL(final ‖ layer), nats/token, step {steps[-1]['step']}: {format_kl(steps[-1]['kl'])}")
    for name in ("config.json", "params.pt", "training_log.json"):
        console.print(f"wrote {out / name}")
