"""Models larger than memory: the lens of an 8B-shaped model streamed from disk.

Writes random-init Llama-3-8B-shaped safetensors shards directly (tensor by tensor in chunks, the
model is never held in memory), then, each in a fresh subprocess so peak RSS is its own:

* ``stream``: ``logitscope.load(dir, device_map="stream")`` and one lens of T tokens (its
  self-check rides along that forward); time and peak RSS. ``--fresh N`` processes, each from a
  cold page cache (the time varies run to run on a shared VM: the ratio is the median's, and
  every run's is listed);
* ``read``: the time to read every weight byte from disk (page cache dropped first), buffered and
  with ``O_DIRECT``, before and again after the streamed lenses (a virtual disk may cache on its
  host: all are reported; ``ratio`` is the median lens over max(the fastest read, compute),
  ``ratio_buffered_read`` over max(the first buffered read, compute));
* ``compute``: the same lens with the weights already in memory. A 32-block model that does not
  fit cannot run warm, so it is composed from measured parts: the warm lens of a 12-block cut of
  the same shards (its tensors read into the page cache first, so the streamer maps them: the
  faster of two lenses), plus 20 blocks' forwards (the
  per-block compute of the 4- and 12-block cuts' timelines: it is linear in blocks), plus the
  head statistics of 33 rows less those of 13 (the kernel timed on the full model's head at both
  row counts, job ``stats``). Extrapolating the whole lens linearly from the two cuts, as an
  earlier version did, under-counted: the cuts' after-block phase carries a fixed part that
  differs between them (in one run 8.55 and 15.39 s, the kernel alone 5.4 and 14.1 s), so the
  slope came out 0.86 s a row instead of the kernel's 1.09 s; that estimate stays in the
  output as ``compute_linear_s``;
* ``hf``: the same job through plain transformers + accelerate's auto offload
  (``device_map="auto"``, ``max_memory``, disk offload) with ``output_hidden_states`` and the
  head applied per layer (entropy, top-5, KL to final, as the lens reports);
* ``nnsight``: the same with nnsight's trace, when nnsight imports.

Cases: ``bf16`` (16 GB, T=256, target peak RSS <= 2.5 GB) and ``f32`` (32 GB, more than this
machine's RAM, T=128, target <= 6 GB). Shards are deleted afterwards. Targets: time per lens
<= 1.3 x max(read, compute).

    PYTHONPATH=src python bench/bench_bigmodel.py --case bf16 --case f32 [--peers hf,nnsight] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bigmodel_shards import SHAPE, cut, drop_cache, time_read, warm_cache, write_model

CASES = {
    "bf16": dict(dtype="bfloat16", T=256, rss_gb=2.5, budget="2GiB", disk_gb=16 + 8),
    "f32": dict(dtype="float32", T=128, rss_gb=6.0, budget="5GiB", disk_gb=40),
}


# -- the measured jobs (each runs in a child process: python bench_bigmodel.py --job ...) ------------
def _ids(T: int):
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randint(0, SHAPE["vocab_size"], (T,), generator=g).tolist()


def timeline_phases(events: list, t0: float, t1: float) -> dict:
    """Where one streamed lens spent its time, from the streamer's timeline (seconds).

    before: lens start to the first block; blocks: first block enter to last block exit, of which
    wait (compute waiting for the worker's read) and compute (block forwards); after: last block
    exit to the lens's end (the head statistics); worker: the worker's reading and scanning.
    """
    enter = [t for e, _, t in events if e == "enter"]
    exits = [t for e, _, t in events if e == "exit"]
    if not enter or not exits:
        return {}
    ready = {i: t for e, i, t in events if e == "ready"}
    start = {i: t for e, i, t in events if e == "enter"}
    wait = sum(ready[i] - start[i] for i in ready if i in start)
    loads = {}
    for e, i, t in events:
        if e in ("load0", "load1"):
            loads.setdefault(i, {})[e] = t
    worker = sum(v["load1"] - v["load0"] for v in loads.values() if len(v) == 2)
    first, last = min(enter), max(exits)
    return dict(
        before=round(first - t0, 2),
        blocks=round(last - first, 2),
        wait=round(wait, 2),
        compute=round(last - first - wait, 2),
        after=round(t1 - last, 2),
        worker=round(worker, 2),
    )


def job_stream(folder: str, T: int, repeat: int) -> dict:
    import torch

    import logitscope

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    scope = logitscope.load(folder, device_map="stream", device="cpu")
    load_s = time.perf_counter() - t0
    times, phases = [], []
    streamer = scope.model._logitscope_streamer
    for _ in range(repeat):
        streamer.timeline.clear()
        t0 = time.perf_counter()
        res = scope.lens(_ids(T))
        t1 = time.perf_counter()
        times.append(t1 - t0)
        phases.append(timeline_phases(list(streamer.timeline), t0, t1))
    return dict(
        load_s=round(load_s, 2),
        lens_s=[round(t, 2) for t in times],
        checked=not scope._check_pending,
        direct_gb=round(streamer.direct.bytes_read / 1e9, 2) if streamer.direct is not None else None,
        block_loads=streamer.loads,
        wait_s=round(streamer.wait_s, 1),
        phases=phases,
        top1_last=int(res.top_ids[-1, -1, 0]),
        entropy_last_mean=float(res.entropy[-1].mean()),
    )


def job_stats(folder: str, T: int, rows: list[int]) -> dict:
    """The head statistics alone (what a lens runs after its last block), on the streamed model's
    resident head, for ``rows`` stream rows of ``T`` positions: the best of two runs each."""
    import torch

    import logitscope
    from logitscope.engine.kernel import stream_stats

    torch.set_num_threads(2)
    scope = logitscope.load(folder, device_map="stream", device="cpu")
    parts = scope.parts
    g = torch.Generator().manual_seed(0)
    targets = torch.tensor(_ids(T)[1:] + [-1])
    out = {}
    for S in rows:
        h = torch.randn(T, S, SHAPE["hidden_size"], generator=g).transpose(0, 1)  # the lens's (S, P, d) layout
        h = h.to(scope.model._logitscope_streamer.dtype)  # the streams come in the compute dtype
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            with parts.materialized():
                stream_stats(
                    h,
                    parts.unembed,
                    targets=targets,
                    chunk_rows=scope.chunk_size,
                    vocab_size=parts.vocab_size,
                    device=parts.head_device,
                )
            times.append(time.perf_counter() - t0)
        out[str(S)] = round(min(times), 2)
    return dict(stats_s=out, chunk_rows=scope.chunk_size)


def job_hf(folder: str, T: int, budget: str, offload: str) -> dict:
    """Plain transformers: auto offload, output_hidden_states, the head per layer, same statistics."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        folder, device_map="auto", max_memory={"cpu": budget}, offload_folder=offload, dtype="auto"
    ).eval()
    load_s = time.perf_counter() - t0
    ids = torch.tensor([_ids(T)])
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model(ids, output_hidden_states=True)
        final = out.logits[0].float().log_softmax(-1)
        pf = final.exp()
        stats = []
        hs = out.hidden_states
        for h in hs[:-1]:  # the last entry is already normed: the model's own logits stand for it
            lp = model.lm_head(model.model.norm(h))[0].float().log_softmax(-1)
            p = lp.exp()
            stats.append(((-(p * lp).sum(-1)).mean().item(), (pf * (final - lp)).sum(-1).mean().item()))
            lp.topk(5, dim=-1)
        final.topk(5, dim=-1)
    return dict(load_s=round(load_s, 2), lens_s=[round(time.perf_counter() - t0, 2)], rows=len(hs))


