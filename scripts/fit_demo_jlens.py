#!/usr/bin/env python
"""Fit the Jacobian lens shipped for the bundled demo model (``jacobian="demo"``), and measure it.

Prompts: the demo model's own training chapters of the King James Bible (Debian package
``bible-kjv``; ``bible gen1:1-rev22:21``, or ``--corpus FILE`` holding that command's output),
split exactly as ``scripts/train_demo.py`` splits it (every 50th chapter held out), in a seeded
random order; each chapter is one prompt (BOS + its first 127 tokens, the published rule). The
fit checkpoints every ``--save-every`` prompts and ``--resume`` continues it (bit-identically);
resuming with a smaller ``--prompts`` finishes at once with the prompts already fitted.

Then ``--eval``: per-layer KL to the final layer, cross-entropy and top-1 agreement with the final
layer of the logit, tuned and Jacobian lens on ``src/logitscope/demo_model/heldout.txt``, written
to ``metadata["heldout"]`` of the lens file and printed as the markdown table of
docs/jacobian_lens.md::

    .venv/bin/python scripts/fit_demo_jlens.py --prompts 48          # writes src/logitscope/jacobian/demo/lens.pt
    .venv/bin/python scripts/fit_demo_jlens.py --eval-only           # the table only
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from kjv_corpus import chapter_text, load_corpus_text, parse_chapters, split_chapters

import logitscope
from logitscope.jacobian import JacobianLens
from logitscope.jacobian.progress import FitProgress
from logitscope.tuned.format import unembed_hash

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "logitscope" / "jacobian" / "demo" / "lens.pt"
HELDOUT = ROOT / "src" / "logitscope" / "demo_model" / "heldout.txt"


def heldout_table(scope, lens, seq_len: int = 128) -> dict:
    """Per-layer KL(final ‖ layer), CE and top-1 agreement of the three lenses on heldout.txt."""
    cmp = scope.evaluate(HELDOUT, seq_len=seq_len, batch_size=8, tuned="demo", jacobian=lens, ci="stderr")
    rows = []
    for i, name in enumerate(cmp.logit.layer_names):
        row = {"layer": name}
        for key in ("logit", "tuned", "jacobian"):
            res = getattr(cmp, key)
            row[f"{key}_kl"] = round(float(res.kl_to_final[i]), 4)
            row[f"{key}_ce"] = round(float(res.ce[i]), 4)
            row[f"{key}_top1"] = round(float(res.top1_agreement[i]), 4)
        rows.append(row)
    return {
        "file": "src/logitscope/demo_model/heldout.txt",
        "n_tokens": cmp.logit.n_tokens,
        "seq_len": seq_len,
        "layers": rows,
    }


def markdown(table: dict) -> str:
    head = "| row | KL logit | KL tuned | KL J-lens | CE logit | CE tuned | CE J-lens | top-1 logit | top-1 tuned | top-1 J-lens |"
    lines = [head, "|" + "---:|" * 10]
    for r in table["layers"]:
        cells = [r["layer"]]
        cells += [f"{r[f'{k}_kl']:.3f}" for k in ("logit", "tuned", "jacobian")]
        cells += [f"{r[f'{k}_ce']:.3f}" for k in ("logit", "tuned", "jacobian")]
        cells += [f"{r[f'{k}_top1']:.1%}" for k in ("logit", "tuned", "jacobian")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--corpus", default=None, help="saved output of `bible gen1:1-rev22:21` (default: run it)")
    p.add_argument("--prompts", type=int, default=48)
    p.add_argument("--dim-batch", type=int, default=64, help="memory only: the lens does not depend on it")
    p.add_argument("--save-every", type=int, default=4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-only", action="store_true", help="measure the lens in --out; do not fit")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    scope = logitscope.load("demo", device="cpu", dtype="float32")
    if args.eval_only:
        lens = JacobianLens.load(args.out, scope=scope)
    else:
        train, held = split_chapters(parse_chapters(load_corpus_text(args.corpus)))
        order = np.random.default_rng(args.seed).permutation(len(train))
        prompts = [chapter_text(train[i][2]) for i in order]
        ckpt = args.out.with_name(args.out.name + ".ckpt")
        t0 = time.perf_counter()
        with FitProgress(log_every=1) as progress:
            lens = scope.fit_jacobian_lens(
                prompts, n_prompts=args.prompts, dim_batch=args.dim_batch, checkpoint=ckpt, resume=args.resume,
                save_every=args.save_every, progress=progress,
                metadata=dict(
                    command="python scripts/fit_demo_jlens.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    corpus="King James Bible, the demo model's training chapters (every 50th held out), "
                    f"seeded order (seed {args.seed}), one prompt per chapter",
                    threads=args.threads, torch=torch.__version__, platform=platform.platform(),
                    wall_seconds=round(time.perf_counter() - t0, 1),
                ),
            )  # fmt: skip
        lens.metadata["wall_seconds"] = round(time.perf_counter() - t0, 1)
        lens.save(args.out)
        ckpt.unlink(missing_ok=True)
    table = heldout_table(scope, lens)
    lens.metadata["heldout"] = table
    lens.metadata.setdefault("unembed_hash", unembed_hash(scope.parts))  # serve attaches it to the demo model only
    lens.save(args.out)
    print(markdown(table))
    print(f"\n{lens.n_prompts} prompts; {table['n_tokens']} held-out tokens; {args.out}")


if __name__ == "__main__":
    main()
