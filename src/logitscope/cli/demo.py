"""``logitscope demo``: the logit lens on the bundled demo model, written to heatmaps and a table."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import TRUNCATE_FIRST, check_out_dir, clean_errors, fail, load_scope


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the CLI."""
    app.command("demo")(demo)


def demo_prompts() -> list[dict]:
    """The held-out prompts shipped with the demo model: ``[{"prompt": ..., "target": ...}]``."""
    from ..loading import DEMO_DIR

    return json.loads((DEMO_DIR / "prompts.json").read_text(encoding="utf-8"))


def emergence(res, position: int = -1) -> int | None:
    """The first stream from which the tracked token stays top-1 up to the final layer, or ``None``."""
    ranks = res.tracked_ranks[0, :, position]
    if ranks[-1] != 0:
        return None
    row = len(ranks) - 1
    while row > 0 and ranks[row - 1] == 0:
        row -= 1
    return row


@clean_errors
def demo(
    out: Path = typer.Option(Path("logitscope-demo"), "--out", "-o", help="Directory for the figures and tables."),
    prompt: list[str] | None = typer.Option(
        None, "--prompt", "-p", help="Your own prompt(s) instead of the shipped ones."
    ),
    metric: str = typer.Option("entropy", "--metric", "-m", help="Heatmap colour: entropy|prob|target|rank|kl."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Top tokens kept per cell."),
    truncate: bool = TRUNCATE_FIRST,
) -> None:
    """Run the logit lens on the bundled demo model (offline) and write heatmaps (PNG + HTML) and tables."""
    from rich.console import Console

    from ..io.atomic import atomic_dir
    from ..render.metrics import get_metric
    from ..render.text import label
    from .lens import print_tables

    console = Console()
    metric = get_metric(metric).name
    if prompt is not None and any(not p.strip() for p in prompt):
        fail("--prompt is empty: give some text")
    check_out_dir(out, "--out")
    items = [{"prompt": p, "target": None} for p in prompt] if prompt else demo_prompts()
    scope = load_scope("demo")
    results = []
    for item in items:  # every result first: an error leaves no files at all
        track = [item["target"]] if item.get("target") else None
        results.append(scope.lens(item["prompt"], top_k=top_k, track=track, truncate=truncate))
    written = []
    with atomic_dir(out) as tmp:  # all files appear together, or none
        for i, (item, res) in enumerate(zip(items, results)):
            names = [f"lens_{i}.png", f"lens_{i}.html", f"lens_{i}.csv"]
            res.plot(tmp / names[0], metric=metric)
            res.plot(tmp / names[1], metric=metric, include_plotlyjs="directory")  # one plotly.min.js for all
            res.save(tmp / names[2])
            if item.get("target"):
                names.append(f"trajectory_{i}.png")
                res.plot_trajectory(-1, tmp / names[3])
            written += [out / name for name in names]
        written.append(out / "plotly.min.js")  # beside the pages, which load it offline
    print_tables(results, metric=metric, position=-1)
    console.rule("what the layers show")
    for item, res in zip(items, results):
        line = f"{label(item['prompt'], 50, space=None)!s} → top-1 {label(res.top_tokens[-1][-1][0])}"
        if item.get("target"):
            row = emergence(res)
            where = f"from layer {res.layer_names[row]} of {res.layer_names[-1]}" if row is not None else "never top-1"
            line += f"; {label(item['target'])} is top-1 {where}"
        console.print(line, highlight=False, markup=False)
    console.print(f"\nwrote {len(written)} files to {out.resolve()}:", highlight=False)
    for path in written:
        console.print(f"  {path}", highlight=False, markup=False, soft_wrap=True)  # a path is not cut
