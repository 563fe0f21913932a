"""The lens over inputs: encode → rows → the engine's statistics (any lens) → one LensResult per input."""

from __future__ import annotations

import numpy as np
import torch

from ..engine.inputs import Encoded, check_top_k, display_tokens, encode_all, length_batches, track_ids
from ..engine.lens import Lens, is_identity
from ..engine.rows import Row, block_of, is_sublayer, names_sublayers, parse_rows, row_name
from ..engine.run import check_rows, lens_stats
from ..errors import InputError
from .result import LensResult
from .select import pick_lens


def lens_rows(scope, lens: Lens, layers, *, sublayers: bool = False):
    """The rows a lens query reads, and the sub-layer tap they need (``None`` without sub-layer rows).

    Naming a sub-layer row (``"3.attn"``) asks for the sub-layer lens. With ``layers=None`` a lens
    that covers only some stream rows (a Jacobian lens fitted at chosen layers) reads those.

    Raises:
        InputError: an unknown or out-of-range row, or a row the lens has no transform for.
        UnsupportedModelError: sub-layer rows of an architecture that has none.
    """
    parts = scope.require_head()
    L = parts.n_blocks
    tap = None
    if sublayers or names_sublayers(layers):
        from ..engine.sublayers import sublayer_tap

        tap = sublayer_tap(parts, scope.model.config)
    rows = parse_rows(layers, L, suffix=tap.suffix if tap else None, every_sublayer=sublayers)
    if layers is None and not is_identity(lens):
        rows = [r for r in rows if r == L or is_sublayer(r) or lens.covers(r)]
    check_rows(lens, rows, L)
    return rows, tap


def run_lens(
    scope,
    inputs,
    *,
    target=None,
    track=None,
    layers=None,
    top_k: int = 5,
    batch_size: int = 8,
    truncate: bool = False,
    tuned=None,
    lens=None,
    strict: bool = True,
    sublayers: bool = False,
    jacobian=None,
):
    """Implementation of :meth:`logitscope.Scope.lens` (see there)."""
    parts = scope.require_head()
    if jacobian is not None:  # a JacobianLens, a J-lens file, or "demo" (the demo model's)
        if lens is not None or tuned is not None:
            raise InputError("give jacobian= alone, not with lens= or tuned=: a result holds one lens")
        from ..jacobian import JacobianLens

        lens = JacobianLens.load(jacobian)
    chosen = pick_lens(scope, lens=lens, tuned=tuned, strict=strict)
    rows, tap = lens_rows(scope, chosen, layers, sublayers=sublayers)
    vocab_size = parts.vocab_size
    top_k = check_top_k(top_k, vocab_size)
    tok, config = scope.tokenizer, scope.model.config
    single, encs = encode_all(
        inputs, kind=parts.kind, tokenizer=tok, config=config, vocab_size=vocab_size, target=target, truncate=truncate
    )
    tracked = torch.tensor(track_ids(track, tok, vocab_size), dtype=torch.long)
    results: list[LensResult | None] = [None] * len(encs)
    for idx, batch in length_batches(encs, batch_size):
        tgt = torch.tensor([t for e in batch for t in e.target_ids], dtype=torch.long)
        stats, stat_rows = lens_stats(scope, batch, rows, chosen, tap=tap, targets=tgt, track=tracked, top_k=top_k)
        keep = [stat_rows.index(r) for r in rows]  # back to depth order
        offset = 0
        for i, enc in zip(idx, batch):
            n = len(enc.lens_ids)
            sl = slice(offset, offset + n)
            offset += n
            results[i] = _make_result(scope, enc, stats, keep, rows, sl, tracked)
            results[i].meta.update(lens_meta(chosen))
            if tap is not None:
                results[i].meta["sublayers"] = "parallel" if tap.parallel else "sequential"
    return results[0] if single else results


def lens_meta(lens: Lens) -> dict[str, str]:
    """What results record about their lens: ``{"lens": kind}`` and, for other lenses, ``{f"{kind}_lens": describe()}``."""
    if is_identity(lens):
        return {"lens": "logit"}
    return {"lens": lens.kind, f"{lens.kind}_lens": lens.describe()}


def _make_result(scope, enc: Encoded, stats, keep: list[int], rows: list[Row], sl: slice, tracked) -> LensResult:
    parts, tok = scope.parts, scope.tokenizer
    pick = lambda t: t[keep][:, sl].numpy()  # noqa: E731
    top_ids = pick(stats.top_ids)
    target_ids = np.asarray(enc.target_ids, dtype=np.int64)
    ids = (
        set(top_ids.ravel().tolist())
        | set(enc.lens_ids)
        | set(tracked.tolist())
        | set(target_ids[target_ids >= 0].tolist())
    )
    ids = sorted(ids)
    vocab = dict(zip(ids, display_tokens(ids, tok)))
    logprob = pick(stats.target_logprob)
    return LensResult(
        tokens=[vocab[i] for i in enc.lens_ids],
        token_ids=np.asarray(enc.lens_ids),
        layer_names=[row_name(r) for r in rows],
        layers=np.asarray([block_of(r) for r in rows]),  # "3.attn" -> 3
        entropy=pick(stats.entropy),
        kl_to_final=pick(stats.kl_to_final),
        top_ids=top_ids,
        top_probs=pick(stats.top_probs),
        target_ids=target_ids,
        target_prob=np.exp(logprob),
        target_logprob=logprob,
        target_rank=pick(stats.target_rank),
        tracked_ids=tracked.numpy(),
        tracked_probs=np.exp(stats.tracked_logprobs[:, keep][:, :, sl].numpy()),
        tracked_ranks=stats.tracked_ranks[:, keep][:, :, sl].numpy(),
        vocab=vocab,
        source_tokens=display_tokens(enc.input_ids, tok) if enc.decoder_ids is not None else None,
        meta={"model": scope.name, "model_type": parts.model_type, "kind": parts.kind, "n_blocks": parts.n_blocks},
    )
