"""The logit lens: encode → one batched forward with hooks → streaming stats → LensResult."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..arch.registry import decoder_start
from ..engine.capture import pad_guard, run_captured
from ..engine.inputs import Encoded, check_top_k, display_tokens, encode_all, length_batches, track_ids
from ..engine.kernel import stream_stats
from ..errors import InputError, LogitscopeError, NonFiniteError, UnsupportedModelError
from .result import LensResult


def resolve_layers(layers, n_blocks: int) -> list[int]:
    """Stream rows from ``layers=``: ints (negative count from the end) or names ("embed", "3")."""
    if layers is None:
        return list(range(n_blocks + 1))
    if isinstance(layers, (int, str)):
        layers = [layers]
    rows = []
    for given in layers:
        item = given
        if isinstance(item, str):
            name = item.strip()
            item = 0 if name == "embed" else int(name) if name.lstrip("-").isdigit() else None
        if isinstance(item, bool) or not isinstance(item, int):
            raise InputError(f"unknown layer {given!r} in layers=; use 'embed', block numbers or ints (0..{n_blocks})")
        row = item + n_blocks + 1 if item < 0 else item
        if not 0 <= row <= n_blocks:
            raise InputError(f"layer {item} out of range: the model has streams 0..{n_blocks}")
        rows.append(row)
    if not rows:
        raise InputError("layers= selects no streams")
    return sorted(set(rows))


def _split_sublayer_names(layers, n_blocks: int) -> tuple[object, set[int]]:
    """Separate sub-layer row names (``"3.attn"``, ``"3.in+attn"``, ``"-1.attn"``) from ``layers=``.

    Returns the remaining ``layers`` (``None`` when none were given) and the blocks (1..L) whose
    after-attention row was named.
    """
    if layers is None:
        return None, set()
    items = [layers] if isinstance(layers, (int, str)) else list(layers)
    blocks, rest = set(), []
    for item in items:
        if not (isinstance(item, str) and "." in item):
            rest.append(item)
            continue
        head, _, suffix = item.strip().partition(".")
        if suffix not in ("attn", "in+attn") or not head.lstrip("-").isdigit():
            raise InputError(f"unknown layer {item!r} in layers=; sub-layer rows are named like '3.attn'")
        block = int(head) + n_blocks + 1 if int(head) < 0 else int(head)
        if not 1 <= block <= n_blocks:
            raise InputError(f"sub-layer row {item!r} out of range: the model has blocks 1..{n_blocks}")
        blocks.add(block)
    if not blocks:
        return layers, set()
    return rest, blocks


def layer_name(row: int) -> str:
    return "embed" if row == 0 else str(row)


def model_inputs(kind: str, batch: Sequence[Encoded], device, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded model kwargs for a batch; right padding leaves every real token's result unchanged."""

    def pad(seqs: list[list[int]]):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids.to(device), mask.to(device)

    ids, mask = pad([e.input_ids for e in batch])
    out = {"input_ids": ids, "attention_mask": mask}
    if kind == "seq2seq":
        out["decoder_input_ids"], out["decoder_attention_mask"] = pad([e.decoder_ids for e in batch])
    if kind != "masked":
        out["use_cache"] = False
    return out


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
    strict: bool = True,
    sublayers: bool = False,
):
    """Implementation of :meth:`logitscope.Scope.lens` (see there)."""
    parts = scope.require_head()
    layers, attn_rows = _split_sublayer_names(layers, parts.n_blocks)
    sublayers = sublayers or bool(attn_rows)  # naming a row "3.attn" asks for the sub-layer lens
    layout = None
    if sublayers:  # rows "l.attn" between the block rows (sublayers.py)
        from ..engine.sublayers import layout_of

        if tuned is not None:
            raise InputError("sublayers=True works with the logit lens only, not with a tuned lens")
        layout = layout_of(parts, scope.model.config)
    if tuned is not None:  # a tuned lens: translate rows 0..L-1, then the same tail and kernel
        from ..tuned.lens import resolve as resolve_tuned

        tuned = resolve_tuned(scope, tuned, strict=strict)
    vocab_size = parts.vocab_size
    top_k = check_top_k(top_k, vocab_size)
    tok, config = scope.tokenizer, scope.model.config
    single, encs = encode_all(
        inputs, kind=parts.kind, tokenizer=tok, config=config, vocab_size=vocab_size, target=target, truncate=truncate
    )
    tracked = torch.tensor(track_ids(track, tok, vocab_size), dtype=torch.long)
    L = parts.n_blocks
    if attn_rows:  # only the rows named: blocks given as ints/names, "l.attn" rows by block
        from ..engine.sublayers import with_sublayers

        blocks = set(resolve_layers(layers, L)) if layers else set()
        every = with_sublayers(range(L + 1), layout)
        rows = [r for r in every if (r in blocks if isinstance(r, int) else int(r.split(".")[0]) in attn_rows)]
    else:
        rows = resolve_layers(layers, L)
        if layout is not None:
            from ..engine.sublayers import with_sublayers

            rows = with_sublayers(rows, layout)
    stat_rows = [r for r in rows if r != L] + [L]  # the kernel wants the final stream last
    results: list[LensResult | None] = [None] * len(encs)
    for idx, batch in length_batches(encs, batch_size):
        kwargs = model_inputs(parts.kind, batch, scope.input_device, scope.pad_id)
        real = kwargs.get("decoder_attention_mask", kwargs["attention_mask"])  # (B, T) the blocks' sequence
        with pad_guard(parts.blocks, real):  # NaN in pad positions never reaches real ones
            if layout is None:
                captured = run_captured(scope.model, parts.blocks, stat_rows, **kwargs)
            else:
                from ..engine.sublayers import run_captured_rows

                captured = run_captured_rows(scope.model, parts.blocks, layout, stat_rows, **kwargs)
        lengths = [len(e.lens_ids) for e in batch]
        valid = torch.zeros(len(batch), max(lengths), dtype=torch.bool)
        for i, n in enumerate(lengths):
            valid[i, :n] = True
        valid = valid.to(captured[L].device)
        ref = captured[L]
        streams = ref.new_empty(len(stat_rows), sum(lengths), ref.shape[-1])  # (S, sum(lengths), d)
        del ref
        for i, r in enumerate(stat_rows):  # pop as we copy: peak ≈ one copy of the streams
            # rows may sit on other devices; models that pad internally (Longformer) are cut back
            streams[i] = captured.pop(r).to(valid.device)[:, : valid.shape[1]][valid]
        if tuned is not None:
            tuned.translate_rows_(streams, stat_rows)
        tgt = torch.tensor([t for e in batch for t in e.target_ids], dtype=torch.long)
        try:
            stats = stream_stats(
                streams,
                parts.unembed,
                targets=tgt,
                track=tracked,
                top_k=top_k,
                chunk_rows=scope.chunk_size,
                vocab_size=vocab_size,
                device=parts.head_device,
            )
        except NonFiniteError as err:  # say why: NaN weights, padding or overflow (nonfinite.py)
            from ..engine.nonfinite import explain

            raise explain(scope, err, streams=streams, rows=stat_rows, batch=batch) from err
        del streams
        keep = [stat_rows.index(r) for r in rows]  # back to ascending stream order
        offset = 0
        for i, enc, n in zip(idx, batch, lengths):
            sl = slice(offset, offset + n)
            offset += n
            results[i] = _make_result(scope, enc, stats, keep, rows, sl, tracked)
            results[i].meta.update(lens="tuned" if tuned is not None else "logit")
            if tuned is not None:
                results[i].meta["tuned_lens"] = tuned.describe()
            if layout is not None:
                results[i].meta["sublayers"] = "parallel" if layout.parallel else "sequential"
    return results[0] if single else results


