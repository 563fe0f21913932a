"""Numerics: the kernel's statistics vs a float64 truth, next to a plain float32 ``log_softmax``.

Random float32 logits of a realistic scale (one "final" row and several "layer" rows per
position, the layers blurred copies of the final), identical for every method, so only the
arithmetic of the statistics differs:

* truth:   float64 ``log_softmax`` of the same float32 logits;
* plain:   float32 ``log_softmax``, ``H = -Σ p·log p``, ``KL = Σ p_f·(log p_f - log p_l)``;
* kernel:  :func:`logitscope.engine.kernel.stream_stats` (identity ``unembed``).

Prints the max absolute error of entropy, KL to final and target log-prob, and kernel÷plain:

    .venv/bin/python bench/bench_numerics.py --vocab 32000 50257 128256 262144

``--kernel-file`` measures another kernel.py instead (e.g. the one before the pairwise sums:
``git show 88bda05:src/logitscope/kernel.py > /tmp/kernel_bmm.py``).
"""

from __future__ import annotations

import argparse

import torch


def make_logits(vocab: int, positions: int = 8, layers: int = 6, seed: int = 0) -> torch.Tensor:
    """(layers + 1, positions, vocab) float32 logits; the last row is the final layer's.

    The final row is a sharp distribution (std 4 with a few boosted tokens); layer ``l`` mixes it
    with independent noise, sharper with depth, so entropies range from ~log V down to ~1 nat.
    """
    g = torch.Generator().manual_seed(seed)
    final = torch.randn(positions, vocab, generator=g, dtype=torch.float64) * 4.0
    top = torch.randint(0, vocab, (positions, 8), generator=g)
    final.scatter_add_(1, top, torch.full((positions, 8), 12.0, dtype=torch.float64))
    rows = []
    for i in range(layers):
        w = (i + 1) / (layers + 1)
        noise = torch.randn(positions, vocab, generator=g, dtype=torch.float64) * 3.0
        rows.append(w * final + (1 - w) * noise)
    return torch.stack([*rows, final]).float()


def targets_for(logits: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """(positions,) targets: half the final row's argmax, half random tokens."""
    P, V = logits.shape[1:]
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, V, (P,), generator=g)
    t[::2] = logits[-1, ::2].argmax(-1)
    return t


def truth(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """float64 statistics of the float32 logits."""
    logp = logits.double().log_softmax(-1)
    return _stats(logp, targets)


def plain(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a user writes: float32 log_softmax, then sums."""
    return {k: v.double() for k, v in _stats(logits.log_softmax(-1), targets).items()}


def _stats(logp: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    p = logp.exp()
    S = logp.shape[0]
    return {
        "entropy": -(p * logp).sum(-1),
        "kl_to_final": (p[-1] * (logp[-1] - logp)).sum(-1),
        "target_logprob": logp.gather(-1, targets.view(1, -1, 1).expand(S, -1, 1)).squeeze(-1),
    }


KERNEL_FILE: str | None = None  # set by --kernel-file


def kernel(logits: torch.Tensor, targets: torch.Tensor, chunk_rows: int = 512) -> dict[str, torch.Tensor]:
    """The kernel's statistics, the logits passed through an identity ``unembed``."""
    if KERNEL_FILE:
        import importlib.util

        spec = importlib.util.spec_from_file_location("kernel_under_test", KERNEL_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        stream_stats = module.stream_stats
    else:
        from logitscope.engine.kernel import stream_stats

    def unembed(h, out=None):
        return out.copy_(h) if out is not None else h.clone()

    st = stream_stats(logits, unembed, targets=targets, top_k=1, chunk_rows=chunk_rows)
    return {k: getattr(st, k).double() for k in ("entropy", "kl_to_final", "target_logprob")}


def errors(vocab: int, positions: int = 8, layers: int = 6, seed: int = 0) -> dict[str, dict[str, float]]:
    """Max absolute error per statistic: {"plain": {...}, "kernel": {...}}."""
    logits = make_logits(vocab, positions, layers, seed)
    tg = targets_for(logits, seed + 1)
    ref = truth(logits, tg)
    out = {}
    for name, fn in (("plain", plain), ("kernel", kernel)):
        got = fn(logits, tg)
        out[name] = {k: float((got[k] - ref[k]).abs().max()) for k in ref}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, nargs="+", default=[32000, 50257, 128256, 262144])
    ap.add_argument("--positions", type=int, default=16)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernel-file", help="a kernel.py to measure instead of logitscope.engine.kernel")
    args = ap.parse_args()
    global KERNEL_FILE
    KERNEL_FILE = args.kernel_file
    torch.set_num_threads(args.threads)
    print("max |error| vs float64 truth (nats), worst over seeds; ratio = kernel ÷ plain float32 log_softmax")
    print(f"{'vocab':>8} {'statistic':>15} {'plain f32':>11} {'kernel':>11} {'ratio':>7}")
    for V in args.vocab:
        worst: dict[str, dict[str, float]] = {"plain": {}, "kernel": {}}
        for seed in range(args.seeds):
            e = errors(V, args.positions, args.layers, seed)
            for m in worst:
                for k, v in e[m].items():
                    worst[m][k] = max(worst[m].get(k, 0.0), v)
        for k in worst["plain"]:
            a, b = worst["plain"][k], worst["kernel"][k]
            print(f"{V:8d} {k:>15} {a:11.2e} {b:11.2e} {b / a:7.2f}")


if __name__ == "__main__":
    main()
