"""The evaluation loop: corpus → token windows → one captured forward per batch → streaming kernel → sums.

Data flows one way: corpus → token windows (:mod:`logitscope.data.windows`) → batches of equal-length
windows → one forward with hooks capturing every stream row → the streaming kernel
(:func:`~logitscope.engine.kernel.stream_stats`, ``top_k=1``) → per-window sums → :class:`EvalResult`.
Nothing of shape (layers × tokens × vocab) is held, and per window only ``5 × (L+1)`` sums are
kept (for confidence intervals and ``per_window.parquet``). Under torchrun, windows are sharded
round-robin across ranks (:mod:`logitscope.data.distributed`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..data.distributed import DistContext, auto_batch_size, eval_chunk_rows
from ..data.windows import resolve_seq_len, token_byte_lengths, token_stream, window_batches, windows
from ..engine.check import capture_checked
from ..engine.kernel import stream_stats
from ..engine.run import apply_lens, check_rows
from ..errors import InputError
from .result import EvalResult


def run_eval(
    scope,
    data,
    *,
    max_tokens: int | None = None,
    seq_len: int | None = None,
    batch_size: int | str = "auto",
    ci: str = "bootstrap",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    dist: DistContext | None = None,
    progress: Callable[[int, float | None], None] | None = None,
    tuned=None,
    strict: bool = True,
    jacobian=None,
) -> EvalResult:
    """Implementation of :meth:`logitscope.Scope.evaluate` (see there).

    ``progress(tokens_done, total_estimate)`` is called after every batch with the tokens scored
    so far (estimated over all ranks) and the expected total (``None`` when unknown).
    """
    _check_args(max_tokens, seq_len, batch_size, ci, confidence, n_boot)
    t0 = time.perf_counter()  # elapsed_s / tokens_per_s: wall time of the whole call, as a progress bar sees it
    parts = scope.require_head()
    if parts.kind != "causal":
        raise InputError(f"corpus evaluation scores next-token prediction: causal LMs only, not {parts.kind}")
    lenses = []  # [(key, lens)]: the tuned / Jacobian lens too, from the same forward: a LensComparison
    if tuned is not None:
        from ..lens.select import pick_lens

        lens = pick_lens(scope, tuned=tuned, strict=strict)
        check_rows(lens, list(range(parts.n_blocks + 1)), parts.n_blocks)
        lenses.append(("tuned", lens))
    if jacobian is not None:  # rows it has no J for (row 0) repeat the logit lens: meta["untransformed_rows"]
        from ..jacobian import JacobianLens

        lenses.append(("jacobian", JacobianLens.load(jacobian, scope=scope, strict=strict)))
    n_lens = 1 + len(lenses)
    dist = dist or DistContext()
    config, tok, V, L = scope.model.config, scope.tokenizer, parts.vocab_size, parts.n_blocks
    seq_len = resolve_seq_len(seq_len, config)
    chunk = eval_chunk_rows(scope)
    B = auto_batch_size(scope, seq_len, chunk) if batch_size in ("auto", None) else int(batch_size)
    chunks, corpus = token_stream(data, tok, config)
    produced = [0]  # tokens the tokenizer has produced (for the progress total)

    def counted():
        for c in chunks:
            produced[0] += len(c)
            yield c

    byte_len = token_byte_lengths(tok, V) if tok is not None else None
    rows = list(range(L + 1))
    S = L + 1
    table = np.empty((1024, 3 + 5 * S * n_lens))  # per window: id, tokens, bytes, (S, 5) sums; grown by doubling
    n_rows = 0
    done = seen = 0  # tokens scored here; tokens in the windows read so far (all ranks')

    def flush(batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal done, n_rows, table
        x = np.stack([w[:-1] for _, w in batch])  # (B, T)
        y = np.stack([w[1:] for _, w in batch])
        if n_rows + len(batch) > len(table):  # one growing array: no small long-lived allocations
            table = np.concatenate([table, np.empty_like(table)])
        new = table[n_rows : n_rows + len(batch)]
        new[:, 0], new[:, 1] = [i for i, _ in batch], y.shape[1]
        new[:, 2] = byte_len[y].sum(1) if byte_len is not None else 0
        new[:, 3:] = _window_sums(scope, parts, rows, x, y, chunk, [t for _, t in lenses]).reshape(len(batch), -1)
        n_rows += len(batch)
        done += y.size
        if progress is not None:
            total = max_tokens
            if corpus is not None and corpus.fraction() > 0:
                est = produced[0] / corpus.fraction()
                total = min(total, est) if total else est
            # every rank reads every window (and skips the ones it does not own), so the tokens of the
            # windows seen so far bound what all ranks together have scored: never more than exist
            progress(min(done * dist.world_size, seen), total)

    def seen_windows():
        nonlocal seen
        for w in windows(counted(), seq_len, max_tokens):
            seen += len(w) - 1
            yield w

    for batch in window_batches(seen_windows(), B, vocab_size=V, owns=dist.owns):
        flush(batch)
    t = table[:n_rows]
    local_sums = t[:, 3:].reshape(n_rows, S * n_lens, 5)
    local = (t[:, 0].astype(np.int64), t[:, 1].astype(np.int64), t[:, 2].astype(np.int64), local_sums.copy())
    totals = dist.all_reduce_sum(np.concatenate([local_sums.sum(0).T.ravel(), [local[1].sum(), local[2].sum()]]))
    parts_all = dist.all_gather(local)
    w_ids, w_tok, w_bytes, w_sums = (np.concatenate(p) for p in zip(*parts_all))
    order = np.argsort(w_ids, kind="stable")
    if len(order) == 0:
        raise InputError("the data holds fewer than two tokens: nothing to score")
    elapsed = time.perf_counter() - t0
    meta = dict(model=scope.name, model_type=parts.model_type, seq_len=seq_len, max_tokens=max_tokens, batch_size=B)
    meta["chunk_rows"] = chunk
    meta.update(world_size=dist.world_size, dtype=str(next(scope.model.parameters()).dtype).replace("torch.", ""))
    meta.update(bytes_known=byte_len is not None, elapsed_s=round(elapsed, 3))
    meta["tokens_per_s"] = round(float(totals[-2]) / elapsed, 1) if elapsed > 0 else None
    picked = (w_ids[order], w_tok[order], w_bytes[order], w_sums[order])
    if lenses:
        from .lens_comparison import LensComparison

        kw = dict(ci=ci, confidence=confidence, n_boot=n_boot, seed=seed, meta=meta)
        return LensComparison.from_windows(rows, *picked, totals, lenses=lenses, **kw)
    return EvalResult.from_windows(
        rows, *picked, totals, ci=ci, confidence=confidence, n_boot=n_boot, seed=seed, meta=meta
    )


def _check_args(max_tokens, seq_len, batch_size, ci, confidence, n_boot) -> None:
    """Reject bad settings before any work (``InputError``)."""

    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if seq_len is not None and not (is_int(seq_len) and seq_len >= 1):
        raise InputError(f"seq_len must be an integer of at least 1, not {seq_len!r}")
    if max_tokens is not None and not (is_int(max_tokens) and max_tokens >= 1):
        raise InputError(f"max_tokens must be an integer of at least 1, not {max_tokens!r}")
    if batch_size not in ("auto", None) and not (is_int(batch_size) and batch_size >= 1):
        raise InputError(f"batch_size must be 'auto' or an integer of at least 1, not {batch_size!r}")
    if ci not in ("bootstrap", "stderr"):
        raise InputError(f"ci must be 'bootstrap' or 'stderr', not {ci!r}")
    if not (isinstance(confidence, (int, float, np.floating)) and 0 < confidence < 1):
        raise InputError(f"confidence must be between 0 and 1 (exclusive), not {confidence!r}")
    if not (is_int(n_boot) and n_boot >= 1):
        raise InputError(f"n_boot must be an integer of at least 1, not {n_boot!r}")


def _window_sums(scope, parts, rows: list[int], x: np.ndarray, y: np.ndarray, chunk: int, lenses=()) -> np.ndarray:
    """(B, S, 5) float64 per-window sums for a batch of equal-length windows, inputs x and targets y (B, T).

    With ``lenses`` (Lens-protocol objects: a tuned, a Jacobian lens), (B, kS, 5): the logit lens's S
    rows, then each lens's; a row a lens does not cover (a Jacobian lens's row 0) is the logit lens's.
    """
    B, T = x.shape
    S = len(rows)
    inputs = torch.from_numpy(x).to(scope.input_device)
    captured = capture_checked(scope, rows, input_ids=inputs, use_cache=False)  # a pending self-check rides along
    head = parts.head_device
    streams = torch.stack([captured.pop(r).reshape(B * T, -1).to(head) for r in rows])  # (S, B·T, d)
    del captured
    targets = torch.from_numpy(y.reshape(-1))
    kw = dict(targets=targets, top_k=1, chunk_rows=chunk, vocab_size=parts.vocab_size, device=head)
    L = rows[-1]
    with parts.materialized():  # an offloaded head: on its device once per batch, not per chunk
        outs = [_sums(stream_stats(streams, parts.unembed, **kw), targets, S, B, T)]
        for j, lens in enumerate(lenses):  # the last lens may transform the streams in place
            own = streams if j == len(lenses) - 1 else streams.clone()
            covered = [
                r if r == L or lens.covers(r) else L for r in rows
            ]  # uncovered rows pass as the final: untouched
            outs.append(_sums(stream_stats(apply_lens(lens, own, covered, L), parts.unembed, **kw), targets, S, B, T))
            del own
    del streams
    return torch.cat(outs).transpose(0, 1).numpy()  # (B, kS, 5)


def _sums(st, targets: torch.Tensor, S: int, B: int, T: int) -> torch.Tensor:
    """(S, B, 5) per-window sums of CE, KL, entropy, top-1 agreement and accuracy from kernel statistics."""
    view = lambda t: t.view(S, B, T)  # noqa: E731
    top = view(st.top_ids[..., 0])
    out = torch.stack(
        [
            -view(st.target_logprob).double().sum(-1),
            view(st.kl_to_final).double().sum(-1),
            view(st.entropy).double().sum(-1),
            (top == top[-1:]).sum(-1).double(),
            (top == targets.view(1, B, T)).sum(-1).double(),
        ],
        dim=-1,
    )  # (S, B, 5)
    return out