def _make_result(scope, enc: Encoded, stats, keep: list[int], rows: list[int], sl: slice, tracked) -> LensResult:
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
        layer_names=[layer_name(r) for r in rows],
        layers=np.asarray([int(str(r).split(".")[0]) for r in rows]),  # "3.attn" -> 3
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


# Self-check tolerance on log-probabilities, by the model's dtype (half precision: 5e-2).
_SELF_CHECK_TOL = {torch.float64: 1e-5, torch.float32: 1e-3}


def self_check(scope, *, n_tokens: int = 6) -> float:
    """Compare the lens's final row with the model's own logits on a short probe.

    Returns the max absolute difference of log-probabilities; raises
    :class:`UnsupportedModelError` when it is too large to trust the lens.
    """
    parts, model = scope.parts, scope.model
    V = parts.vocab_size
    probe = [(7 + 13 * i) % V for i in range(n_tokens)]
    start = decoder_start(model.config, probe)  # any start token checks the tail; the model's own if it has one
    enc = Encoded(probe, [probe[0] if start is None else start, probe[0]] if parts.kind == "seq2seq" else None, [])
    kwargs = model_inputs(parts.kind, [enc], scope.input_device, scope.pad_id)
    with torch.inference_mode():
        ref = model(**kwargs).logits[0].float().log_softmax(-1)
        try:
            captured = run_captured(model, parts.blocks, [parts.n_blocks], **kwargs)
            ours = parts.unembed(captured[parts.n_blocks][0, : ref.shape[0]]).to(ref.device).log_softmax(-1)
            diff = float((ref - ours).abs().max()) if ours.shape == ref.shape else float("inf")
        except LogitscopeError:
            raise
        except Exception as err:  # noqa: BLE001 - e.g. shapes that do not chain, a head returning a tuple
            diff, problem = float("inf"), f"{type(err).__name__}: {str(err).splitlines()[0]}"
        else:
            problem = f"log-probabilities differ by {diff:.3g}"
    tol = _SELF_CHECK_TOL.get(next(model.parameters()).dtype, 5e-2)
    if not diff <= tol:
        raise UnsupportedModelError(
            f"logitscope cannot reproduce the logits of architecture {parts.model_type!r} "
            f"({type(model).__name__}): its lens of the last layer does not reproduce the model's own "
            f"output ({problem}; tolerance {tol}). Refusing rather than giving wrong numbers; "
            f"parts used: {parts.describe()}"
        )
    return diff
