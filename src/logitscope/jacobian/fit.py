"""Fitting a Jacobian lens: per-prompt Jacobians (:mod:`.estimator`) averaged over a prompt sequence.

``J_l = (1/n) Σ_prompts J_l(prompt)`` over the ``n`` prompts with at least ``skip_first + 2``
tokens, every prompt weighted equally (shorter ones are skipped and counted). The running sum is
kept in float64 on the CPU (the per-prompt Jacobians are float32), so the order in which prompts
are added — one process, shards merged later, or ranks under torchrun — changes the float32
result by at most a rounding step; the checkpoint holds that exact sum, so a resumed fit is
bit-identical to an uninterrupted one.

Under torchrun every rank reads the same prompt sequence and fits the ``k``-th usable prompt when
``k % world_size == rank``; sums are all-reduced at each checkpoint and at the end, so every rank
returns the single-process lens. Model parameters are frozen (``requires_grad_(False)``) for the
duration: no weight gradient, no optimizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..arch.weights import frozen
from ..data.distributed import DistContext
from ..errors import EmptyInputError, InputError, UnsupportedModelError
from .checkpoint import load_checkpoint, save_checkpoint
from .estimator import prompt_jacobians
from .format import JacobianLens
from .prompts import is_corpus, iter_prompts
from .streamed import streamed_prompt_jacobians

REFUSED = {
    "seq2seq": "an encoder-decoder model: its decoder stream also depends on the encoder's, so the "
    "average Jacobian between decoder blocks is not what the published lens measures",
    "masked": "a masked (bidirectional) LM: every position sees later ones, so the estimator's sum over "
    "later target positions is not a causal future",
    "encoder": "a model without an LM head: there is no tail to read the lens out through",
}


def check_layers(source_layers, target_layer, n_layers: int) -> tuple[list[int], int]:
    """Resolve ``None``/negative block indices; every source must lie below the target."""

    def index(v, what):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{what} must be block indices (ints), not {v!r}")
        i = v + n_layers if v < 0 else v
        if not 0 <= i < n_layers:
            raise InputError(f"{what} {v} out of range: the model has blocks 0..{n_layers - 1}")
        return i

    target = n_layers - 1 if target_layer is None else index(target_layer, "target_layer")
    if source_layers is None:
        sources = list(range(target))
    else:
        items = [source_layers] if isinstance(source_layers, int) else list(source_layers)
        sources = sorted({index(v, "source_layers") for v in items})
    if not sources:
        raise InputError(f"no source layer below target_layer {target}")
    if sources[-1] >= target:
        raise InputError(f"source_layers must all be below target_layer {target}; got {sources[-1]}")
    return sources, target


def _check_settings(skip_first, max_seq_len, dim_batch, n_prompts, save_every, limit) -> None:
    def is_int(v, low):
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    if not is_int(skip_first, 0):
        raise InputError(f"skip_first must be an integer >= 0, not {skip_first!r}")
    if not is_int(max_seq_len, skip_first + 2):
        raise InputError(f"max_seq_len must be an integer >= skip_first + 2 = {skip_first + 2}, not {max_seq_len!r}")
    if limit is not None and max_seq_len > limit:
        raise InputError(f"max_seq_len {max_seq_len} exceeds the model's context of {limit} tokens")
    if not is_int(dim_batch, 1):
        raise InputError(f"dim_batch must be a positive integer, not {dim_batch!r}")
    if n_prompts is not None and not is_int(n_prompts, 1):
        raise InputError(f"n_prompts must be a positive integer or None, not {n_prompts!r}")
    if not is_int(save_every, 0):
        raise InputError(f"save_every must be an integer >= 0, not {save_every!r}")


def fit_jacobian_lens(
    scope,
    prompts,
    *,
    skip_first: int = 16,
    max_seq_len: int = 128,
    dim_batch: int = 8,
    source_layers=None,
    target_layer: int | None = None,
    n_prompts: int | None = None,
    checkpoint=None,
    resume: bool = False,
    save_every: int = 50,
    dist: DistContext | None = None,
    progress: Callable[[dict], None] | None = None,
    metadata: dict | None = None,
) -> JacobianLens:
    """Fit ``J_l`` = mean over prompts of ``(1/|V|) Σ_{p∈V} Σ_{p'∈V, p'≥p} ∂h_t[p'] / ∂h_l[p]``.

    ``h_l`` is the output of block ``l``, ``h_t`` that of the target block (the last, before the
    final norm), ``V = [skip_first, T-1)``. Per prompt: one forward of the prompt replicated
    ``dim_batch`` times and ``ceil(d / dim_batch)`` VJPs (:mod:`.estimator`); on a streamed model
    the same VJPs block by block, one block's weights in memory at a time (:mod:`.streamed`).

    Args:
        scope: a :class:`~logitscope.Scope` of a causal LM.
        prompts: a list of texts or token-id lists (one prompt each, BOS forced, cut to
            ``max_seq_len`` tokens), or a corpus path (each document cut into consecutive
            ``max_seq_len``-token prompts; :mod:`.prompts`). Prompts under ``skip_first + 2``
            tokens are skipped (``metadata["n_skipped"]``).
        skip_first: leading positions left out of ``V`` (attention sinks).
        max_seq_len: tokens per prompt, BOS included.
        dim_batch: output dimensions per backward pass (memory and speed only; same lens).
        source_layers: blocks to fit (default: every block below the target; negative from the end).
        target_layer: the block differentiated (default: the last).
        n_prompts: stop after this many prompts fitted (default: all).
        checkpoint: a file for the running state, written atomically every ``save_every``
            prompts; ``resume=True`` continues from it, bit-identically.
        dist: a :class:`~logitscope.data.distributed.DistContext` (torchrun) splitting the prompts.
        progress: ``callback(record)`` after each prompt (``done``, ``total``, ``elapsed_s``...;
            on a streamed model ``reverse_passes``: the last prompt's passes over the blocks after its forward).
        metadata: extra plain values for the lens's ``metadata``.

    Raises:
        UnsupportedModelError: an encoder-decoder or masked model (the reason is in the message).
        EmptyInputError: no prompt is long enough.
    """
    from .. import __version__
    from ..arch.registry import context_limit

    parts = scope.require_head()
    if parts.kind != "causal":
        raise UnsupportedModelError(f"the Jacobian lens is fitted on causal LMs; {scope.name} is {REFUSED[parts.kind]}")
    _check_settings(skip_first, max_seq_len, dim_batch, n_prompts, save_every, context_limit(scope.model.config))
    L = parts.n_blocks
    sources, target = check_layers(source_layers, target_layer, L)
    if resume and checkpoint is None:
        raise InputError("resume=True needs the checkpoint= file to resume from")
    from ..arch.registry import residual_width

    d = residual_width(scope.model.config)
    if d is None:
        raise InputError(f"{scope.name}: the model config has no hidden_size; cannot size a Jacobian lens")
    dist = dist or DistContext()
    settings = dict(
        source_layers=sources, target_layer=target, skip_first=skip_first, max_seq_len=max_seq_len,
        dim_batch=dim_batch, d_model=d, n_layers=L, n_prompts=n_prompts,
    )  # fmt: skip
    sums = {layer: torch.zeros(d, d, dtype=torch.float64) for layer in sources}
    n_done = next_idx = skipped = 0
    seconds = 0.0
    if resume:
        state = load_checkpoint(checkpoint, settings)
        n_done, next_idx = int(state["n_done"]), int(state["next_idx"])
        skipped, seconds = int(state["stats"].get("skipped", 0)), float(state["stats"].get("fit_seconds", 0.0))
        if dist.is_main:  # one copy of the running sum; the other ranks add to zero
            sums = {layer: state["jacobian_sum"][layer].double() for layer in sources}
    resumed_at = n_done
    corpus = str(prompts) if is_corpus(prompts) else None

    def global_sums() -> dict[int, torch.Tensor]:
        if not dist.enabled:
            return sums
        import torch.distributed as td

        out = {}
        for layer, s in sums.items():
            t = s.to(dist.device, copy=True)  # a copy: the local running sum stays this rank's own
            td.all_reduce(t, op=td.ReduceOp.SUM)
            out[layer] = t.cpu()
        return out

    def write_checkpoint():
        total = global_sums()
        if dist.is_main:
            stats = dict(skipped=skipped, fit_seconds=round(seconds, 3), world_size=dist.world_size)
            save_checkpoint(
                checkpoint, jacobian_sum=total, n_done=n_done, next_idx=next_idx, settings=settings, stats=stats
            )
        dist.barrier()

    streamed = getattr(scope.model, "_logitscope_streamer", None) is not None
    estimator = streamed_prompt_jacobians if streamed else prompt_jacobians
    passes: dict = {}
    t0 = time.perf_counter()
    with frozen(scope.model):
        for idx, ids in enumerate(iter_prompts(prompts, scope, max_seq_len)):
            if idx < next_idx:
                continue  # fitted (or skipped) before the checkpoint
            if n_prompts is not None and n_done >= n_prompts:
                break
            next_idx = idx + 1
            if len(ids) < skip_first + 2:
                skipped += 1
                continue
            if dist.owns(n_done):
                kw = dict(stats=passes) if streamed else {}
                J = estimator(scope, ids, sources, target, dim_batch=dim_batch, skip_first=skip_first, **kw)
                for layer in sources:
                    sums[layer] += J[layer].to("cpu", torch.float64)
                del J
            n_done += 1
            seconds_now = seconds + time.perf_counter() - t0
            if progress is not None and dist.is_main:
                record = dict(done=n_done, total=n_prompts, start=resumed_at, skipped=skipped, elapsed_s=seconds_now)
                if streamed:
                    record["reverse_passes"] = passes.get("passes")
                progress(record)
            if checkpoint is not None and save_every and n_done % save_every == 0:
                seconds, t0 = seconds_now, time.perf_counter()
                write_checkpoint()
    seconds += time.perf_counter() - t0
    if n_done == 0:
        raise EmptyInputError(
            f"no prompt to fit on: {skipped} prompt(s) read, all shorter than skip_first + 2 = {skip_first + 2} tokens"
            if skipped
            else "no prompts given"
        )
    total = global_sums()
    from ..tuned.format import unembed_hash

    meta = dict(
        model=str(scope.name), revision=getattr(scope.model.config, "_commit_hash", None), n_layers=L,
        target_layer=target, skip_first=skip_first, max_seq_len=max_seq_len, dim_batch=dim_batch,
        corpus=corpus, n_skipped=skipped, world_size=dist.world_size, fit_seconds=round(seconds, 3),
        unembed_hash=unembed_hash(parts), logitscope_version=__version__,
    )  # fmt: skip
    meta.update(metadata or {})
    J = {layer: (s / n_done).float() for layer, s in total.items()}
    return JacobianLens(J=J, n_prompts=n_done, d_model=d, metadata=meta)


def fit(scope, prompts, *, out=None, checkpoint=None, dist: DistContext | None = None, **kw) -> JacobianLens:
    """:meth:`logitscope.Scope.fit_jacobian_lens`: :func:`fit_jacobian_lens`, and with ``out`` the lens
    written there (rank 0, atomically, float16) and the checkpoint removed once it is."""
    dist = dist or DistContext()
    lens = fit_jacobian_lens(scope, prompts, checkpoint=checkpoint, dist=dist, **kw)
    if out is not None and dist.is_main:
        lens.source = str(out)
        lens.save(out)
        if checkpoint is not None:
            Path(checkpoint).unlink(missing_ok=True)
    return lens
