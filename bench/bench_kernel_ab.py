"""A/B of two kernels in one process: floor, the lens with kernel A, the lens with kernel B, interleaved.

Same model and input as ``bench_lens.py`` (GPT-2-small shape, random init; ``--vocab``,
``--d-model``, ``--layers`` for other heads); the methods run in turn ``--repeat`` times, so a
shared machine's load hits them alike. ``--torch-path`` adds logitscope's kernel with its
compiled rows disabled (the fallback without a C compiler). The floor (one forward + the
projections into one reused buffer) is the strictest: timed at the Scope's ``chunk_size`` rows
per projection and at the lens's (whole positions, ``S·kernel.chunk_positions(S, chunk_size)``), the faster kept.
Prints lens÷floor per kernel (process CPU and wall time, median and min over repeats):

    PYTHONPATH=src .venv/bin/python bench/bench_kernel_ab.py --kernel-a bench/_kernel_before.py --tokens 512
    git show 88bda05:src/logitscope/kernel.py > /tmp/kernel_bmm.py   # the bmm kernel before that
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import time


def load_kernel(path: str | None):
    """``stream_stats`` of the kernel.py at ``path`` (``None``: logitscope's own)."""
    if path is None:
        from logitscope.engine.kernel import stream_stats

        return stream_stats
    spec = importlib.util.spec_from_file_location("kernel_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.stream_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel-a", help="kernel.py for A (default: logitscope's)")
    ap.add_argument("--kernel-b", help="kernel.py for B (default: logitscope's)")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--torch-path", action="store_true", help="also time logitscope's kernel without its C rows")
    args = ap.parse_args()

    import torch
    from bench_lens import build

    import logitscope
    import logitscope.engine.kernel_native as native
    import logitscope.engine.run as engine_run
    from logitscope.engine.capture import run_captured
    from logitscope.engine.kernel import chunk_positions

    V, d, L = args.vocab, args.d_model, args.layers
    model = build(L, V, args.threads, d_model=d, n_positions=args.tokens)
    ids = torch.randint(0, V, (1, args.tokens), generator=torch.Generator().manual_seed(1))
    scope = logitscope.Scope(model, self_check=False)
    kernels = {"A": load_kernel(args.kernel_a), "B": load_kernel(args.kernel_b)}
    S = L + 1
    steps = sorted({scope.chunk_size, S * chunk_positions(S, scope.chunk_size)})  # the floor's chunkings
    z_buf = torch.empty(max(steps), V)
    real_load = native.load

    def floor_at(step):
        def floor():
            with torch.inference_mode():
                rows = list(range(S))
                cap = run_captured(model, scope.parts.blocks, rows, input_ids=ids, use_cache=False)
                streams = torch.stack([cap[r][0] for r in rows]).reshape(-1, d)
                for i in range(0, streams.shape[0], step):
                    h = streams[i : i + step]
                    scope.parts.unembed(h, out=z_buf[: h.shape[0]])

        return floor

    def lens_with(kernel, use_native=True):
        def run():
            engine_run.stream_stats = kernel
            native.load = real_load if use_native else (lambda: None)
            try:
                scope.lens(ids[0], top_k=5)
            finally:
                native.load = real_load

        return run

    methods = {f"floor{step}": floor_at(step) for step in steps}
    methods.update(A=lens_with(kernels["A"]), B=lens_with(kernels["B"]))
    if args.torch_path:
        methods["torch"] = lens_with(load_kernel(None), use_native=False)
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in methods}
    for _ in range(args.repeat):
        for name, fn in methods.items():
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append((time.process_time() - c0, time.perf_counter() - t0))
    floors = [k for k in methods if k.startswith("floor")]
    for stat, agg in (("median", statistics.median), ("min", min)):
        cpu = {k: agg([c for c, _ in v]) for k, v in times.items()}
        wall = {k: agg([w for _, w in v]) for k, v in times.items()}
        cpu["floor"], wall["floor"] = min(cpu[k] for k in floors), min(wall[k] for k in floors)
        print(f"{stat} of {args.repeat}:")
        for k in methods:
            print(f"  {k:9s} cpu {cpu[k]:7.2f} s  wall {wall[k]:7.2f} s")
        for k in [k for k in methods if k not in floors]:
            print(
                f"  T={args.tokens} V={V} d={d} lens÷floor {k}: "
                f"cpu {cpu[k] / cpu['floor']:.3f} wall {wall[k] / wall['floor']:.3f}"
            )


if __name__ == "__main__":
    main()
