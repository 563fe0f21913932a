"""Benchmark: tuned-lens training, logitscope's streaming loop vs a plain PyTorch loop, in one run.

* ours:  ``scope.train_lens`` — one forward with capture, then per chunk of positions and per
  layer: translate, project through the model's own tail, KL to the final layer, backward. At
  most one ``(chunk, vocab)`` logits tensor (and its gradient) is alive.
* plain: what one writes first — ``output_hidden_states=True``, all translated layers projected
  at once into an ``[L, tokens, vocab]`` float32 tensor through the same tail, one KL, one backward.

Both use the same optimiser (SGD, Nesterov 0.9, weight decay 1e-3, clip 1.0) on the same token
windows. Before timing, one step of each from a zero lens is compared (same updated weights).
Each method then runs in a fresh subprocess; a sampling thread records its peak RSS above the
RSS before training. Prints tokens/s, extra peak RSS and the ratios::

    .venv/bin/python bench/bench_tuned.py                       # the bundled demo model
    .venv/bin/python bench/bench_tuned.py --model gpt2-shape    # 12 blocks, d 768, vocab 50257 (random)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench_lens import PeakRSS


def load(model: str, threads: int):
    import torch

    import logitscope

    torch.set_num_threads(threads)
    if model == "demo":
        return logitscope.load("demo", device="cpu", dtype="float32")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    return logitscope.Scope(GPT2LMHeadModel(cfg), name="gpt2-shape")


def windows(scope, tokens_per_step: int, seq_len: int, steps: int):
    import numpy as np

    V = scope.parts.vocab_size
    return np.random.default_rng(0).integers(0, V, tokens_per_step * steps + seq_len + 1)


def plain_step(scope, W, b, opt, x):
    """One step of the plain loop: every layer's logits at once, (L, B·T, V) float32."""
    import torch

    parts = scope.parts
    L = parts.n_blocks
    with torch.no_grad():
        out = scope.model(x, output_hidden_states=True)
        hs = torch.stack(out.hidden_states[:L]).flatten(1, 2)  # (L, B·T, d)
        logp_f = out.logits.float().flatten(0, 1).log_softmax(-1)  # (B·T, V)
    opt.zero_grad()
    translated = hs + torch.einsum("lod,lnd->lno", W, hs) + b[:, None, :]
    z = parts.unembed(translated)  # (L, B·T, V): the [layers × tokens × vocab] tensor
    kl = (logp_f.exp() * (logp_f - z.log_softmax(-1))).sum(-1).mean(-1)  # (L,)
    kl.sum().backward()
    torch.nn.utils.clip_grad_norm_([W, b], 1.0)
    opt.step()
    return kl.detach()


def make_plain(scope):
    import torch

    parts = scope.parts
    d = scope.model.config.hidden_size
    W = torch.zeros(parts.n_blocks, d, d, requires_grad=True)
    b = torch.zeros(parts.n_blocks, d, requires_grad=True)
    opt = torch.optim.SGD([W, b], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    return W, b, opt


def run_method(method: str, model: str, threads: int, tokens_per_step: int, seq_len: int, steps: int) -> dict:
    import numpy as np
    import torch

    scope = load(model, threads)
    ids = windows(scope, tokens_per_step, seq_len, steps)
    for p in scope.model.parameters():
        p.requires_grad_(False)
    n = tokens_per_step // seq_len
    with PeakRSS() as rss:
        if method == "ours":
            lens = scope.train_lens(ids, steps=steps, tokens_per_step=tokens_per_step, seq_len=seq_len, batch_size=n)
            t = [s["elapsed_s"] for s in lens.training_log["steps"]]
            elapsed = t[-1] - t[0]  # the first step is a warm-up
        else:
            W, b, opt = make_plain(scope)
            starts = []
            for step in range(steps):
                starts.append(time.perf_counter())
                chunk = ids[step * n * seq_len : (step + 1) * n * seq_len]
                plain_step(scope, W, b, opt, torch.from_numpy(np.asarray(chunk).reshape(n, seq_len)))
            elapsed = time.perf_counter() - starts[1]
    return {"tokens_per_s": tokens_per_step * (steps - 1) / elapsed, "peak_mb": rss.peak}


def check_agreement(model: str, threads: int, seq_len: int) -> float:
    """One step of each from a zero lens on the same two windows: the updated weights agree."""
    import numpy as np
    import torch

    from logitscope.tuned.train import TrainConfig, train_lens

    scope = load(model, threads)
    ids = windows(scope, 2 * seq_len, seq_len, 1)[: 2 * seq_len + 1]  # exactly two windows
    cfg = TrainConfig(steps=1, tokens_per_step=2 * seq_len, seq_len=seq_len, batch_size=2)
    ours = train_lens(scope, ids, config=cfg)
    W, b, opt = make_plain(scope)
    x = torch.from_numpy(np.stack([ids[:seq_len], ids[seq_len : 2 * seq_len]]))
    for p in scope.model.parameters():
        p.requires_grad_(False)
    plain_step(scope, W, b, opt, x)
    diff = max(float((t.weight - W[i]).detach().abs().max()) for i, t in enumerate(ours.translators))
    scale = float(W.detach().abs().max())
    if not diff <= 1e-4 * max(scale, 1e-6) + 1e-7:
        raise SystemExit(f"ours and plain disagree after one step: max |ΔW| {diff:.3g} (|W| {scale:.3g})")
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["demo", "gpt2-shape"], default="demo")
    ap.add_argument("--tokens-per-step", type=int, default=2048)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="timed steps + 1 warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:
        res = run_method(args.method, args.model, args.threads, args.tokens_per_step, args.seq_len, args.steps)
        print(json.dumps(res))
        return
    diff = check_agreement(args.model, args.threads, min(args.seq_len, 64))
    print(f"one step from zero: ours and plain agree (max |ΔW| {diff:.2e})")
    got = {}
    for method in ("ours", "plain"):
        cmd = [sys.executable, __file__, "--method", method, "--model", args.model, "--threads", str(args.threads)]
        cmd += ["--tokens-per-step", str(args.tokens_per_step), "--seq-len", str(args.seq_len)]
        cmd += ["--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        got[method] = json.loads(out)
        print(
            f"{method:>5}: {got[method]['tokens_per_s']:8.0f} tokens/s, extra peak RSS {got[method]['peak_mb']:7.0f} MB"
        )
    o, p = got["ours"], got["plain"]
    print(
        f"{args.model}, {args.tokens_per_step} tokens/step ({args.seq_len}-token windows), {args.threads} threads: "
        f"speed ours/plain {o['tokens_per_s'] / p['tokens_per_s']:.2f}, memory plain/ours "
        f"{p['peak_mb'] / max(o['peak_mb'], 1):.1f}x"
    )


if __name__ == "__main__":
    main()