def job_nnsight(folder: str, T: int, budget: str, offload: str) -> dict:
    import torch
    from nnsight import LanguageModel

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    lm = LanguageModel(
        folder, device_map="auto", max_memory={"cpu": budget}, offload_folder=offload, dtype="auto", dispatch=True
    )
    load_s = time.perf_counter() - t0
    ids = torch.tensor([_ids(T)])
    t0 = time.perf_counter()
    saved = []
    with torch.inference_mode(), lm.trace(ids):
        for layer in lm.model.layers:
            saved.append(lm.lm_head(lm.model.norm(layer.output)).save())
    for z in saved:
        lp = getattr(z, "value", z)[0].float().log_softmax(-1)
        (-(lp.exp() * lp).sum(-1)).mean()
    return dict(load_s=round(load_s, 2), lens_s=[round(time.perf_counter() - t0, 2)])


def run_child(job: str, timeout: float, **kw) -> dict:
    """Run one job in a fresh interpreter; its peak RSS (GB) is added."""
    cmd = [sys.executable, __file__, "--job", job, "--args", json.dumps(kw)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"did not finish within {timeout:.0f} s")
    if proc.returncode != 0:
        return dict(error=(proc.stderr.strip().splitlines() or ["?"])[-1], wall_s=round(time.perf_counter() - t0, 1))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(job: str, args: dict) -> None:
    out = {"stream": job_stream, "stats": job_stats, "hf": job_hf, "nnsight": job_nnsight}[job](**args)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    print(json.dumps(out))


