"""The interactive lens in a notebook output: the viewer's own lens grid, panel and trajectories.

``res.show()`` and a result's rich display return HTML that carries the viewer's ES modules
inlined (:mod:`.assets`), its stylesheet scoped to the widget, and a bounded payload: the top-k of
each cell (at most ``max_top_k``, fewer when the grid is large), the per-cell statistics and the
tracked tokens, packed as base64 16-bit arrays. No server, no CDN, no ipywidgets; each output has
its own root id and closure, so several widgets in one notebook never interfere.

Precision: probabilities are stored as 16-bit log-probabilities (relative error < 3.1e-4),
entropy and KL as 16-bit steps of their range; token ids and ranks are exact.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib

import numpy as np

from .metrics import MISSING, colorscale, metric_specs

LOG_STEP = 40.0 / 65534  # log16: q = round(-ln p / LOG_STEP); p < e^-40 is stored as e^-40
MAX_TOP_K = 10
MAX_CELLS_K = 110_000  # cells x shown top-k above which k shrinks (down to 3)
MAX_POSITIONS = 1000  # the last positions kept
COMPRESS_ABOVE = 200_000  # bytes of JSON above which the payload is sent deflated


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _pack(a: np.ndarray, enc: str, **extra) -> dict:
    """One array for widget.js's ``unpack``: its shape, an encoding and little-endian bytes."""
    a = np.asarray(a)
    out = {"shape": list(a.shape), "enc": enc, **extra}
    if enc == "log16":
        x = a.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.round(-np.log(np.clip(x, np.exp(-40.0), 1.0)) / LOG_STEP)
        q = np.where(np.isfinite(x), q, 65535).astype("<u2")
        out.update(step=LOG_STEP, data=_b64(q))
    elif enc == "lin16":
        x = a.astype(np.float64)
        finite = x[np.isfinite(x)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        step = (hi - lo) / 65534 or 1.0
        q = np.where(np.isfinite(x), np.round((np.nan_to_num(x, nan=lo) - lo) / step), 65535).astype("<u2")
        out.update(lo=lo, step=step, data=_b64(q))
    elif enc == "i32":
        out["data"] = _b64(a.astype("<i4"))
    elif enc == "u16":
        out["data"] = _b64(a.astype("<u2"))
    else:
        raise ValueError(enc)
    return out


def _ids(a: np.ndarray, vocab_ids: np.ndarray) -> dict:
    """Token ids as 16-bit indices into the side's sorted ``vocab_ids`` (exact), else 32-bit ids."""
    if len(vocab_ids) >= 65535:
        return _pack(a, "i32")
    index = np.searchsorted(vocab_ids, a)
    return {"shape": list(a.shape), "enc": "ids", "data": _b64(index.astype("<u2"))}


def _vocab(result, used) -> dict:
    """The display strings of the ids a side uses: packed ids and a parallel list of strings."""
    used = np.asarray(used, dtype=np.int64)
    return {"vocab_ids": _pack(used, "i32"), "vocab_tokens": [result.token(int(i)) for i in used]}


def _ints(a: np.ndarray) -> dict:
    """Non-negative integers (ranks) in 16 bits when they fit, else 32."""
    a = np.asarray(a)
    return _pack(a, "u16" if a.size == 0 or (a.min() >= 0 and a.max() < 65535) else "i32")


def _fill(shape, value=None) -> dict:
    return {"shape": list(shape), "fill": value}


def _limits(S: int, P: int, k: int, max_top_k: int, max_cells_k: int, max_positions: int):
    cols = np.arange(max(0, P - max_positions), P)
    k_show = min(k, max_top_k, max(3, max_cells_k // max(S * len(cols), 1)))
    return cols, k_show


def _side(result, cols, k) -> dict:
    """One grid's payload from a LensResult (positions ``cols``, top-``k``)."""
    top_ids = result.top_ids[:, cols, :k]
    target_ids = result.target_ids[cols]
    tracked = result.tracked_ids
    used = np.unique(np.concatenate([top_ids.ravel(), target_ids[target_ids >= 0], tracked]))
    m = result.meta
    lens = m.get("lens", "logit")
    arrays = {
        "top_ids": _ids(top_ids, used),
        "top_probs": _pack(result.top_probs[:, cols, :k], "log16"),
        "entropy": _pack(result.entropy[:, cols], "lin16"),
        "kl_to_final": _pack(result.kl_to_final[:, cols], "lin16"),
        "tracked_probs": _pack(result.tracked_probs[:, :, cols], "log16"),
        "tracked_ranks": _ints(result.tracked_ranks[:, :, cols]),
    }
    S, P = len(result.layer_names), len(cols)
    if (target_ids >= 0).any():
        arrays["target_prob"] = _pack(result.target_prob[:, cols], "log16")
        arrays["target_rank"] = _pack(result.target_rank[:, cols], "i32")
    else:
        arrays["target_prob"], arrays["target_rank"] = _fill((S, P)), _fill((S, P), -1)
    return {
        "model_name": str(m.get("model", "")) + ("" if lens == "logit" else f" \u00b7 {lens} lens"),
        "layer_names": list(result.layer_names),
        "layers": [int(x) for x in result.layers],
        "n_streams_total": int(m.get("n_blocks", int(result.layers.max()))) + 1,
        "stride": int(m.get("stride", 1) or 1),
        "tokens": [result.tokens[p] for p in cols],
        "first_position": int(cols[0]) if len(cols) else 0,
        "source_tokens": result.source_tokens,
        "target_ids": target_ids.tolist(),
        "tracked_ids": tracked.tolist(),
        "tracked_tokens": [result.token(t) for t in tracked],
        **_vocab(result, used),
        "meta": {"kind": m.get("kind", "causal"), "sublayers": m.get("sublayers", False), "lens": lens},
        "arrays": arrays,
    }


def lens_payload(
    result,
    *,
    metric: str = "entropy",
    max_top_k: int = MAX_TOP_K,
    max_cells_k: int = MAX_CELLS_K,
    max_positions: int = MAX_POSITIONS,
) -> dict:
    """The widget's data for a :class:`~logitscope.lens.result.LensResult` (JSON-ready)."""
    S, P, k = result.n_streams, result.n_positions, result.top_k
    cols, k_show = _limits(S, P, k, max_top_k, max_cells_k, max_positions)
    notes = []
    if k_show < k:
        notes.append(f"top-{k_show} of the result's {k} per cell")
    if len(cols) < P:
        notes.append(f"the last {len(cols)} of {P} positions")
    return {
        "a": _side(result, cols, k_show),
        "metric": metric,
        "metrics": metric_specs(),
        "missing": MISSING,
        "note": ("showing " + " and ".join(notes) + "; res.plot() draws all") if notes else "",
    }


def diff_payload(result, *, max_top_k: int = MAX_TOP_K, max_cells_k: int = MAX_CELLS_K) -> dict:
    """Two linked grids (A and B, aligned rows) for a :class:`~logitscope.diff.result.DiffResult`."""
    S, P, k = len(result.layer_names), len(result.tokens), result.a_top_ids.shape[2]
    cols, k_show = _limits(S, P, k, max_top_k, max_cells_k, MAX_POSITIONS)
    m = result.meta
    grids = {"klab": result.kl[:, cols], "delta": result.delta[:, cols]}
    nan = np.full((S, len(cols)), np.nan)
    sides = {}
    for name, tokens, top_ids, top_probs, rows, layers, model in (
        ("a", result.tokens, result.a_top_ids, result.a_top_probs, result.layer_names, result.layers, m.get("model_a")),
        (
            "b",
            result.b_tokens,
            result.b_top_ids,
            result.b_top_probs,
            result.b_layer_names,
            result.b_layers,
            m.get("model_b") or m.get("model_a"),
        ),
    ):
        ids = top_ids[:, cols, :k_show]
        used = np.unique(ids)
        sides[name] = {
            "model_name": str(model),
            "layer_names": list(rows),
            "layers": [int(x) for x in layers],
            "n_streams_total": int(max(layers)) + 1,
            "stride": 1,
            "tokens": [tokens[p] for p in cols],
            "source_tokens": None,
            "target_ids": [-1] * len(cols),
            "tracked_ids": [],
            "tracked_tokens": [],
            **_vocab(result, used),
            "meta": {"kind": "causal", "sublayers": False, "lens": "logit"},
            "arrays": {
                "top_ids": _ids(ids, used),
                "top_probs": _pack(top_probs[:, cols, :k_show], "log16"),
                "entropy": _pack(nan, "lin16"),
                "kl_to_final": _pack(nan, "lin16"),
                "target_prob": _fill((S, len(cols))),
                "target_rank": _fill((S, len(cols)), -1),
                "tracked_probs": _fill((0, S, len(cols))),
                "tracked_ranks": _fill((0, S, len(cols))),
            },
            "extra": {key: _pack(v, "lin16") for key, v in grids.items()},
        }
    finite = np.abs(grids["delta"][np.isfinite(grids["delta"])])
    top = float(finite.max()) if finite.size else 1.0
    metrics = {
        "klab": {
            "label": "KL(A \u2016 B) (nats)",
            "short": "KL(A\u2016B)",
            "log": False,
            "bounds": [0.0, None],
            "colorscale": colorscale("magma_r"),
        },
        "delta": {
            "label": "log p_B \u2212 log p_A of A's top-1",
            "short": "\u0394 log p",
            "log": False,
            "bounds": [-(top or 1.0), top or 1.0],
            "colorscale": colorscale("RdBu_r"),
        },
        **metric_specs(["prob"]),
    }
    return {
        "a": sides["a"],
        "b": sides["b"],
        "metric": "klab",
        "metrics": metrics,
        "missing": MISSING,
        "alignment": "identity" if list(result.layer_names) == list(result.b_layer_names) else "fraction of depth",
        "note": "A and B: the two sides of the diff, rows aligned as the diff pairs them; click a cell for "
        "both sides' top-k and the KL(A \u2016 B) of every row at that position",
    }


class Widget:
    """An interactive lens for a notebook output (``_repr_html_``); ``html`` is the markup itself."""

    def __init__(self, payload: dict, title: str = "") -> None:
        self.payload = payload
        self.title = title
        self.html = widget_html(payload)

    @property
    def nbytes(self) -> int:
        """Size of the HTML in bytes (script, styles and data)."""
        return len(self.html.encode("utf-8"))

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<logitscope widget {self.title}: {self.nbytes / 1024:.0f} KiB; display it in a notebook>"


def widget_html(payload: dict) -> str:
    """Self-contained HTML: a root element, the scoped stylesheet and one script that mounts the widget."""
    from .assets import bundle_js, scoped_css

    root = f"ls-{uuid.uuid4().hex[:12]}"
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    if len(data) > COMPRESS_ABOVE:  # inflated in the browser (DecompressionStream)
        data = json.dumps({"z": base64.b64encode(zlib.compress(data.encode("utf-8"), 9)).decode("ascii")})
    data = data.replace("</", "<\\/")
    code = bundle_js("widget.js").replace("</script", "<\\/script")
    return (
        f'<div id="{root}" class="ls-w ls-root" data-logitscope-widget="1">'
        '<div class="hint">logitscope: the interactive lens shows when this output\'s script runs '
        "(a trusted notebook); <code>res.plot()</code> draws a static image.</div></div>"
        f"<style>{scoped_css()}{_WIDGET_CSS}</style>"
        f'<script>(() => {{\n{code}\n__ls["widget.js"].mountWidget(document.getElementById("{root}"), {data})'
        f'.catch((e) => {{ document.getElementById("{root}").textContent = "logitscope widget: " + e.message; }});\n}})();</script>'
    )


_WIDGET_CSS = """
.ls-w { background: var(--bg); padding: 10px; border-radius: 10px; outline: none; max-width: 100%; }
.ls-w .ls-toolbar { margin-bottom: 10px; }
.ls-w .ls-note { margin-top: 6px; }
.ls-w .workspace { grid-template-columns: minmax(0, 1fr) 340px; grid-template-areas: "a panel"; }
.ls-w .workspace.compare { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); grid-template-areas: "a b" "kl panel"; }
.ls-w .panel { position: static; max-height: none; }
.ls-w .grid-scroll { max-height: 640px; }
.ls-w .toast { position: absolute; }
.ls-w.ls-root { position: relative; }
@media (max-width: 1250px) { .ls-w .workspace, .ls-w .workspace.compare { grid-template-columns: minmax(0, 1fr); grid-template-areas: "a" "b" "kl" "panel"; } }
"""


def show(result, **kwargs) -> Widget:
    """The widget of a LensResult or DiffResult (``kwargs``: the payload's limits, ``metric=``)."""
    if hasattr(result, "b_top_ids"):
        return Widget(diff_payload(result, **kwargs), title="diff")
    return Widget(lens_payload(result, **kwargs), title=repr(result))
