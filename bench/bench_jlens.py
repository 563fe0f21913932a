#!/usr/bin/env python
"""Jacobian-lens fit cost per prompt against its theoretical count: 1 forward + ceil(d / dim_batch) backward passes.

For each ``dim_batch`` this measures, in one process and on the same prompts:

* ``fit``: wall time of ``scope.fit_jacobian_lens`` per prompt;
* ``fwd``: one forward of the prompt replicated ``dim_batch`` times, recording the graph from the
  earliest source row (what the estimator runs once per prompt);
* ``bwd``: one reverse-mode VJP through that graph to every source row (run ``ceil(d / dim_batch)``
  times per prompt);
* ``theory = fwd + ceil(d / dim_batch) · bwd`` and ``fit / theory`` (≈ 1: no hidden work);
* ``fit / plain``: the fit in units of one plain inference forward of the prompt.

Medians of ``--repeat`` runs. Usage::

    PYTHONPATH=src .venv/bin/python bench/bench_jlens.py                      # demo model, 2 prompts
    PYTHONPATH=src .venv/bin/python bench/bench_jlens.py --dim-batch 8,32,256 --max-seq-len 128
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

import logitscope
from logitscope.arch.weights import frozen
from logitscope.engine.capture import run_captured
from logitscope.jacobian.prompts import iter_prompts

HELDOUT = Path(__file__).resolve().parents[1] / "src" / "logitscope" / "demo_model" / "heldout.txt"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--dim-batch", default="8,64")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    scope = logitscope.load(args.model, device="cpu", dtype="float32")
    parts = scope.parts
    L, d = parts.n_blocks, scope.model.config.hidden_size
    prompts = list(iter_prompts(str(HELDOUT), scope, args.max_seq_len))[: args.prompts]
    ids = prompts[0]
    T = len(ids)
    rows = [*range(1, L), L]  # sources 0..L-2 (rows 1..L-1), target L-1 (row L)
    with torch.inference_mode():
        plain = median_time(lambda: scope.model(input_ids=torch.tensor([ids]), use_cache=False), args.repeat)
    out = []
    print(f"{args.model}: d={d}, L={L}, T={T} tokens, {len(prompts)} prompt(s), {args.threads} threads")
    print(
        f"{'dim_batch':>9} {'passes':>6} {'fwd s':>8} {'bwd s':>8} {'theory s':>9} {'fit s':>8} {'fit/theory':>10} {'fit/plain':>9}"
    )
    for db in [int(x) for x in args.dim_batch.split(",")]:
        x = torch.tensor([ids]).expand(db, T)
        n_pass = math.ceil(d / db)
        with frozen(scope.model):
            fwd = median_time(
                lambda x=x: run_captured(scope.model, parts.blocks, rows, graph_from=1, input_ids=x, use_cache=False),
                args.repeat,
            )
            cap = run_captured(scope.model, parts.blocks, rows, graph_from=1, input_ids=x, use_cache=False)
            cot = torch.zeros_like(cap[L])
            for b in range(min(db, d)):
                cot[b, 16 : T - 1, b] = 1.0  # one-hot e_b at every valid position, as the estimator
            sources = [cap[r] for r in rows[:-1]]
            bwd = median_time(
                lambda cap=cap, cot=cot, sources=sources: torch.autograd.grad(
                    cap[L], sources, grad_outputs=cot, retain_graph=True
                ),
                args.repeat,
            )
            del cap, cot, sources
        t0 = time.perf_counter()
        scope.fit_jacobian_lens(prompts, max_seq_len=args.max_seq_len, dim_batch=db)
        fit = (time.perf_counter() - t0) / len(prompts)
        theory = fwd + n_pass * bwd
        row = dict(dim_batch=db, passes=n_pass, fwd_s=fwd, bwd_s=bwd, theory_s=theory, fit_s=fit, plain_s=plain)
        row.update(fit_over_theory=fit / theory, fit_over_plain=fit / plain)
        out.append(row)
        print(
            f"{db:>9} {n_pass:>6} {fwd:>8.3f} {bwd:>8.3f} {theory:>9.2f} {fit:>8.2f} {fit / theory:>10.2f} {fit / plain:>9.0f}"
        )
    print(f"plain inference forward of one prompt: {plain:.4f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(dict(model=args.model, d=d, L=L, T=T, rows=out), indent=1) + "\n")


if __name__ == "__main__":
    main()
