"""A rich progress display for Jacobian-lens fits: prompts done, prompts/s, elapsed and ETA."""

from __future__ import annotations


def rate(record: dict) -> str:
    """``"3.2 prompts/s"`` over the prompts fitted by this run (a resumed run's earlier ones excluded)."""
    done = record["done"] - record["start"]
    elapsed = record["elapsed_s"]
    return f"{done / elapsed:.2f} prompts/s" if elapsed > 0 and done > 0 else ""


class FitProgress:
    """Context manager yielding the ``progress(record)`` callback of ``fit_jacobian_lens``.

    On a terminal: a bar over the prompts (when their number is known) with prompts/s and ETA on
    stderr; in a log file: one plain line every ``log_every`` prompts.
    """

    def __init__(self, enabled: bool = True, log_every: int = 10):
        self.enabled, self.log_every = enabled, log_every
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:

            def line(r: dict) -> None:
                if r["done"] % self.log_every == 0 or r["done"] == r["total"]:
                    total = f"/{r['total']}" if r["total"] else ""
                    console.print(f"prompt {r['done']}{total}  {rate(r)}  skipped {r['skipped']}", soft_wrap=True)

            return line
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]fit-jlens"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("skipped {task.fields[skipped]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console, transient=False,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task("fit", total=None, rate="", skipped=0)

        def update(r: dict) -> None:
            self.bar.update(task, completed=r["done"], total=r["total"], rate=rate(r), skipped=r["skipped"])

        return update

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
