"""Training a tuned lens: KL(final ‖ translated layer) at every position, one layer at a time.

For a batch of windows, one forward with hooks captures every stream row ``h_0 .. h_L``
(:func:`logitscope.engine.check.capture_checked`; the model's own logits are never computed, except
for the few positions of a self-check left pending by a model on disk, which rides along the first
forward). A streamed model reads its weights once per forward, so by default a step's windows go
through in as few forwards as memory allows (:func:`forward_windows`). Then, for
chunks of ``c`` positions, the final row's log-probabilities ``log p_f = log_softmax(tail(h_L))``
are computed once (no gradient) and each layer ``l < L`` is projected and backpropagated on its
own::

    z_l = tail(h_l + W_l h_l + b_l)                                  # (c, V), graph through the frozen tail
    KL_l = Σ p_f log p_f − Σ p_f · z_l + Σ logsumexp(z_l)            # summed over the chunk

so at most one ``(c, V)`` logits tensor (and its gradient) is alive, never (layers × tokens ×
vocab). The tail's parameters are frozen for the duration; gradients reach only ``W_l, b_l``.

Optimiser (tuned-lens 0.2.0 / the paper): SGD with Nesterov momentum 0.9, learning rate
``lr × (1 − momentum)`` (``lr`` = 1 by default), weight decay 1e-3, linear decay to zero after
``warmup_steps``, gradients clipped to norm 1 over the whole lens. Each step uses
``tokens_per_step`` tokens in windows of ``seq_len``.

Data parallel (torchrun): every rank reads the same window sequence and takes windows
``j % world_size == rank`` of each step's batch; the per-layer loss is normalised by the *global*
token count and gradients are summed across ranks (what DDP does), so N processes compute the
gradient of the single-process run and give the same lens up to float summation order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..arch.weights import frozen
from ..data.distributed import DistContext, streamed_batch_size
from ..data.windows import resolve_seq_len, token_stream, windows
from ..engine.check import capture_checked
from ..engine.kernel import default_chunk_rows
from ..errors import EmptyInputError, InputError, LensMismatchError
from .checkpoint import check_resumable, default_path, load_checkpoint, save_checkpoint
from .lens import TunedLens

SHUFFLE_TOKENS = 2**22  # tokens shuffled together, as windows (a block shuffle: deterministic, 32 MB)


@dataclass
class TrainConfig:
    """Settings of a training run (defaults: the paper's, except ``steps`` and ``tokens_per_step``).

    Attributes:
        steps: optimiser steps (paper: 250).
        tokens_per_step: tokens per step over all processes (paper: 2**18).
        seq_len: tokens per window (default: 2048, capped at the model's context).
        lr: learning-rate scale; SGD's rate is ``lr × (1 − momentum)``.
        momentum: Nesterov momentum. weight_decay: L2 pull towards the identity translator.
        warmup_steps: linear warm-up steps before the linear decay.
        grad_clip: maximum gradient norm over the whole lens.
        seed: seed of the window shuffle.
        batch_size: windows per forward pass on each process (memory only; not the step size).
            ``None``: 8, or for a streamed model (each forward a pass over its weights on disk)
            as many of the step's windows as memory holds, so a step reads the weights once.
        chunk_rows: positions projected per backward (default: ~16M logits per chunk).
        save_every: steps between checkpoints (0: none).
    """

    steps: int = 250
    tokens_per_step: int = 2**18
    seq_len: int | None = None
    lr: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-3
    warmup_steps: int = 0
    grad_clip: float = 1.0
    seed: int = 0
    batch_size: int | None = None
    chunk_rows: int | None = None
    save_every: int = 50

    def check(self) -> None:
        ints = ("steps", "tokens_per_step", "batch_size")
        for name in ints:
            v = getattr(self, name)
            if name == "batch_size" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, not {v!r}")
        for name in ("warmup_steps", "save_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"{name} must be a non-negative integer, not {v!r}")
        if self.chunk_rows is not None and (
            isinstance(self.chunk_rows, bool) or not isinstance(self.chunk_rows, int) or self.chunk_rows < 1
        ):
            raise InputError(f"chunk_rows must be a positive integer or None, not {self.chunk_rows!r}")
        if not self.lr > 0 or not 0 <= self.momentum < 1 or not self.weight_decay >= 0 or not self.grad_clip > 0:
            raise InputError("need lr > 0, 0 <= momentum < 1, weight_decay >= 0 and grad_clip > 0")

    def lr_factor(self, step: int) -> float:
        """Linear warm-up, then linear decay to zero at ``steps`` (transformers' linear schedule)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return max(0.0, (self.steps - step) / max(1, self.steps - self.warmup_steps))


def train_lens(
    scope,
    data,
    *,
    config: TrainConfig | None = None,
    lens: TunedLens | None = None,
    checkpoint=None,
    resume: bool = False,
    dist: DistContext | None = None,
    progress: Callable[[dict], None] | None = None,
) -> TunedLens:
    """Implementation of :meth:`logitscope.Scope.train_lens` (see there).

    Returns the trained lens; ``lens.training_log`` holds the settings and per-step losses.
    """
    config = config or TrainConfig()
    config.check()
    parts = scope.require_head()
    if parts.kind != "causal":
        raise InputError(f"tuned-lens training reads token windows of a causal LM, not a {parts.kind} model")
    dist = dist or DistContext()
    seq_len = resolve_seq_len(config.seq_len if config.seq_len is not None else 2048, scope.model.config)
    settings = dict(asdict(config), seq_len=seq_len)
    n_windows = max(1, config.tokens_per_step // seq_len)  # windows per step, all processes together
    if n_windows < dist.world_size:
        raise InputError(f"{n_windows} windows per step cannot be shared by {dist.world_size} processes")
    lens = lens if lens is not None else TunedLens.from_scope(scope)
    lens.check(scope)
    device = parts.head_device
    lens.to(device=device, dtype=torch.float32)
    params = [p for p in lens.parameters()]
    opt = torch.optim.SGD(
        params, lr=config.lr * (1 - config.momentum), momentum=config.momentum, nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    log: list[dict] = []
    start = 0
    if resume:
        state = load_checkpoint(checkpoint)
        check_resumable(state, settings, checkpoint)
        old = state.get("lens_config", {})
        if (old.get("d_model"), old.get("num_hidden_layers")) != (lens.d_model, lens.n_layers):
            raise LensMismatchError(f"{checkpoint} holds a lens for another model (d_model/layers differ)")
        lens.translators.load_state_dict(state["translators"])
        opt.load_state_dict(state["optimizer"])
        start, log = int(state["step"]), list(state["log"])
    chunk = config.chunk_rows or default_chunk_rows(parts.vocab_size)
    per_forward = config.batch_size or forward_windows(scope, seq_len, chunk, n_windows, dist)
    settings["batch_size"] = per_forward  # the log records the windows per forward used
    stream = _windows_forever(data, scope, seq_len, config.seed)
    for _ in range(start * n_windows):  # a resumed run skips the windows already used
        next(stream)
    L = parts.n_blocks
    t0 = time.perf_counter()
    with frozen(scope.model):
        for step in range(start, config.steps):
            batch = [next(stream) for _ in range(n_windows)]
            mine = [w for j, w in enumerate(batch) if dist.owns(j)]
            lr = config.lr * (1 - config.momentum) * config.lr_factor(step)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=False)
            n_tokens = n_windows * seq_len
            sums = torch.zeros(L, dtype=torch.float64)
            for b0 in range(0, len(mine), per_forward):
                x = np.stack(mine[b0 : b0 + per_forward])
                sums += _accumulate(scope, parts, lens, x, chunk, n_tokens)
            grad_norm = _sync_and_step(lens, opt, sums, dist, config.grad_clip)
            record = {"step": step + 1, "lr": lr, "grad_norm": grad_norm, "kl": (sums / n_tokens).tolist()}
            record["tokens"] = (step + 1) * n_tokens
            record["elapsed_s"] = round(time.perf_counter() - t0, 3)
            log.append(record)
            if progress is not None and dist.is_main:
                progress(dict(record, steps=config.steps, start=start))
            last = step + 1 == config.steps
            if checkpoint is not None and config.save_every and (step + 1) % config.save_every == 0 and not last:
                if dist.is_main:
                    save_checkpoint(checkpoint, step=step + 1, lens=lens, optimizer=opt, settings=settings, log=log)
                dist.barrier()
    lens.to("cpu")
    lens.training_log = {"settings": settings, "world_size": dist.world_size, "steps": log}
    return lens


def forward_windows(scope, seq_len: int, chunk: int, n_windows: int, dist: DistContext) -> int:
    """Windows per forward when ``batch_size`` is not given: 8, or for a streamed model all of this
    process's windows of a step that memory holds (one read of the weights per step)."""
    streamed = streamed_batch_size(scope, seq_len, chunk)
    if streamed is None:
        return 8
    mine = -(-n_windows // dist.world_size)
    return max(1, min(mine, streamed))


def _accumulate(scope, parts, lens: TunedLens, x: np.ndarray, chunk: int, n_tokens: int) -> torch.Tensor:
    """Backpropagate KL(final ‖ lens) of windows ``x`` (b, T), layer by layer; (L,) float64 KL sums."""
    L = parts.n_blocks
    b, T = x.shape
    ids = torch.from_numpy(x).to(scope.input_device)
    # a pending self-check (weights on disk) rides along the first forward
    captured = capture_checked(scope, list(range(L + 1)), input_ids=ids, use_cache=False)
    streams = [captured.pop(r).reshape(b * T, -1) for r in range(L + 1)]  # L+1 × (b·T, d) inference tensors
    sums = torch.zeros(L, dtype=torch.float64)
    for p0 in range(0, b * T, chunk):
        p1 = min(b * T, p0 + chunk)
        with torch.no_grad():
            logp_f = parts.unembed(streams[L][p0:p1].clone()).log_softmax(-1)  # (c, V)
            p_f = logp_f.exp_()
            neg_h = torch.xlogy(p_f, p_f).sum()  # Σ p_f log p_f
        for layer in range(L):
            h = streams[layer][p0:p1].clone()  # a normal tensor: inference tensors cannot enter autograd
            z = parts.unembed(lens.translate(h, layer))  # (c, V) float32
            kl = neg_h - (p_f * z).sum() + torch.logsumexp(z, dim=-1).sum()
            (kl / n_tokens).backward()
            sums[layer] += float(kl.detach())
            del z, kl
    return sums


def _sync_and_step(lens: TunedLens, opt, sums: torch.Tensor, dist: DistContext, grad_clip: float) -> float:
    """Sum gradients and losses over ranks (in place), clip, step; returns the gradient norm."""
    params = list(lens.parameters())
    if dist.enabled:
        import torch.distributed as td

        flat = torch.cat([p.grad.reshape(-1) for p in params] + [sums.float().to(params[0].device)])
        flat = flat.to(dist.device)
        td.all_reduce(flat, op=td.ReduceOp.SUM)
        flat = flat.to(params[0].device)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n
        sums.copy_(flat[offset:].double().cpu())
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    return float(norm)


def _windows_forever(data, scope, seq_len: int, seed: int) -> Iterator[np.ndarray]:
    """Input windows of exactly ``seq_len`` tokens, block-shuffled; the data is read again when exhausted.

    Re-reading needs data that can be read twice (a path, a list, an array); a one-shot iterator
    that runs out is an error.
    """
    epoch = 0
    while True:
        chunks, _ = token_stream(data, scope.tokenizer, scope.model.config)
        rng = np.random.default_rng([seed, epoch])
        got = 0
        block: list[np.ndarray] = []
        block_windows = max(1, SHUFFLE_TOKENS // seq_len)
        V = scope.require_head().vocab_size
        for w in windows(chunks, seq_len):
            if len(w) < seq_len + 1:
                continue  # the short last window: training batches hold equal lengths
            if w.min() < 0 or w.max() >= V:
                raise InputError(f"token ids outside the vocabulary (size {V}) in the training data")
            block.append(w[:-1])
            if len(block) == block_windows:
                for i in rng.permutation(len(block)):
                    yield block[i]
                got += len(block)
                block = []
        for i in rng.permutation(len(block)):
            yield block[i]
        got += len(block)
        if got == 0:
            raise EmptyInputError(f"the training data holds fewer than {seq_len + 1} tokens: no window to train on")
        if hasattr(data, "__next__"):  # a generator or iterator cannot be read again
            raise InputError("the training data ran out (a one-shot iterator); give a path, a list, or fewer steps")
        epoch += 1


__all__ = ["TrainConfig", "train_lens", "default_path"]
