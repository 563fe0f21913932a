#!/usr/bin/env python
"""Train the tuned lens shipped for the bundled demo model (``tuned="demo"``).

Training text: the demo model's own training chapters of the King James Bible (Debian package
``bible-kjv``; ``bible gen1:1-rev22:21``, or ``--corpus FILE`` holding that command's output),
split exactly as ``scripts/train_demo.py`` splits it (every 50th chapter held out). The lens is
evaluated against the logit lens on the held-out chapters, and everything — command, settings,
per-step per-layer losses, held-out metrics — goes to ``training_log.json`` beside the lens.

Deterministic for a given ``--seed`` and ``--threads`` on the same machine and torch build::

    .venv/bin/python scripts/train_tuned_demo.py                # writes src/logitscope/tuned/demo/
    .venv/bin/python scripts/train_tuned_demo.py --eval-only --figure docs/img/tuned_lens_demo.png
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from kjv_corpus import chapter_text, load_corpus_text, parse_chapters, split_chapters

import logitscope
from logitscope.tuned import TunedLens, save_lens
from logitscope.tuned.api import LOG_FILE

OUT = Path(__file__).resolve().parents[1] / "src" / "logitscope" / "tuned" / "demo"


def heldout_table(scope, lens, docs, seq_len: int) -> dict:
    """Per-layer CE / bits-per-byte / KL of the logit and the tuned lens on the held-out chapters."""
    cmp = scope.evaluate(docs, seq_len=seq_len, batch_size=8, tuned=lens, ci="stderr")
    rows = []
    for i, name in enumerate(cmp.logit.layer_names):
        row = {"layer": name}
        for lens_name, res in (("logit", cmp.logit), ("tuned", cmp.tuned)):
            for m in ("ce", "bits_per_byte", "kl_to_final", "top1_accuracy"):
                row[f"{lens_name}_{m}"] = round(float(getattr(res, m)[i]), 4)
        rows.append(row)
    return {"n_tokens": cmp.logit.n_tokens, "n_bytes": cmp.logit.n_bytes, "seq_len": seq_len, "layers": rows}, cmp


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--corpus", default=None, help="saved output of `bible gen1:1-rev22:21` (default: run it)")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--tokens-per-step", type=int, default=2048)
    p.add_argument("--seq-len", type=int, default=128, help="the demo model was trained on 128-token windows")
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-only", action="store_true", help="evaluate the lens in --out; do not train")
    p.add_argument("--figure", type=Path, default=None, help="also draw the held-out comparison here (PNG)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    chapters = parse_chapters(load_corpus_text(args.corpus))
    train, held = split_chapters(chapters)
    train_docs = [chapter_text(c[2]) for c in train]
    held_docs = [chapter_text(c[2]) for c in held]
    scope = logitscope.load("demo", device="cpu", dtype="float32")
    log_path = args.out / LOG_FILE
    if args.eval_only:
        lens = TunedLens.load(args.out, scope=scope)
        log = json.loads(log_path.read_text())
    else:
        t0 = time.perf_counter()
        lens = scope.train_lens(
            train_docs, steps=args.steps, tokens_per_step=args.tokens_per_step, seq_len=args.seq_len,
            lr=args.lr, seed=args.seed, batch_size=16, save_every=0, progress=True,
        )  # fmt: skip
        log = dict(lens.training_log)
        log.update(
            command="python scripts/train_tuned_demo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            corpus="King James Bible, the demo model's training chapters (every 50th chapter held out)",
            train_chapters=len(train),
            heldout_chapters=len(held),
            threads=args.threads,
            torch=torch.__version__,
            platform=platform.platform(),
            train_seconds=round(time.perf_counter() - t0, 1),
        )
        save_lens(lens, args.out, extra={LOG_FILE: json.dumps(log, indent=1) + "\n"})  # before the evaluation
    table, cmp = heldout_table(scope, lens, held_docs, args.seq_len)
    log["heldout"] = table
    save_lens(lens, args.out, extra={LOG_FILE: json.dumps(log, indent=1) + "\n"})
    for row in table["layers"]:
        print(
            f"{row['layer']:>6}  CE logit {row['logit_ce']:.3f} tuned {row['tuned_ce']:.3f}   "
            f"KL logit {row['logit_kl_to_final']:.3f} tuned {row['tuned_kl_to_final']:.3f}"
        )
    if args.figure is not None:
        from logitscope.io.atomic import atomic_file

        with atomic_file(args.figure) as tmp:
            cmp.plot().savefig(tmp, dpi=120, bbox_inches="tight")
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
