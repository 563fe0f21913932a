"""Benchmark: the sub-layer lens (``sublayers=True``) against the plain lens, in one run.

``sublayers=True`` projects 2L+1 rows instead of L+1, so it should cost at most about twice the
plain lens; the target is ≤ 2.1×. Both run on the same model and input, interleaved, best of
``--repeat`` runs each (after a warm-up), so machine noise hits both alike. Before timing, the
block rows of the sub-layer lens are checked against the plain lens (same numbers).

    .venv/bin/python bench/bench_sublayer.py                      # the demo model, 256 tokens
    .venv/bin/python bench/bench_sublayer.py --model gpt2-small --tokens 512

``--model gpt2-small`` builds a random-init GPT-2-small shape (12 blocks, d 768, vocab 50257)
in code, so the head dominates as it does on real models.
"""

from __future__ import annotations

import argparse
import time


def build(name: str, threads: int):
    import torch

    import logitscope

    torch.set_num_threads(threads)
    if name == "demo":
        return logitscope.load("demo", device="cpu", dtype="float32")
    if name == "gpt2-small":
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024))
        return logitscope.Scope(model.eval(), name="gpt2-small (random init)")
    return logitscope.load(name, device="cpu", dtype="float32")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo", help="demo, gpt2-small (random init) or a model path")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=float, default=2.1, help="fail (exit 1) above this ratio")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    scope = build(args.model, args.threads)
    V = scope.parts.vocab_size
    ids = torch.randint(0, V, (args.tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    plain = scope.lens(ids)
    sub = scope.lens(ids, sublayers=True)
    blocks = [sub.layer_names.index(n) for n in plain.layer_names]
    np.testing.assert_allclose(sub.entropy[blocks], plain.entropy, atol=1e-5)
    np.testing.assert_array_equal(sub.top_ids[blocks], plain.top_ids)
    times: dict[str, list[float]] = {"plain": [], "sublayers": []}
    for _ in range(args.repeat):
        for key, kw in (("plain", {}), ("sublayers", {"sublayers": True})):
            t0 = time.perf_counter()
            scope.lens(ids, **kw)
            times[key].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["sublayers"] / best["plain"]
    L = scope.n_layers
    print(f"model {scope.name}: {L} blocks, vocab {V}, {args.tokens} tokens, {args.threads} thread(s)")
    print(f"plain lens      ({L + 1:3d} rows): {best['plain'] * 1e3:8.1f} ms  (best of {args.repeat})")
    print(f"sublayers=True  ({2 * L + 1:3d} rows): {best['sublayers'] * 1e3:8.1f} ms")
    print(f"ratio {ratio:.2f}x (rows ratio {(2 * L + 1) / (L + 1):.2f}x; target <= {args.limit}x)")
    if ratio > args.limit:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
