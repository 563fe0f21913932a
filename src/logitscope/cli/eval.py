"""``logitscope eval``: per-layer CE / bits-per-byte / KL / entropy / top-1 curves over a corpus.

Runs on one process, or on many under ``torchrun`` (windows sharded round-robin across ranks,
sums all-reduced; rank 0 shows progress and writes the outputs).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from .common import MAX_MEMORY, OFFLOAD_FOLDER, check_lens_paths, check_out_dir, clean_errors, fail, memory, status


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to the CLI."""
    app.command("eval")(eval_command)


@clean_errors
def eval_command(
    model: str = typer.Argument(..., help="Hub id, local directory or 'demo'."),
    data: str = typer.Option(..., "--data", help="A .txt/.jsonl/.json/.parquet/.arrow/.csv file, a folder of them, a save_to_disk folder, or hf:NAME[:CONFIG[:SPLIT]] (docs/eval.md)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Stop after exactly this many scored tokens."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Tokens per window (default 1024, capped at the model's context)."),
    batch_size: str = typer.Option("auto", "--batch-size", help="Windows per forward pass, or 'auto' (from free memory)."),
    out: Path = typer.Option(Path("logitscope-eval"), "--out", help="Output directory."),
    ci: str = typer.Option("bootstrap", "--ci", help="Confidence intervals: 'bootstrap' (over windows) or 'stderr'."),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of the intervals, strictly between 0 and 1."),
    n_boot: int = typer.Option(1000, "--n-boot", min=1, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    text_field: str = typer.Option("text", "--text-field", help="Key (JSON) or column (Parquet, CSV, datasets) of the document text."),
    encoding_errors: str = typer.Option("strict", "--encoding-errors", help="'strict': a byte that is not UTF-8 is an error naming the file and line; 'replace': replace it with U+FFFD."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps ... (torchrun: cuda:LOCAL_RANK)."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype: auto, float32, bfloat16, float16."),
    device_map: str | None = typer.Option(None, "--device-map", help="'auto': spread a large model over devices (accelerate; one process); 'stream': blocks read one at a time from the safetensors shards."),
    max_memory: str | None = MAX_MEMORY,
    offload_folder: str | None = OFFLOAD_FOLDER,
    backend: str | None = typer.Option(None, "--backend", help="torch.distributed backend under torchrun: nccl or gloo (default: nccl with CUDA, else gloo)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write curves.png and curves.html."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model's own code (only if you trust it)."),
    tuned: str | None = typer.Option(None, "--tuned", help="Also evaluate a tuned lens (a tuned-lens folder, or 'demo'), side by side."),
    jacobian: str | None = typer.Option(None, "--jacobian", help="Also evaluate a Jacobian lens (a J-lens file, or 'demo'), side by side."),
    compare: str | None = typer.Option(None, "--compare", help="Model B: also write per-layer KL(A || B) and top-1 agreement curves (compare.json, compare.png; docs/inside.md)."),
) -> None:  # fmt: skip
    """Evaluate MODEL on a corpus: per-layer curves averaged over every token."""
    from ..data.corpus import Corpus
    from ..data.distributed import init_from_env, model_device, shutdown
    from ..loading import check_device_map

    if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) >= 1):
        fail("--batch-size must be a positive integer or 'auto'")
    if not 0 < confidence < 1:
        fail(f"--confidence must be strictly between 0 and 1, not {confidence}")
    if ci not in ("bootstrap", "stderr"):
        fail("--ci must be 'bootstrap' or 'stderr'")
    if encoding_errors not in ("strict", "replace"):
        fail("--encoding-errors must be 'strict' or 'replace'")
    if backend not in (None, "nccl", "gloo", "mpi", "ucc"):
        fail(f"unknown --backend {backend!r}; use nccl or gloo")
    check_device_map(device_map)
    check_out_dir(out, "--out")  # before the run, not after it
    check_lens_paths(tuned=tuned, jacobian=jacobian)
    corpus = Corpus(data, text_field=text_field, encoding_errors=encoding_errors)
    ctx = init_from_env(backend)
    try:
        if ctx.enabled and device_map is not None:
            fail("--device-map spreads one model copy over this node's devices; do not combine it with torchrun")
        if ctx.enabled and compare is not None:
            fail("--compare runs on one process; do not combine it with torchrun")
        from ..loading import load

        with status(f"loading {model}") if ctx.is_main else nullcontext():
            scope = load(
                model,
                device=model_device(ctx, device),
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                **memory(device_map, max_memory, offload_folder),
            )
        lens = None
        if tuned is not None:  # read and checked against the model before the run
            from ..tuned import TunedLens

            lens = TunedLens.load(tuned, scope=scope)
        jlens = None
        if jacobian is not None:
            from ..jacobian import JacobianLens

            jlens = JacobianLens.load(jacobian, scope=scope)
        scope_b = None
        if compare is not None:  # loaded and checked against A before the run (cli/diff.py)
            from .diff import load_compare

            mem = memory(device_map, max_memory, offload_folder)
            scope_b = load_compare(
                scope, compare, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **mem
            )
        with _progress_bar(enabled=ctx.is_main) as progress:
            result = scope.evaluate(
                corpus,
                max_tokens=max_tokens,
                seq_len=seq_len,
                batch_size=batch_size if batch_size == "auto" else int(batch_size),
                ci=ci,
                confidence=confidence,
                n_boot=n_boot,
                seed=seed,
                dist=ctx,
                progress=progress,
                tuned=lens,
                jacobian=jlens,
            )
        if ctx.is_main:
            result.meta["data"] = data
            from ..evaluate.result import run_files

            paths = run_files(result.save(out, plots=plots), plots)
            if lens is None and jlens is None:
                _print_summary(result, paths)
            else:
                from ..evaluate.lens_comparison import print_comparison

                print_comparison(result, paths)
            if compare is not None:  # a second pass over the corpus through both models (cli/diff.py)
                from .diff import eval_compare

                corpus_b = Corpus(data, text_field=text_field, encoding_errors=encoding_errors)
                kw = dict(max_tokens=max_tokens, seq_len=seq_len, confidence=confidence, n_boot=n_boot, seed=seed)
                eval_compare(scope, scope_b, corpus_b, out, plots=plots, **kw)
    except KeyboardInterrupt:
        if not ctx.is_main:
            raise typer.Exit(130) from None
        fail(
            f"interrupted: nothing was written to --out {out} (the folder appears only when complete, and eval "
            "keeps no checkpoint); run the same command again to start over, or give --max-tokens to finish sooner",
            code=130,
        )
    finally:
        shutdown(ctx)


class _progress_bar:
    """A rich progress bar on stderr (tokens, tokens/s, ETA); yields the ``progress`` callback.

    The bar appears with the first scored batch (an error before that shows no empty bar), and
    its rate is tokens over wall time since the run began, the figure ``metrics.json`` reports.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.task = None

    def __enter__(self):
        if not self.enabled:
            return None
        import time

        t0 = time.perf_counter()

        def update(done: int, total: float | None) -> None:
            if self.bar is None:
                self._start()
            elapsed = time.perf_counter() - t0
            rate = f"{done / elapsed:,.0f} tok/s" if elapsed > 0 else ""
            total = max(total, done) if total else None
            self.bar.update(self.task, completed=done, total=total, rate=rate, tokens=plural(done, "token"))

        return update

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]eval"),
            BarColumn(),
            TextColumn("{task.fields[tokens]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task("eval", total=None, rate="", tokens="")

    def __exit__(self, *exc):
        if self.bar is not None:
            task = self.bar.tasks[0]
            if exc[0] is None:  # finished: fill the bar
                self.bar.update(task.id, total=max(task.completed, 1), completed=max(task.completed, 1))
            self.bar.stop()
        return False


def plural(n: int, word: str) -> str:
    """``"1 window"``, ``"2 windows"`` (with thousands separators)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _print_summary(result, paths: dict) -> None:
    """A per-layer table on stdout (CI of the cross-entropy; all CIs are in metrics.json) and the files."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    level = int(round(100 * result.meta.get("confidence", 0.95)))
    table = Table(
        title=f"{result.meta.get('model')}: {plural(result.n_tokens, 'token')}, {plural(result.n_windows, 'window')}",
        caption=f"nats; ± = {level}% CI of CE ({result.meta.get('ci')}); KL to final; top-1 accuracy; "
        "agree = top-1 equals the final layer's",
        box=box.SIMPLE_HEAD,
    )
    for col in ("layer", "CE", "±", "bits/byte", "KL", "entropy", "top-1", "agree"):
        table.add_column(col, justify="right", no_wrap=True)
    fmt = lambda v: f"{v:.3f}" if v == v else "n/a"  # noqa: E731
    for i, name in enumerate(result.layer_names):
        lo, hi = result.ci["ce"][i]
        row = [f"{result.ce[i]:.3f}", f"{(hi - lo) / 2:.3f}"]
        row += [fmt(getattr(result, m)[i]) for m in ("bits_per_byte", "kl_to_final", "entropy")]
        row += [f"{getattr(result, m)[i]:.1%}" for m in ("top1_accuracy", "top1_agreement")]
        table.add_row(name, *row)
    console = Console()
    console.print(table)
    tps = result.meta.get("tokens_per_s")
    if tps:
        console.print(f"{tps:,.0f} tokens/s over {result.meta.get('world_size', 1)} process(es)")
    for path in paths.values():
        console.print(f"wrote {path}")
