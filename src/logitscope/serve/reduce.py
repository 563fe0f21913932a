"""Requests → small JSON payloads: top-k and statistics, never a full vocabulary row.

Every function here is blocking torch work run in a worker thread (see ``slots.py``); it takes
the served :class:`~logitscope.serve.models.Entry` objects and a validated request and returns
plain JSON-ready data. Size limits that need the tokenizer are checked here too.
"""

from __future__ import annotations

from typing import Any

from ..diff.run import row_pairs
from ..engine.inputs import check_vocab, display_tokens, to_ids, track_ids
from ..errors import InputError
from ..io.jsonable import json_floats
from ..render.view import auto_stride, select_rows
from .column import encode_input, kl_by_layer, lens_column, paired_position, position_rows, target_start, top1
from .limits import Limits


class LimitError(InputError):
    """A request is larger than the server's limits allow (HTTP 413)."""


def check_tokens(enc, limits: Limits) -> None:
    """Refuse inputs with more tokens than ``limits.max_tokens`` (encoder and lens positions)."""
    n = max(len(enc.input_ids), len(enc.lens_ids))
    if n > limits.max_tokens:
        raise LimitError(f"the input has {n} tokens; this server accepts at most {limits.max_tokens} (--max-tokens)")


def tuned_of(entry, req):
    """The row transform a request asks for: the tuned lens (``lens="tuned"``), the Jacobian lens
    (``lens="jacobian"``), else ``None`` (the logit lens).

    Raises:
        InputError: the model has no such lens on this server.
    """
    if req.lens == "logit":
        return None
    lens = entry.tuned if req.lens == "tuned" else entry.jacobian
    if lens is None:
        flag = "--tuned NAME=DIR" if req.lens == "tuned" else "--jacobian NAME=FILE"
        raise InputError(f"model {entry.name!r} has no {req.lens} lens on this server; start it with {flag}")
    return lens


