"""Point metrics and confidence intervals from per-window sums (bootstrap or standard error)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

SUMS = ("ce", "kl_to_final", "entropy", "top1_agreement", "top1_accuracy")  # window_sums[..., j]
METRICS = ("ce", "bits_per_byte", "kl_to_final", "entropy", "top1_agreement", "top1_accuracy")
LN2 = math.log(2.0)


def metrics(sums: np.ndarray, n_tokens, n_bytes) -> dict[str, np.ndarray]:
    """Metrics from summed (5, ...) statistics and token/byte totals (broadcasting)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {name: sums[j] / n_tokens for j, name in enumerate(SUMS)}
        out["bits_per_byte"] = np.where(n_bytes > 0, sums[0] / (LN2 * n_bytes), np.nan)
    return {m: np.asarray(out[m], dtype=np.float64) for m in METRICS}


def resampled_sums(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Column sums of ``values`` (W, C) over ``n_boot`` resamples of its W rows with replacement: (n_boot, C).

    The bootstrap over windows of every corpus interval here and in :mod:`logitscope.diff.corpus`.
    Resamples are drawn in blocks, so the (block, W) count matrix stays bounded.
    """
    W = values.shape[0]
    rng = np.random.default_rng(seed)
    flat = np.asarray(values, dtype=np.float64)
    draws = []
    step = max(1, 2_000_000 // max(1, W))  # resamples per block: bounds the (step, W) count matrix
    for b0 in range(0, n_boot, step):
        counts = rng.multinomial(W, np.full(W, 1.0 / W), size=min(step, n_boot - b0)).astype(np.float64)
        draws.append(counts @ flat)  # (b, C)
    return np.concatenate(draws)


def ratio_intervals(sums: np.ndarray, tokens: np.ndarray, confidence: float, n_boot: int, seed: int) -> np.ndarray:
    """(S, 2) percentile-bootstrap bounds of ``Σ sums / Σ tokens`` over windows (``sums``: (W, S), ``tokens``: (W,))."""
    W, S = sums.shape
    if W < 2:
        return np.full((S, 2), np.nan)
    boot = resampled_sums(np.concatenate([sums, tokens[:, None]], axis=1), n_boot, seed)  # (n_boot, S + 1)
    ratio = boot[:, :S] / boot[:, S:]
    alpha = (1 - confidence) / 2
    return np.quantile(ratio, [alpha, 1 - alpha], axis=0).T


def intervals(sums, tokens, nbytes, point, method, confidence, n_boot, seed) -> dict[str, np.ndarray]:
    """CI bounds per metric: percentile bootstrap over windows, or ratio-estimator standard error."""
    W, S, _ = sums.shape
    alpha = (1 - confidence) / 2
    if method == "stderr":
        z = NormalDist().inv_cdf(1 - alpha)
        out = {}
        for m in METRICS:
            j = 0 if m == "bits_per_byte" else SUMS.index(m)
            den = (nbytes * LN2 if m == "bits_per_byte" else tokens).astype(np.float64)  # (W,)
            resid = sums[:, :, j] - point[m][None, :] * den[:, None]  # (W, S)
            with np.errstate(divide="ignore", invalid="ignore"):
                se = np.sqrt(W / (W - 1) * (resid**2).sum(0)) / den.sum() if W > 1 else np.full(S, np.nan)
            out[m] = np.stack([point[m] - z * se, point[m] + z * se], axis=1)
        return out
    flat = np.concatenate([sums.reshape(W, S * 5), tokens[:, None], nbytes[:, None]], axis=1)
    boot = resampled_sums(flat, n_boot, seed)  # (n_boot, 5·S + 2)
    stats = metrics(boot[:, : 5 * S].reshape(-1, S, 5).transpose(2, 0, 1), boot[:, -2:-1], boot[:, -1:])
    out = {}
    for m in METRICS:
        ok = np.isfinite(stats[m]).any(0)  # (S,): bits per byte is NaN throughout without bytes
        out[m] = np.full((S, 2), np.nan)
        if ok.any():
            out[m][ok] = np.nanquantile(stats[m][:, ok], [alpha, 1 - alpha], axis=0).T
    return out
