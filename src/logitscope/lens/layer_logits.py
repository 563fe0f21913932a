"""The escape hatch: full float32 logits of chosen stream rows, and the model's tail on any state.

:func:`layer_logits` is the lens without the reduction: for each chosen stream row the model's
own tail (:meth:`~logitscope.arch.parts.ModelParts.unembed`: final norm → rescale → pre-head modules →
head → logits bias → post-head transforms) applied at every position, kept whole because the
caller asked for it (``S × P × V`` float32). :func:`unembed` is that tail on any hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..engine.nonfinite import check_finite
from ..errors import InputError


@dataclass
class LayerLogits:
    """Full lens logits of one input at the chosen stream rows.

    ``S`` = stream rows kept, ``P`` = positions (the lens positions: input tokens, or decoder
    tokens for encoder-decoder models), ``V`` = vocabulary size.

    Attributes:
        logits: (S, P, V) float32 tensor; ``logits[s]`` equals the model's own logits with every
            block after stream row ``layers[s]`` removed.
        layers: (S,) stream rows (0 = embeddings, ``n_layers`` = final), ascending.
        layer_names: (S,) ``"embed"``, ``"1"`` … ``str(n_layers)``.
        token_ids: (P,) the token at each position; tokens: (P,) their display strings.
        target_ids: (P,) the token each position is scored against, -1 for none (as in ``lens``).
        meta: model name, model type, kind.
    """

    logits: torch.Tensor
    layers: list[int]
    layer_names: list[str]
    token_ids: np.ndarray
    tokens: list[str]
    target_ids: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        S, P = len(self.layers), len(self.tokens)
        if self.logits.dim() != 3 or tuple(self.logits.shape[:2]) != (S, P):
            raise ValueError(f"logits must be (S={S}, P={P}, V), got {tuple(self.logits.shape)}")
        self.token_ids = np.asarray(self.token_ids, dtype=np.int64).reshape(P)
        self.target_ids = np.asarray(self.target_ids, dtype=np.int64).reshape(P)

    def __repr__(self) -> str:
        S, P, V = self.logits.shape
        return f"LayerLogits({self.meta.get('model', '?')}, {S} layers x {P} positions x {V} vocab)"

    def _repr_html_(self) -> str:
        from ..render.reprs import layer_logits_html

        return layer_logits_html(self)

    def logprobs(self) -> torch.Tensor:
        """(S, P, V) float32 log-probabilities."""
        return self.logits.log_softmax(-1)

    def layer(self, layer: int | str) -> torch.Tensor:
        """(P, V) logits of one stream row, by row number or name (``"embed"``, ``"3"``, ``-1``)."""
        from ..engine.rows import stream_row

        row = stream_row(layer, self.meta.get("n_blocks", max(self.layers)))
        if row not in self.layers:
            raise InputError(f"layer {layer!r} was not kept; kept rows: {self.layer_names}")
        return self.logits[self.layers.index(row)]


def unembed(scope, h) -> torch.Tensor:
    """Implementation of :meth:`logitscope.Scope.unembed` (see there)."""
    parts = scope.require_head()
    if isinstance(h, np.ndarray):
        h = torch.from_numpy(h)
    if not isinstance(h, torch.Tensor):
        raise InputError(f"unembed takes a tensor of hidden states (..., d_model), not {type(h).__name__}")
    if not h.is_floating_point() or h.dim() == 0:
        raise InputError(f"unembed takes floating-point hidden states (..., d_model), got {h.dtype} {tuple(h.shape)}")
    dtype = next(parts.head.parameters()).dtype
    flat = h.reshape(-1, h.shape[-1]).to(device=parts.head_device, dtype=dtype)  # (N, d)
    try:  # differentiable when h requires grad (e.g. for attribution), else without autograd
        with torch.inference_mode(not h.requires_grad):
            z = parts.unembed(flat)  # (N, V) float32
    except RuntimeError as err:  # a width the tail cannot take
        from ..arch.registry import residual_width

        d = residual_width(scope.model.config)
        if d is not None and h.shape[-1] == d:
            raise
        raise InputError(
            f"hidden states of shape {tuple(h.shape)} do not fit the model's tail (its config says d_model = "
            f"{d}): {str(err).splitlines()[0]}"
        ) from err
    check_finite(z, "the model's tail logits of these hidden states (are they finite?)")
    return z.reshape(*h.shape[:-1], z.shape[-1])


def layer_logits(
    scope,
    inputs,
    *,
    layers=None,
    target=None,
    batch_size: int = 8,
    truncate: bool = False,
    device="cpu",
    lens=None,
    strict: bool = True,
):
    """Implementation of :meth:`logitscope.Scope.layer_logits` (see there)."""
    from ..engine.inputs import display_tokens, encode_all, length_batches
    from ..engine.rows import parse_rows, row_name
    from ..engine.run import capture, check_rows, row_logits
    from .run import lens_meta
    from .select import pick_lens

    parts = scope.require_head()
    chosen = pick_lens(scope, lens=lens, strict=strict)
    single, encs = encode_all(
        inputs,
        kind=parts.kind,
        tokenizer=scope.tokenizer,
        config=scope.model.config,
        vocab_size=parts.vocab_size,
        target=target,
        truncate=truncate,
    )
    rows = parse_rows(layers, parts.n_blocks)
    check_rows(chosen, rows, parts.n_blocks)
    results: list[LayerLogits | None] = [None] * len(encs)
    for idx, batch in length_batches(encs, batch_size):
        captured = capture(scope, batch, rows)
        for b, i in enumerate(idx):
            enc = encs[i]
            n = len(enc.lens_ids)
            z = torch.empty(len(rows), n, parts.vocab_size, dtype=torch.float32, device=device)  # (S, n, V)
            for s, r in enumerate(rows):  # one row at a time: no (S, B, T, V) temporary
                z[s] = row_logits(scope, captured[r][b, :n], r, chosen)
            results[i] = LayerLogits(
                logits=z,
                layers=list(rows),
                layer_names=[row_name(r) for r in rows],
                token_ids=enc.lens_ids,
                tokens=display_tokens(enc.lens_ids, scope.tokenizer),
                target_ids=enc.target_ids,
                meta={
                    "model": scope.name,
                    "model_type": parts.model_type,
                    "kind": parts.kind,
                    "n_blocks": parts.n_blocks,
                    **lens_meta(chosen),
                },
            )
        del captured
    return results[0] if single else results
