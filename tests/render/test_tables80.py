"""Tables on an 80-column terminal: balanced pages whose caption fits, padding
on the last column, and legends (lens, embed, diff) that wrap only between items."""

from __future__ import annotations

import re

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from logitscope.cli import app
from logitscope.render.table import position_pages

PROMPT = "Blessed be the LORD God, the God of"


def run(*args, width: int = 80) -> list[str]:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": str(width)})
    assert res.exit_code == 0, (res.output, res.exception)
    lines = res.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width, max(lines, key=cell_len)
    return lines


def test_pages_are_balanced():
    assert position_pages([5] * 9, 8 * 8) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    for widths, room in (([3, 7, 4, 9, 2, 5, 6, 8, 3], 40), ([4] * 20, 30), ([10, 1, 1, 1], 20)):
        pages = position_pages(widths, room)
        assert [j for p in pages for j in p] == list(range(len(widths)))
        assert all(sum(widths[j] + 3 for j in p) <= room or len(p) == 1 for p in pages)
        sizes = [len(p) for p in pages]
        greedy_last = len(pages) > 1 and sizes[-1] == 1
        assert not greedy_last or widths[-1] + 3 + sum(widths[j] + 3 for j in pages[-2]) > room


@pytest.mark.parametrize("width", [80, 60])
def test_lens_table_at_narrow_widths(width):
    lines = run("lens", "demo", PROMPT, "-f", "table", width=width)
    captions = [line.strip() for line in lines if line.strip().startswith("position")]
    assert len(captions) >= 2 and all(re.fullmatch(r"positions? \d+(–\d+)? of 9", c) for c in captions), captions
    body = [line for line in lines if line.startswith("│")]
    assert body and all(line.endswith(" │") for line in body)  # the last column keeps its padding
    assert all(line.startswith("│ ") for line in body)  # so does the first
    legend = [line for line in lines if "n/a" in line or "colour:" in line]
    assert any("dim italic, uncoloured: n/a" in line for line in legend), legend


def test_embed_never_splits_a_neighbour_from_its_score():
    lines = run("embed", "demo", "In the beginning God")
    cells = [line.split("│")[-2].strip() for line in lines if line.startswith("│")]
    assert cells and not any(re.match(r"^\d\.\d{3}", c) for c in cells), cells
    assert all(re.fullmatch(r"(\S+ -?\d\.\d{3}(  |$))+", c) for c in cells if c), cells


def test_diff_summary_never_splits_a_pair():
    lines = run("diff", "demo", "In the beginning God created", "--against", "And God said")
    start = next(i for i, line in enumerate(lines) if line.startswith("mean KL"))
    text = lines[start].removeprefix("mean KL(A ‖ B) by layer: ")
    pairs = [p for line in [text, *lines[start + 1 :]] for p in line.split(", ") if p]
    assert all(re.fullmatch(r"\S+ \d+\.\d{3}", p) for p in pairs), pairs
    assert [p.split()[0] for p in pairs][:2] == ["embed", "1"]