# -- one case --------------------------------------------------------------------------------
def guard(case: dict, folder: Path) -> str | None:
    """Why this case cannot run here (disk or RAM short), or None."""
    free = shutil.disk_usage(folder.parent).free / 1e9
    if free < case["disk_gb"]:
        return f"needs {case['disk_gb']} GB free disk, {free:.0f} GB free"
    with open("/proc/meminfo") as f:
        avail = {k: int(v.split()[0]) for k, v in (line.split(":") for line in f)}["MemAvailable"] / 2**20
    if avail < case["rss_gb"] + 2:
        return f"needs {case['rss_gb'] + 2:.1f} GB of available RAM, {avail:.1f} GB available"
    return None


STEPS = ("read", "stream", "compute")
CUTS = (4, 12)  # block counts of the warm cuts the compute is extrapolated from


def run_case(
    name: str,
    base: Path,
    peers: list[str],
    repeat: int,
    steps=STEPS,
    keep: bool = False,
    peer_timeout: float = 2400,
    fresh: int = 3,
) -> dict:
    case = CASES[name]
    folder = base / f"llama8b-{name}"
    reuse = (folder / "model.safetensors.index.json").exists()
    why = None if reuse else guard(case, folder)
    if why:
        print(f"[{name}] skipped: {why}", flush=True)
        return dict(skipped=why)
    out: dict = dict(T=case["T"], dtype=case["dtype"], target_rss_gb=case["rss_gb"])
    try:
        t0 = time.perf_counter()
        if reuse:  # shards left by an earlier run (--keep)
            out["weights_gb"] = round(sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e9, 2)
        else:
            out["weights_gb"] = round(write_model(folder, case["dtype"]) / 1e9, 2)
            out["write_s"] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] {out['weights_gb']} GB of weights in {folder}", flush=True)
        reads: list[float] = []
        if "read" in steps:
            out["read_s"] = round(time_read(folder), 1)
            out["read_direct_s"] = round(time_read(folder, direct=True), 1)
            reads += [out["read_s"], out["read_direct_s"]]
            print(f"[{name}] cold read {out['read_s']} s buffered, {out['read_direct_s']} s O_DIRECT", flush=True)
        if "stream" in steps:  # `fresh` processes, each one cold lens (and `repeat` - 1 more)
            runs = []
            for _ in range(fresh):
                drop_cache(folder)
                runs.append(run_child("stream", 3600, folder=str(folder), T=case["T"], repeat=repeat))
                print(f"[{name}] stream {runs[-1]}", flush=True)
            out["stream"] = runs[0]
            firsts = [r["lens_s"][0] for r in runs if "lens_s" in r]
            out["stream_first_lens_s"] = firsts
            out["stream_peak_rss_gb"] = [r.get("peak_rss_gb") for r in runs]
            if firsts:
                out["stream_median_s"] = round(statistics.median(firsts), 2)
        if "read" in steps:  # again: a virtual disk may cache on its host, so the second read can be faster
            out["read_after_s"] = round(time_read(folder), 1)
            out["read_direct_after_s"] = round(time_read(folder, direct=True), 1)
            reads += [out["read_after_s"], out["read_direct_after_s"]]
            print(f"[{name}] cold read after the lens {out['read_after_s']} s, {out['read_direct_after_s']} s", flush=True)
        if reads:
            out["read_fastest_s"] = min(reads)
        comp = {}
        for n in CUTS if "compute" in steps else ():  # the same lens, weights in page cache: the compute alone
            drop_cache(folder)
            warm_cache(folder, n)  # the cut's tensors into the page cache: the streamer maps them, no disk
            comp[n] = run_child("stream", 1800, folder=str(cut(folder, n)), T=case["T"], repeat=2)
        L = SHAPE["num_hidden_layers"]
        if comp and all("lens_s" in c for c in comp.values()):
            (a, ta), (b, tb) = ((n, min(c["lens_s"])) for n, c in comp.items())
            out["compute_linear_s"] = round(ta + (L - a) * (tb - ta) / (b - a), 1)
            stats = run_child("stats", 1800, folder=str(folder), T=case["T"], rows=[b + 1, L + 1])
            out["compute_stats"] = stats
            if "stats_s" in stats:  # the warm b-block lens + (L - b) block forwards + the extra rows' statistics
                warm = [c["phases"][c["lens_s"].index(min(c["lens_s"]))] for c in comp.values()]  # the warm lens
                per_block = (warm[1]["compute"] - warm[0]["compute"]) / (b - a)
                extra = stats["stats_s"][str(L + 1)] - stats["stats_s"][str(b + 1)]
                out["compute_per_block_s"] = round(per_block, 3)
                out["compute_s"] = round(tb + (L - b) * per_block + extra, 1)
        out["compute_cuts"] = comp
        print(f"[{name}] compute {out.get('compute_s')} {comp}", flush=True)
        lens_s = out.get("stream_median_s")
        if lens_s and out.get("compute_s") and out.get("read_s"):
            # the median cold lens against max(the fastest of the reads, compute): the strict floor
            floor = max(out["read_fastest_s"], out["compute_s"])
            out["ratio"] = round(lens_s / floor, 2)
            out["ratio_each"] = [round(t / floor, 2) for t in out["stream_first_lens_s"]]
            out["ratio_buffered_read"] = round(lens_s / max(out["read_s"], out["compute_s"]), 2)
        for peer in peers:
            drop_cache(folder)
            off = base / f"offload-{name}"
            off.mkdir(exist_ok=True)
            out[peer] = run_child(
                peer, peer_timeout, folder=str(folder), T=case["T"], budget=case["budget"], offload=str(off)
            )
            shutil.rmtree(off, ignore_errors=True)
            print(f"[{name}] {peer} {out[peer]}", flush=True)
    finally:
        for p in base.glob(f"llama8b-{name}*"):
            if not keep or p != folder:
                shutil.rmtree(p, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    ap.add_argument("--peers", default="hf,nnsight", help="comma list of hf, nnsight (or 'none')")
    ap.add_argument("--dir", default=str(Path.cwd() / ".bench_bigmodel"))
    ap.add_argument("--repeat", type=int, default=1, help="lenses per streamed process (the first is cold)")
    ap.add_argument("--fresh", type=int, default=3, help="streamed processes, each from a cold page cache")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma list of read, stream, compute")
    ap.add_argument("--keep", action="store_true", help="keep the shards (a later run reuses them)")
    ap.add_argument("--peer-timeout", type=float, default=2400, help="seconds each peer job may take")
    ap.add_argument("--tiny", action="store_true", help="a small model of the same layout (smoke test)")
    ap.add_argument("--job")
    ap.add_argument("--args")
    a = ap.parse_args()
    if a.tiny or os.environ.get("BENCH_BIGMODEL_TINY"):
        os.environ["BENCH_BIGMODEL_TINY"] = "1"  # the children too
        SHAPE.update(hidden_size=256, intermediate_size=512, num_hidden_layers=4, vocab_size=2000)
        for c in CASES.values():
            c.update(T=32, disk_gb=1, rss_gb=1.0, budget="20MiB")
        global CUTS
        CUTS = (1, 3)
    if a.job:
        child_main(a.job, json.loads(a.args))
        return
    peers = [p for p in a.peers.split(",") if p and p != "none"]
    if "nnsight" in peers:
        try:
            import nnsight  # noqa: F401
        except ImportError:
            print("nnsight is not installed: skipped", flush=True)
            peers.remove("nnsight")
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    steps = a.steps.split(",")
    results = {
        name: run_case(name, base, peers, a.repeat, steps, a.keep, a.peer_timeout, a.fresh)
        for name in (a.case or ["bf16", "f32"])
    }
    if not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
