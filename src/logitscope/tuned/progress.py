"""A rich progress display for tuned-lens training: steps, tokens/s, ETA and the KL of every layer."""

from __future__ import annotations

from ..engine.rows import row_name


def format_kl(kl: list[float]) -> str:
    """``embed 3.05  1 1.87  2 1.60 …`` (nats per token)."""
    return "  ".join(f"{row_name(i)} {v:.3f}" for i, v in enumerate(kl))


class TrainProgress:
    """Context manager yielding the ``progress(record)`` callback of :func:`~logitscope.tuned.train.train_lens`.

    Shows a bar over the steps with tokens/s and ETA on stderr, and under it the mean
    KL(final ‖ layer) of the last step for every translated layer.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:  # a log file: one plain line per step instead of a live bar
            return lambda r: console.print(
                f"step {r['step']}/{r['steps']}  lr {r['lr']:.4f}  KL: {format_kl(r['kl'])}", soft_wrap=True
            )
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]train-lens"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("\n  KL(final ‖ layer), nats: {task.fields[kl]}"),
            console=console, transient=False,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task("train", total=None, rate="", kl="")

        def update(record: dict) -> None:
            elapsed = record["elapsed_s"]
            done = record["step"] - record["start"]
            tokens = record["tokens"] * done / max(1, record["step"])
            rate = f"{tokens / elapsed:,.0f} tok/s" if elapsed > 0 else ""
            self.bar.update(
                task, completed=record["step"], total=record["steps"], rate=rate, kl=format_kl(record["kl"])
            )

        return update

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
