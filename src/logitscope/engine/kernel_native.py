"""A fused C row kernel for the lens statistics on CPU, compiled on first use; ``None`` without a compiler.

:func:`rows_stats` computes, for each row of a float32 logits chunk, everything
:func:`logitscope.engine.kernel._reduce` does in torch, in **two passes over the row** while it sits
in the core's cache (torch needs ~10 passes, each a parallel region): (1) the maxima of blocks
of 128 logits, from which the top-k (and the row max ``m``) come as in ``kernel._topk``;
(2) one pass computing ``e = exp(z - m)`` (a Cephes-style polynomial, ~1 ulp) and, accumulated
in float64, ``s = Σ e``, ``Σ e·z'``, ``Σ e_f·z'`` (KL) and the count of logits above the
target's. Tracked tokens take one comparison pass each. The float64 sums err less than
torch's pairwise float32 sums (``bench/bench_numerics.py``); ranks are exact counts.

The C source below is compiled once per machine with the system C compiler
(``$CC``, else ``cc``/``gcc``/``clang``: ``-O3 -march=native -fopenmp-simd -fno-trapping-math``,
no fast-math: NaN still propagates) into
``$XDG_CACHE_HOME/logitscope`` (``~/.cache/logitscope``), keyed by a hash of the source, the
flags and the CPU; rows are split over ``torch.get_num_threads()`` Python threads (ctypes
releases the GIL). Without a compiler, or with ``LOGITSCOPE_NATIVE=0``, :func:`load` returns
``None`` and the kernel runs its torch path (same statistics, to float32 rounding).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <math.h>

#define BLOCK 128

/* exp(x) for x <= 0, NaN propagating; 0 below -87.3 (where float32 exp is subnormal). */
static inline float exp_neg(float x) {
    float c = x < -87.3f ? -87.3f : x;
    float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = c - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t i; float f; } u;
    u.i = (uint32_t)((int32_t)n + 127) << 23;
    float e = p * u.f;
    return x < -87.3f ? 0.0f : e;
}

/* insert (x, i) into the descending top list (tv, ti) of k entries */
static inline void topk_insert(float *tv, int64_t *ti, int64_t k, float x, int64_t i) {
    if (!(x > tv[k - 1] || (x == tv[k - 1] && (ti[k - 1] < 0 || i < ti[k - 1])))) return;
    int64_t j = k - 1;
    while (j > 0 && (x > tv[j - 1] || (x == tv[j - 1] && (ti[j - 1] < 0 || i < ti[j - 1])))) {
        tv[j] = tv[j - 1]; ti[j] = ti[j - 1]; j--;
    }
    tv[j] = x; ti[j] = i;
}

static int64_t count_above(const float *z, int64_t V, float m, float zpt) {
    int64_t c = 0;
#pragma omp simd reduction(+:c)
    for (int64_t v = 0; v < V; v++) c += (z[v] - m) > zpt;
    return c;
}

/* Rows [r0, r1) of the logits z: row r is stream r % g of position r / g, at z + ((r / g) * ps + r % g) * V.
   Final rows (g = 1): e_out != NULL receives exp(z - m), (rows, V).
   Other rows: ef (positions, V), sf, hf (positions) of the final rows. */
void ls_rows(const float *z, int64_t V, int64_t k, const int64_t *tgt, const int64_t *track, int64_t K,
             float *e_out, const float *ef, const double *sf, const double *hf, int64_t g, int64_t ps,
             double *s_out, double *h_out, float *entropy, float *kl, int64_t *top_ids, float *top_probs,
             float *tgt_lp, int64_t *tgt_rank, float *trk_lp, int64_t *trk_rank, int64_t r0, int64_t r1) {
    int64_t nb = V / BLOCK;
    int use_blocks = nb >= 4 * k;
    float *bm = use_blocks ? (float *)malloc(sizeof(float) * nb) : 0;
    float *tv = (float *)malloc(sizeof(float) * k * 2);
    float *bv = tv + k;
    int64_t *ti = (int64_t *)malloc(sizeof(int64_t) * k * 2);
    int64_t *bi = ti + k;
    for (int64_t r = r0; r < r1; r++) {
        const float *zr = z + ((r / g) * ps + r % g) * V;
        for (int64_t j = 0; j < k; j++) { tv[j] = -INFINITY; ti[j] = -1; }
        if (use_blocks) {
            for (int64_t b = 0; b < nb; b++) {
                const float *zb = zr + b * BLOCK;
                float mx = -INFINITY;
#pragma omp simd reduction(max:mx)
                for (int64_t j = 0; j < BLOCK; j++) mx = zb[j] > mx ? zb[j] : mx;
                bm[b] = mx;
            }
            for (int64_t j = 0; j < k; j++) { bv[j] = -INFINITY; bi[j] = -1; }
            for (int64_t b = 0; b < nb; b++) topk_insert(bv, bi, k, bm[b], b);
            for (int64_t j = 0; j < k; j++) {
                if (bi[j] < 0) continue;
                for (int64_t v = bi[j] * BLOCK; v < (bi[j] + 1) * BLOCK; v++) topk_insert(tv, ti, k, zr[v], v);
            }
            for (int64_t v = nb * BLOCK; v < V; v++) topk_insert(tv, ti, k, zr[v], v);
        } else {
            for (int64_t v = 0; v < V; v++) topk_insert(tv, ti, k, zr[v], v);
        }
        float m = tv[0];
        int64_t t = tgt[r];
        float zpt = t >= 0 ? zr[t] - m : INFINITY;
        const float *efr = e_out ? 0 : ef + (r / g) * V;
        double s = 0, ez = 0, kz = 0;
        int64_t c = 0;
        if (e_out) {
            float *er = e_out + r * V;
#pragma omp simd reduction(+:s,ez,c)
            for (int64_t v = 0; v < V; v++) {
                float zp = zr[v] - m;
                float e = exp_neg(zp);
                er[v] = e;
                s += e;
                ez += (double)e * zp;
                c += zp > zpt;
            }
        } else {
#pragma omp simd reduction(+:s,ez,kz,c)
            for (int64_t v = 0; v < V; v++) {
                float zp = zr[v] - m;
                float e = exp_neg(zp);
                s += e;
                ez += (double)e * zp;
                kz += (double)efr[v] * zp;
                c += zp > zpt;
            }
        }
        double lse = log(s);
        double h = lse - ez / s;
        s_out[r] = s;
        h_out[r] = h;
        entropy[r] = (float)h;
        if (e_out) kl[r] = 0.0f;
        else {
            int64_t p = r / g;
            double d = lse - kz / sf[p] - hf[p];
            kl[r] = d > 0 ? (float)d : (d == d ? 0.0f : (float)d);
        }
        for (int64_t j = 0; j < k; j++) {
            top_ids[r * k + j] = ti[j];
            top_probs[r * k + j] = (float)exp((double)(tv[j] - m) - lse);
        }
        tgt_lp[r] = t >= 0 ? (float)((double)zpt - lse) : NAN;
        tgt_rank[r] = t >= 0 ? c : -1;
        for (int64_t j = 0; j < K; j++) {
            float zpk = zr[track[j]] - m;
            trk_lp[r * K + j] = (float)((double)zpk - lse);
            trk_rank[r * K + j] = count_above(zr, V, m, zpk);
        }
    }
    free(bm); free(tv); free(ti);
}
"""

