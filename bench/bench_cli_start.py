"""Benchmark: how long the CLI takes to answer ``--help``, a bad argument, a bad output path, a real
``lens demo`` and ``demo``, and how big the demo's output folder is (issue 21 item 9).

Each command runs ``--repeat`` times in a fresh process; the minimum wall and CPU (user + sys)
seconds are printed, CPU being the steadier figure on a shared machine. ``--src`` measures another
checkout (e.g. the main branch) in the same run, for a before/after ratio::

    .venv/bin/python bench/bench_cli_start.py --src /work/main/src --src src
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "lens --help": ["lens", "--help"],
    "bad argument": ["lens", "demo", "x", "--layers", "4x"],
    "bad output": ["lens", "demo", "x", "-o", "/proc/x.json"],
    "empty --target": ["lens", "demo", "x", "--target="],
    "bad --data (train-lens)": ["train-lens", "demo", "--data", "/nonexistent", "--out", "/tmp/x"],
    "lens demo": ["lens", "demo", "In the beginning God created", "-f", "json"],
}


def run(src: str, args: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one ``python -m logitscope ARGS`` with ``src`` on the path."""
    env = dict(os.environ, PYTHONPATH=src, HF_HUB_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "logitscope", *args], env=env, capture_output=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), sum(p.stat().st_size for p in files if p.suffix == ".html")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", help="a src/ folder to measure (repeatable; default: this one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-demo", action="store_true", help="skip the (slow) demo command")
    opts = ap.parse_args()
    srcs = opts.src or [str(Path(__file__).resolve().parents[1] / "src")]
    for src in srcs:
        print(f"== {src}")
        for name, args in COMMANDS.items():
            runs = [run(src, args) for _ in range(opts.repeat)]
            print(f"  {name:26} wall {min(w for w, _ in runs):6.2f} s   cpu {min(c for _, c in runs):6.2f} s")
        if not opts.no_demo:
            with tempfile.TemporaryDirectory() as tmp:
                wall, cpu = run(src, ["demo", "--out", tmp + "/d"])
                total, html = folder_size(Path(tmp) / "d")
                print(f"  {'demo':26} wall {wall:6.2f} s   cpu {cpu:6.2f} s   "
                      f"folder {total / 1e6:.1f} MB, of which HTML {html / 1e6:.2f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
