"""Benchmark: ``logitscope eval`` (streaming kernel) vs the naive per-layer way, tokens/s.

GPT-2-small shape (12 blocks, d=768, vocab 50257, random init), ``--windows`` windows of
``--seq-len`` tokens (a random token stream: the cost does not depend on the text).

* naive: per window ``output_hidden_states=True``; per stream the full ``(T, V)`` float32 logits
  (final norm applied correctly: HF's last hidden state is already normed), ``log_softmax``,
  ``gather`` for CE, ``exp`` for entropy and KL to the final layer, ``argmax`` for top-1.
* ours: ``scope.evaluate(stream, seq_len=..., batch_size=...)`` (same five statistics, per window).

Each method runs in a fresh subprocess so its peak RSS (minus the RSS after building the model) is
its own; the parent prints tokens/s, the ratio and the largest per-layer metric difference:

    .venv/bin/python bench/bench_eval.py --windows 2 --seq-len 1024   # ~2 min on a shared 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_method(method: str, args) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    import logitscope

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=args.layers, n_embd=768, n_head=12, vocab_size=args.vocab, n_positions=args.seq_len)
    model = GPT2LMHeadModel(cfg).eval()
    n = args.windows * args.seq_len + 1
    stream = torch.randint(0, args.vocab, (n,), generator=torch.Generator().manual_seed(1))
    scope = logitscope.Scope(model, self_check=False)
    base = rss_mb()

    def naive(stream, seq_len):
        totals = torch.zeros(5, args.layers + 1, dtype=torch.float64)
        with torch.inference_mode():
            for s in range(0, len(stream) - 1, seq_len):
                x, y = stream[s : s + seq_len], stream[s + 1 : s + seq_len + 1]
                hs = model(x[None], output_hidden_states=True, use_cache=False).hidden_states
                L = len(hs) - 1

                def logp_of(i, hs=hs, L=L):
                    h = hs[i][0] if i == L else model.transformer.ln_f(hs[i][0])  # hs[L] is already normed
                    return model.lm_head(h).float().log_softmax(-1)  # (T, V)

                lp_f = logp_of(L)
                p_f = lp_f.exp()
                top_f = lp_f.argmax(-1)
                for i in range(L + 1):
                    lp = lp_f if i == L else logp_of(i)
                    top = lp.argmax(-1)
                    totals[0, i] -= lp.gather(-1, y[:, None]).sum().double()
                    totals[1, i] += (p_f * (lp_f - lp)).sum().double()
                    totals[2, i] -= (lp.exp() * lp).sum().double()
                    totals[3, i] += (top == top_f).sum()
                    totals[4, i] += (top == y).sum()
        return (totals / (len(stream) - 1)).numpy()

    def ours(stream, seq_len):
        r = scope.evaluate(stream, seq_len=seq_len, batch_size=args.batch_size, n_boot=10)
        return [r.ce, r.kl_to_final, r.entropy, r.top1_agreement, r.top1_accuracy]

    fn = {"naive": naive, "ours": ours}[method]
    fn(stream[:33], 32)  # warm-up (allocator, threads)
    t0 = time.perf_counter()
    metrics = fn(stream, args.seq_len)
    seconds = time.perf_counter() - t0
    return {
        "method": method,
        "tokens": n - 1,
        "seconds": seconds,
        "tokens_per_s": (n - 1) / seconds,
        "extra_peak_rss_mb": rss_mb() - base,
        "metrics": [list(map(float, m)) for m in metrics],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=1, help="windows per forward for ours")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:  # child process
        print(json.dumps(run_method(args.method, args)))
        return
    res = {}
    for method in ("ours", "naive"):
        cmd = [sys.executable, __file__, "--method", method, "--windows", str(args.windows)]
        cmd += ["--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size), "--layers", str(args.layers)]
        cmd += ["--vocab", str(args.vocab), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = res[method] = json.loads(out)
        print(
            f"{method:6s} {r['tokens']:6d} tokens {r['seconds']:8.2f} s {r['tokens_per_s']:9.1f} tok/s   "
            f"extra peak RSS {r['extra_peak_rss_mb']:7.0f} MB",
            flush=True,
        )
    diff = max(abs(a - b) for ma, mb in zip(res["ours"]["metrics"], res["naive"]["metrics"]) for a, b in zip(ma, mb))
    speedup = res["ours"]["tokens_per_s"] / res["naive"]["tokens_per_s"]
    print(f"\nours / naive tokens/s: {speedup:.2f}x   max per-layer metric difference: {diff:.2e}")


if __name__ == "__main__":
    main()