_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-trapping-math", "-fPIC", "-shared", "-std=c99"]
_lock = threading.Lock()
_lib: ctypes.CDLL | None | bool = False  # False: not tried yet
_pool: ThreadPoolExecutor | None = None


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _build(cc: str) -> ctypes.CDLL:
    key = hashlib.sha256("\0".join([SOURCE, cc, *_FLAGS, platform.machine(), _cpu_id()]).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "logitscope"
    lib = root / f"kernel-{key}.so"
    if not lib.exists():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            src = Path(tmp) / "kernel.c"
            src.write_text(SOURCE)
            out = Path(tmp) / "kernel.so"
            subprocess.run([cc, *_FLAGS, str(src), "-o", str(out), "-lm"], check=True, capture_output=True, timeout=120)
            os.replace(out, lib)  # atomic: concurrent builders leave one whole library
    dll = ctypes.CDLL(str(lib))
    f = dll.ls_rows
    P, N = ctypes.c_void_p, ctypes.c_int64
    f.argtypes = [P, N, N, P, P, N, P, P, P, P, N, N, *[P] * 10, N, N]
    f.restype = None
    return dll


def load() -> ctypes.CDLL | None:
    """The compiled row kernel, building it on first use; ``None`` where it cannot be had."""
    global _lib
    if _lib is False:
        with _lock:
            if _lib is False:
                _lib = None
                cc = _compiler()
                if os.environ.get("LOGITSCOPE_NATIVE", "1") != "0" and cc is not None:
                    try:
                        _lib = _build(cc)
                    except (OSError, subprocess.SubprocessError, AttributeError):
                        _lib = None
    return _lib or None


def rows_stats(lib, z, k: int, tgt, track, *, e_out=None, e_final=None) -> dict[str, torch.Tensor]:
    """Statistics of every row of a float32 CPU logits block ``z``: (n, V) or (n, g, V).

    Args:
        lib: :func:`load`'s library.
        z: logits, left unchanged; rows contiguous, positions (dim 0) any whole number of rows
            apart (a view of the kernel's chunk buffer: no copy). ``R = n·g`` rows, position-major.
        k: top-k; tgt: (R,) int64 targets (-1: none); track: (K,) int64 token ids.
        e_out: (n, V) contiguous float32 buffer that receives ``exp(z - max)`` (the final rows, 2-D ``z``).
        e_final: ``(e_f, s_f, H_f)`` of the final rows, (n, V) float32 and (n,) float64, for
            ``kl_to_final``; row ``r`` belongs to position ``r // g``.

    Returns:
        ``s``/``h`` (R,) float64, and the (R, ...) statistics as in ``kernel._reduce``.
    """
    V = z.shape[-1]
    g = z.shape[1] if z.dim() == 3 else 1
    if z.stride(-1) != 1 or (g > 1 and z.stride(1) != V) or z.stride(0) % V or z.dtype != torch.float32:
        raise ValueError("rows_stats needs float32 rows laid out whole, V apart")
    ps = z.stride(0) // V
    R = z.shape[0] * g
    K = track.numel()
    out = {
        "s": torch.empty(R, dtype=torch.float64),
        "h": torch.empty(R, dtype=torch.float64),
        "entropy": torch.empty(R, dtype=torch.float32),
        "kl_to_final": torch.empty(R, dtype=torch.float32),
        "top_ids": torch.empty(R, k, dtype=torch.int64),
        "top_probs": torch.empty(R, k, dtype=torch.float32),
        "target_logprob": torch.empty(R, dtype=torch.float32),
        "target_rank": torch.empty(R, dtype=torch.int64),
        "tracked_logprobs": torch.empty(R, K, dtype=torch.float32),
        "tracked_ranks": torch.empty(R, K, dtype=torch.int64),
    }
    tgt, track = tgt.contiguous(), track.contiguous()
    ef, sf, hf = e_final if e_final is not None else (None, None, None)
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    args = [ptr(z), V, k, ptr(tgt), ptr(track), K, ptr(e_out), ptr(ef), ptr(sf), ptr(hf), g, ps]
    args += [ptr(out[key]) for key in out]
    n = max(1, min(R, torch.get_num_threads()))
    bounds = [R * i // n for i in range(n + 1)]
    if n == 1:
        lib.ls_rows(*args, 0, R)
    else:
        global _pool
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="logitscope-kernel")
        jobs = [_pool.submit(lib.ls_rows, *args, bounds[i], bounds[i + 1]) for i in range(n)]
        for job in jobs:
            job.result()
    return out
