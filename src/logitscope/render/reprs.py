"""Notebook displays of the result types: a compact summary and table each, never an array dump.

Each ``*_html`` returns an HTML fragment with inline styles (no script); the result classes'
``_repr_html_`` call them. The lens and diff results show the interactive widget instead
(:mod:`.widget`).
"""

from __future__ import annotations

import html

import numpy as np

from .text import label, visible

_TABLE = 'style="border-collapse:collapse;font-size:12px;font-family:ui-monospace,DejaVu Sans Mono,monospace"'
_TD = "padding:2px 8px;border-bottom:1px solid #eee;text-align:left;white-space:pre"
_TH = _TD + ";color:#666;font-weight:600;font-family:system-ui,sans-serif"


def _e(x) -> str:
    return html.escape(str(x))


def _tok(t, n: int = 14) -> str:
    return _e(label(t, n)) if t is not None else ""


def _p(x) -> str:
    x = float(x)
    return "\u2013" if x != x else f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _table(head: list[str], rows: list[list[str]], note: str = "") -> str:
    th = "".join(f'<th style="{_TH}">{h}</th>' for h in head)
    body = "".join("<tr>" + "".join(f'<td style="{_TD}">{c}</td>' for c in r) + "</tr>" for r in rows)
    foot = f'<div style="color:#888;font-size:11px">{note}</div>' if note else ""
    return f"<table {_TABLE}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>{foot}"


def _summary(text: str) -> str:
    return f'<div style="font-size:12.5px;margin:2px 0 6px"><b>{_e(text)}</b></div>'


def _rows(n: int, cap: int) -> tuple[list[int], str]:
    """At most ``cap`` row indices (the first cap-3 and the last 3) and a note on what is hidden."""
    if n <= cap:
        return list(range(n)), ""
    keep = list(range(cap - 3)) + list(range(n - 3, n))
    return keep, f"{n - len(keep)} of {n} rows not shown"


def top_tokens_html(top, *, cap: int = 20, k: int = 5) -> str:
    """TopTokens: one row per position with its top tokens and the target."""
    P = len(top.tokens)
    k = min(k, top.top_ids.shape[1] if top.top_ids.ndim == 2 else 0)
    keep, note = _rows(P, cap)
    has_target = bool((np.asarray(top.target_ids) >= 0).any())
    head = ["pos", "token", *[f"top {j + 1}" for j in range(k)]] + (["target", "p", "rank"] if has_target else [])
    rows = []
    for i in keep:
        row = [str(int(top.positions[i])), _tok(top.tokens[i])]
        row += [
            f"{_tok(top.top_tokens[i][j], 10)} <span style='color:#888'>{_p(top.top_probs[i][j])}</span>"
            for j in range(k)
        ]
        if has_target:
            t = top.target_ids[i]
            row += [
                _tok(top.target_tokens[i]),
                _p(top.target_probs[i]),
                str(int(top.target_ranks[i]) + 1) if t >= 0 else "",
            ]
        rows.append(row)
    return _summary(repr(top)) + _table(head, rows, note)


def top_tokens_repr(top) -> str:
    P = len(top.tokens)
    k = top.top_ids.shape[1] if np.ndim(top.top_ids) == 2 else 0
    last = (
        f", last: {visible(top.tokens[-1])!s} -> {visible(top.top_tokens[-1][0])!s} {float(top.top_probs[-1][0]):.3f}"
        if P and k
        else ""
    )
    return f"TopTokens({top.meta.get('model', '?')}, {P} positions x top-{k}{last})"


def logits_html(res, *, k: int = 5) -> str:
    """LogitsResult: the summary and the top-k at each position (as ``res.top(k)``)."""
    return _summary(repr(res)) + top_tokens_html(res.top(k)).split("</b></div>", 1)[1]


def layer_logits_html(ll, *, cap: int = 12) -> str:
    """LayerLogits: per layer, the top-1 probability and entropy at the last positions."""
    import torch

    S, P, _ = ll.logits.shape
    cols = list(range(max(0, P - cap), P))
    with torch.no_grad():
        logp = ll.logits[:, cols].float().log_softmax(-1)
        top = logp.max(-1).values.exp().cpu().numpy()
        ent = (-(logp.exp() * logp).sum(-1)).cpu().numpy()
    head = ["layer", *[_tok(ll.tokens[p], 8) + f"<br><span style='color:#aaa'>{p}</span>" for p in cols]]
    rows = [
        [_e(ll.layer_names[s])]
        + [f"{_p(top[s, j])} <span style='color:#888'>H {ent[s, j]:.2f}</span>" for j in range(len(cols))]
        for s in reversed(range(S))
    ]
    note = "each cell: top-1 probability and entropy (nats)" + (
        f"; last {len(cols)} of {P} positions" if len(cols) < P else ""
    )
    return _summary(repr(ll)) + _table(head, rows, note)


def eval_html(res, *, cap: int = 48) -> str:
    """EvalResult: one row per layer: cross-entropy, bits per byte, KL to final, entropy."""
    S = len(res.layer_names)
    keep, note = _rows(S, cap)
    ci = getattr(res, "ci", {}) or {}

    def cell(name, s):
        v = getattr(res, name)[s]
        band = ci.get(name)
        return f"{v:.4f}" + (
            f" <span style='color:#888'>[{band[s][0]:.3f}, {band[s][1]:.3f}]</span>" if band is not None else ""
        )

    head = ["layer", "cross-entropy", "bits/byte", "KL to final", "entropy"]
    rows = [
        [_e(res.layer_names[s]), cell("ce", s), cell("bits_per_byte", s), cell("kl_to_final", s), cell("entropy", s)]
        for s in keep
    ]
    return _summary(repr(res)) + _table(
        head, rows, note or "nats; [95% interval] where computed; res.plot() draws the curves"
    )


def attribution_html(res, *, cap: int = 20, top: int = 3) -> str:
    """AttributionResult: per position, the target's logit and the components that push it most."""
    keep, note = _rows(res.n_positions, cap)
    head = ["pos", "token", "target", "logit", *[f"#{j + 1} component" for j in range(top)]]
    rows = []
    for p in keep:
        c = res.contributions[:, p]
        order = np.argsort(-np.abs(c))[:top]
        rows.append(
            [
                str(p),
                _tok(res.tokens[p]),
                _tok(res.target_tokens[p]),
                f"{float(res.logit[p]):.3f}",
                *[f"{_e(res.components[i])} <span style='color:#888'>{float(c[i]):+.3f}</span>" for i in order],
            ]
        )
    return _summary(repr(res)) + _table(head, rows, note or "components ranked by |contribution| to the target logit")
