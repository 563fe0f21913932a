"""Per-phase profile of the lens: where the CPU time goes at each length T and vocabulary V.

GPT-2-small-shaped random-init model (12 blocks, d=768; ``--d-model``), one sequence of T tokens,
the full lens (top-5, entropy, KL to final, target prob and rank for every layer × position).
One process, ``--threads`` threads, CPU time of the whole process (``time.process_time``: all
threads, so the fused C rows, which run on the kernel's own pool threads, and every torch/MKL
worker count; ``time.thread_time`` saw only the calling thread: half a 2-thread matmul and none
of the C rows), every piece repeated ``--repeat`` times interleaved and the median kept, so the shared machine's load
hits all pieces alike. Phases, in seconds for the whole lens at that T:

* capture:    the forward with hooks, as ``Scope.lens`` runs it (measured at T);
* copies:     packing the captured streams into (S, T, d) (lens.py) and the kernel's row gathers;
* projection: ``unembed`` of every (stream, position) row, in the floor's chunks and in each
  kernel's (the old kernel projects the final row alone, ~chunk/12 rows at a time);
* top-k, exp/sum, entropy, KL, ranks, store: the old kernel's statistics, op for op on one real
  logits chunk (``bench/_kernel_before.py``), scaled to the T·13 rows; "tracked" is per tracked
  token (these replicas leave out the old kernel's per-call buffer set-up, ~144 MiB first-touched
  per call at V = 50k; "stats (measured)" includes it); the new kernel's statistics fuse them
  ("fused", ``kernel_native.py``; "torch": its fallback without a compiler). Every "stats" figure
  is measured as ``stream_stats`` over all 13·T rows fed cached logits, minus the same copies.
* The floor projects into one reused buffer (no page faults), the strictest floor.

Per-row costs are constant, so every phase but the capture scales exactly with T: the
overhead cannot grow with T, and does not in this profile; see docs/numerics.md for why it
seemed to (the forward's share, attention, grows like T², which *shrinks* the ratio).

    PYTHONPATH=src .venv/bin/python bench/profile_kernel.py --tokens 512 1024 4096 --vocab 50257 128256 262144
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch


def _old_kernel():
    path = Path(__file__).with_name("_kernel_before.py")
    spec = importlib.util.spec_from_file_location("kernel_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return statistics.median(out)


def _interleaved(fns: dict, repeat: int, warm: bool = True) -> dict[str, float]:
    """Median thread CPU time of each function, run in turn ``repeat`` times (after a warm-up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values() if warm else ():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def old_phases(old, z_final: torch.Tensor, z_other: torch.Tensor, tgt: torch.Tensor, g: int, top_k: int) -> dict:
    """The old kernel's statistics of one chunk (final rows, then n*g other rows), op by op."""
    n, V = z_final.shape
    buf = old._Buffers(n * g, V, "cpu")
    zf, zo = z_final.clone(), z_other.clone()
    ef, eo = torch.empty_like(zf), torch.empty_like(zo)
    tg_o = tgt.repeat_interleave(g)

    def topk():
        zf.copy_(z_final), zo.copy_(z_other)  # (the copies are measured and subtracted)
        topk.f, topk.o = zf.topk(top_k, dim=-1), zo.topk(top_k, dim=-1)

    def copy_only():
        zf.copy_(z_final), zo.copy_(z_other)

    def expsum():
        zf.sub_(topk.f[0][:, :1]), zo.sub_(topk.o[0][:, :1])
        torch.exp(zf, out=ef), torch.exp(zo, out=eo)
        expsum.sf, expsum.so = ef.sum(-1), eo.sum(-1)

    def ranks():
        for z, t in ((zf, tgt), (zo, tg_o)):
            zt = z.gather(1, t.clamp(min=0).unsqueeze(1))
            old._rank(z, zt, buf)

    def tracked():  # one tracked token
        for z in (zf, zo):
            zk = z.index_select(1, tgt[:1].clamp(min=0))
            old._rank(z, zk, buf)

    def kl():
        ez = torch.mul(zo.view(n, g, V), ef.unsqueeze(1), out=eo.view(n, g, V))
        ez.sum(-1)

    def entropy():
        torch.mul(ef, zf, out=zf).sum(-1)  # the old kernel: into z for the final rows...
        torch.mul(eo, zo, out=eo).sum(-1)  # ...into e for the others

    def store():
        res = {
            "entropy": torch.empty(g + 1, n),
            "top_ids": torch.empty(g + 1, n, top_k, dtype=torch.long),
            "top_probs": torch.empty(g + 1, n, top_k),
        }
        out = {"entropy": expsum.so, "top_ids": topk.o[1], "top_probs": topk.o[0]}
        old._store(res, out, slice(0, g), 0, n, n, g)

    t: dict[str, list[float]] = {
        k: [] for k in ("copy", "top-k", "exp/sum", "ranks", "tracked", "KL", "entropy", "store")
    }
    for _ in range(3):  # in the kernel's order (each step needs the state the previous one left)
        for name, fn in (
            ("copy", copy_only),
            ("top-k", topk),
            ("exp/sum", expsum),
            ("ranks", ranks),
            ("tracked", tracked),
            ("KL", kl),
            ("entropy", entropy),
            ("store", store),
        ):
            t0 = time.process_time()
            fn()
            t[name].append(time.process_time() - t0)
    med = {k: statistics.median(v) for k, v in t.items()}
    med["top-k"] -= med.pop("copy")
    return med


@torch.inference_mode()
def profile(T: int, V: int, d: int, layers: int, repeat: int, top_k: int = 5) -> dict[str, dict[str, float]]:
    """Seconds per phase for the whole lens at (T, V): {"floor": ..., "old": ..., "new": ..., "torch": ...}."""
    from bench_lens import build

    import logitscope
    import logitscope.engine.kernel as kernel
    import logitscope.engine.kernel_native as native
    from logitscope.engine.capture import run_captured

    old = _old_kernel()
    model = build(layers, V, torch.get_num_threads(), d_model=d, n_positions=T)
    scope = logitscope.Scope(model, self_check=False)
    parts, S = scope.parts, layers + 1
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(1))
    rows = list(range(S))
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    chunk = scope.chunk_size
    cap = run_captured(model, parts.blocks, rows, **kw)
    streams = torch.stack([cap[r][0] for r in rows])  # (S, T, d)

    def capture():
        run_captured(model, parts.blocks, rows, **kw)

    def pack():  # engine/run.py real_rows: the captured rows into one position-major (T, S, d) buffer
        out = streams.new_empty(T, S, d).transpose(0, 1)
        for i, r in enumerate(rows):
            out[i, :T] = cap[r][0, :T]

    # one position chunk of each kernel; per-row costs are constant, so scale by rows
    n_new = min(T, kernel.chunk_positions(S, chunk))
    n_old = max(1, min(T, chunk // (S - 1)))
    x_new = streams.transpose(0, 1).contiguous()  # (T, S, d) as real_rows lays it out
    h_new = x_new[:n_new].view(-1, d)  # the new kernel's chunk: a view, no gather
    h_old_f = streams[S - 1, :n_old].contiguous()
    h_old_o = streams[: S - 1, :n_old].transpose(0, 1).reshape(-1, d)
    z_buf = torch.empty(max(chunk, n_new * S, n_old * (S - 1)), V)
    h_floor = streams.reshape(-1, d)[:chunk]

    def proj_floor():
        parts.unembed(h_floor, out=z_buf[: h_floor.shape[0]])  # the floor: logits into one reused buffer

    def proj_new():
        parts.unembed(h_new, out=z_buf[: h_new.shape[0]])

    def proj_old():
        parts.unembed(h_old_f, out=z_buf[:n_old])
        parts.unembed(h_old_o, out=z_buf[: h_old_o.shape[0]])

    def gather_rows():  # the old kernel's (stream, position) row gathers for one chunk
        torch.cat([streams[S - 1, :n_old], streams[: S - 1, :n_old].transpose(0, 1).reshape(-1, d)])

    pieces = _interleaved(
        {
            "capture": capture,
            "pack": pack,
            "floor": proj_floor,
            "new": proj_new,
            "old": proj_old,
            "gather": gather_rows,
        },
        repeat,
    )
    rows_total = S * T
    per = {"floor": h_floor.shape[0], "new": h_new.shape[0], "old": n_old * S}
    projection = {k: pieces[k] * rows_total / per[k] for k in per}

    # statistics on cached real logits of one chunk of positions
    with torch.inference_mode():
        z_all = parts.unembed(h_new).view(n_new, S, V)  # position-major, the final stream last
    tgt = torch.cat([ids[0, 1:], ids.new_full((1,), -1)])[:n_new].clone()  # -1: the last position has none

    table = z_all.reshape(-1, V).repeat(2, 1)[: max(chunk, S * n_new)]  # enough rows for any chunk

    def cached(h, out=None):  # unembed that copies cached logits: the statistics alone (+ a copy)
        src = table[: h.shape[0]]
        return out.copy_(src) if out is not None else src.clone()

    stats_in = z_all.new_empty(T, S, 1).transpose(0, 1)  # the kernel reads only shapes (and layout) here
    targets = torch.cat([ids[0, 1:], ids.new_full((1,), -1)])

    def run(kern, use_native):
        def fn():
            native.load = real_load if use_native else (lambda: None)
            try:
                kern.stream_stats(
                    stats_in, cached, targets=targets, top_k=top_k, chunk_rows=chunk, vocab_size=V, device="cpu"
                )
            finally:
                native.load = real_load

        return fn

    real_load = native.load

    def copies_only():  # the same copies in the same chunks, no statistics
        for r0 in range(0, S * T, S * n_new):
            r = min(S * n_new, S * T - r0)
            z_buf[:r].copy_(table[:r])

    st = _interleaved(
        {"copy": copies_only, "new": run(kernel, True), "torch": run(kernel, False), "old": run(old, True)},
        repeat,
        warm=False,
    )
    stats = {k: max(0.0, st[k] - st["copy"]) for k in ("new", "torch", "old")}
    ph = old_phases(old, z_all[:, -1].contiguous(), z_all[:, :-1].reshape(-1, V), tgt, S - 1, top_k)
    ph = {k: v * rows_total / (S * z_all.shape[0]) for k, v in ph.items()}
    copies_old = pieces["pack"] + pieces["gather"] * rows_total / (n_old * S)
    copies = pieces["pack"]  # the new kernel projects views of the packed buffer
    floor = pieces["capture"] + projection["floor"]
    out = {
        "floor": {"capture": pieces["capture"], "projection": projection["floor"], "total": floor},
        "old": {"capture": pieces["capture"], "copies": copies_old, "projection": projection["old"], **ph},
        "new": {"capture": pieces["capture"], "copies": copies, "projection": projection["new"], "fused": stats["new"]},
        "torch": {
            "capture": pieces["capture"],
            "copies": copies,
            "projection": projection["new"],
            "stats": stats["torch"],
        },
    }
    out["old"]["stats (measured)"] = stats["old"]
    for k in ("old", "new", "torch"):
        stat_keys = [x for x in out[k] if x not in ("capture", "copies", "projection", "tracked", "stats (measured)")]
        out[k]["total"] = (
            out[k]["capture"] + out[k]["copies"] + out[k]["projection"] + sum(out[k][x] for x in stat_keys)
        )
        out[k]["÷ floor"] = out[k]["total"] / floor
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[512, 1024, 4096])
    ap.add_argument("--vocab", type=int, nargs="+", default=[50257, 128256, 262144])
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU seconds (process time, all threads, {args.threads} thread(s), median of {args.repeat}) for the whole lens"
    )
    for V in args.vocab:
        for T in args.tokens:
            prof = profile(T, V, args.d_model, args.layers, args.repeat)
            print(f"\nT={T} V={V} d={args.d_model} layers={args.layers}")
            for method, phases in prof.items():
                cells = "  ".join(f"{k} {v:.3f}" for k, v in phases.items())
                print(f"  {method:6s} {cells}", flush=True)


if __name__ == "__main__":
    main()