def lens_result(entry, req, limits: Limits):
    """Run ``scope.lens`` for a :class:`~logitscope.serve.schemas.LensRequest`; returns ``(result, stride)``.

    With ``sublayers`` the stride picks block rows and each keeps its ``"l.attn"`` row, so the
    automatic stride aims at half as many block rows.
    """
    scope = entry.scope
    parts = scope.require_head()
    transform = tuned_of(entry, req)
    check_tokens(encode_input(scope, req.text, req.target), limits)
    n_rows = max(2, (limits.max_rows + 1) // 2) if req.sublayers else limits.max_rows
    stride = int(req.stride) if req.stride else auto_stride(parts.n_blocks + 1, n_rows)
    rows = select_rows(parts.n_blocks + 1, stride)
    if transform is not None:  # a Jacobian lens has no row 0 (nor other rows it was not fitted at)
        rows = [r for r in rows if r == parts.n_blocks or transform.covers(r)]
    top_k = min(req.top_k, parts.vocab_size)
    res = scope.lens(
        req.text,
        target=req.target,
        track=list(req.track) or None,
        layers=rows,
        top_k=top_k,
        lens=transform,
        sublayers=req.sublayers,
    )
    return res, stride


def lens_payload(entry, req, limits: Limits) -> dict[str, Any]:
    """The lens as ``LensResult.to_dict()`` (the CLI's JSON schema) plus the stride used."""
    res, stride = lens_result(entry, req, limits)
    out = res.to_dict()
    out["stride"] = stride
    out["n_streams_total"] = entry.scope.parts.n_blocks + 1
    out["model_name"] = entry.name
    return out


def column_payload(entry, req, limits: Limits) -> dict[str, Any]:
    """Probability and rank of chosen tokens at every layer of one position, plus each layer's entropy and top-1."""
    scope = entry.scope
    parts = scope.require_head()
    enc = encode_input(scope, req.text, req.target)
    check_tokens(enc, limits)
    check_vocab(list(req.ids), parts.vocab_size)
    ids = list(dict.fromkeys([*req.ids, *track_ids(list(req.tokens), scope.tokenizer, parts.vocab_size)]))
    col = lens_column(
        scope, req.text, req.target, req.position, ids, sublayers=req.sublayers, lens=tuned_of(entry, req)
    )
    return {
        "model_name": entry.name,
        "position": col.position,
        "token": display_tokens([enc.lens_ids[col.position]], scope.tokenizer)[0],
        "layer_names": col.layer_names,
        "ids": ids,
        "tokens": display_tokens(ids, scope.tokenizer),
        "probs": json_floats(col.probs),
        "ranks": col.ranks.tolist(),
        "entropy": json_floats(col.entropy),
        "top1_ids": col.top1_ids,
        "top1_tokens": display_tokens(col.top1_ids, scope.tokenizer),
    }


def compare_payload(entry_a, entry_b, req, limits: Limits) -> dict[str, Any]:
    """Per-layer KL between two inputs' lens distributions at one position each.

    Raises:
        InputError: the two models have different vocabularies (KL between them means nothing).
    """
    if entry_a is not entry_b and (entry_a.vocab_key is None or entry_a.vocab_key != entry_b.vocab_key):
        va, vb = entry_a.summary["vocab_size"], entry_b.summary["vocab_size"]
        raise InputError(
            f"cannot compare {entry_a.name!r} and {entry_b.name!r}: their vocabularies differ "
            f"({va} vs {vb} tokens, or different token tables); compare needs models that share a tokenizer"
        )
    encs = []
    for entry, side in ((entry_a, req.a), (entry_b, req.b)):
        enc = encode_input(entry.scope, side.text, side.target)
        check_tokens(enc, limits)
        start = target_start(enc, bool(side.target) and entry.scope.parts.kind != "masked")
        encs.append((enc, start))
    positions = [req.a.position, req.b.position]
    if positions[0] is None and positions[1] is None:
        positions[0] = -1
    for i in (0, 1):  # negative positions count from the end
        if positions[i] is not None and positions[i] < 0:
            positions[i] += len(encs[i][0].lens_ids)
    for i, j in ((0, 1), (1, 0)):  # null: paired with the other side's position
        if positions[i] is None:
            positions[i] = paired_position(positions[j], *encs[j], *encs[i])
    cols, sides = [], []
    for entry, (enc, _), pos in zip((entry_a, entry_b), encs, positions):
        col = position_rows(entry.scope, enc, pos)
        best = top1(col)
        cols.append(col)
        sides.append(
            {
                "model_name": entry.name,
                "position": col.position,
                "n_positions": len(enc.lens_ids),
                "token": display_tokens([enc.lens_ids[col.position]], entry.scope.tokenizer)[0],
                "layer_names": col.layer_names,
                "top1_tokens": display_tokens(best, entry.scope.tokenizer),
            }
        )
    pairs = row_pairs(cols[0].h.shape[0] - 1, cols[1].h.shape[0] - 1)
    kl_ab, kl_ba = kl_by_layer(cols[0], cols[1], pairs)
    return {
        "a": sides[0],
        "b": sides[1],
        "pairs": [list(p) for p in pairs],
        "kl_ab": json_floats(kl_ab),
        "kl_ba": json_floats(kl_ba),
        "alignment": "identity" if cols[0].h.shape[0] == cols[1].h.shape[0] else "fraction of depth",
    }


def logits_payload(entry, req, limits: Limits) -> dict[str, Any]:
    """The model's own top-k (at mask positions for masked LMs), or greedy generation."""
    scope = entry.scope
    check_tokens(encode_input(scope, req.text, req.target), limits)
    if req.generate is not None and req.generate > limits.max_generate:
        raise LimitError(f"generate {req.generate}: this server generates at most {limits.max_generate} tokens")
    out = scope.logits(req.text, target=req.target, generate=req.generate)
    k = min(req.top_k, out.logits.shape[-1])
    positions = out.mask_positions if len(out.mask_positions) else None
    top = out.top(k, positions=positions)
    del out
    data = top.to_dict()
    data["model_name"] = entry.name
    data["kind"] = scope.kind
    data["masked"] = positions is not None
    return data


def nearest_payload(entry, req, limits: Limits) -> dict[str, Any]:
    """Nearest tokens (input embeddings) to each token of ``req.text``."""
    scope = entry.scope
    if req.k > limits.max_nearest:
        raise LimitError(f"{req.k} neighbours asked; this server returns at most {limits.max_nearest}")
    ids = to_ids(req.text, scope.tokenizer, special_tokens=False)
    if len(ids) > limits.max_nearest_queries:
        raise LimitError(
            f"the text has {len(ids)} tokens; the embeddings tab looks up at most {limits.max_nearest_queries}"
        )
    near = scope.nearest(ids, k=req.k, metric=req.metric)
    return {"model_name": entry.name, "queries": [n.to_dict() for n in near]}


def export_bytes(entry, req, limits: Limits) -> tuple[bytes, str, str]:
    """The current view as a file: ``(content, media type, file name)``.

    JSON and CSV are what ``logitscope lens -o x.json`` / ``x.csv`` write; HTML is the
    self-contained interactive heatmap of ``--plot x.html`` (plotly.js embedded).
    """
    from ..lens.export import frame, to_json

    res, _ = lens_result(entry, req, limits)
    stem = f"logitscope-{entry.name.replace('/', '_')}"
    if req.format == "json":
        return to_json(res).encode(), "application/json", f"{stem}.json"
    if req.format == "csv":
        return frame(res).to_csv(index=False).encode(), "text/csv", f"{stem}.csv"
    from ..render.interactive import heatmap_html

    fig = heatmap_html(res, metric=req.metric)
    return fig.to_html(include_plotlyjs=True, full_html=True).encode(), "text/html", f"{stem}-{req.metric}.html"
