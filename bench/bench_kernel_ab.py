"""A/B of two kernels in one process: floor, the lens with kernel A, the lens with kernel B, interleaved.

Same model and input as ``bench_lens.py`` (GPT-2-small shape, random init); the three methods
run in turn ``--repeat`` times, so a shared machine's load hits them alike. Prints lens÷floor
for both kernels (CPU and wall time, min over repeats):

    git show 88bda05:src/logitscope/kernel.py > /tmp/kernel_bmm.py
    .venv/bin/python bench/bench_kernel_ab.py --kernel-a /tmp/kernel_bmm.py --tokens 512
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
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
    args = ap.parse_args()

    import torch
    from bench_lens import build

    import logitscope
    import logitscope.engine.run as engine_run
    from logitscope.engine.capture import run_captured

    model = build(12, 50257, args.threads)
    ids = torch.randint(0, 50257, (1, args.tokens), generator=torch.Generator().manual_seed(1))
    scope = logitscope.Scope(model, self_check=False)
    kernels = {"A": load_kernel(args.kernel_a), "B": load_kernel(args.kernel_b)}

    def floor():
        with torch.inference_mode():
            rows = list(range(13))
            cap = run_captured(model, scope.parts.blocks, rows, input_ids=ids, use_cache=False)
            streams = torch.stack([cap[r][0] for r in rows]).reshape(-1, 768)
            for i in range(0, streams.shape[0], scope.chunk_size):
                scope.parts.unembed(streams[i : i + scope.chunk_size])

    def lens_with(kernel):
        def run():
            engine_run.stream_stats = kernel
            scope.lens(ids[0], top_k=5)

        return run

    methods = {"floor": floor, "A": lens_with(kernels["A"]), "B": lens_with(kernels["B"])}
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in methods}
    for _ in range(args.repeat):
        for name, fn in methods.items():
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append((time.process_time() - c0, time.perf_counter() - t0))
    cpu = {k: min(c for c, _ in v) for k, v in times.items()}
    wall = {k: min(w for _, w in v) for k, v in times.items()}
    for k in methods:
        print(f"{k:6s} cpu {cpu[k]:7.2f} s  wall {wall[k]:7.2f} s")
    print(f"T={args.tokens} lens÷floor  A: cpu {cpu['A'] / cpu['floor']:.3f} wall {wall['A'] / wall['floor']:.3f}")
    print(f"T={args.tokens} lens÷floor  B: cpu {cpu['B'] / cpu['floor']:.3f} wall {wall['B'] / wall['floor']:.3f}")


if __name__ == "__main__":
    main()
