"""Model facts and the embedding matrices: ``info``, ``nearest``, ``embed``, ``embed_through_head``.

``info``, ``nearest`` and ``embed`` need only the input embedding, so they work on encoders without
an LM head (e.g. a sentence-embedding BERT); ``embed_through_head`` needs the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..arch.registry import residual_width
from ..engine.inputs import check_vocab, context_limit, display_tokens, to_ids
from ..engine.kernel import DEFAULT_CHUNK_ELEMENTS
from ..errors import CorruptWeightsError, EmptyInputError, InputError
from ..io.jsonable import json_floats


@dataclass
class ModelInfo:
    """What a loaded model is, as plain values (``to_dict()`` for JSON).

    Attributes:
        n_layers: blocks the lens runs over (decoder blocks for encoder-decoder models).
        d_model: width of the residual stream.
        vocab_size: rows of the input embedding matrix.
        tied_embeddings: input and output embeddings hold the same values (``None``: no head).
        tie: how: ``"shared"`` (one tensor), ``"equal"`` (two tensors, same values),
            ``"different"`` or ``"no head"``. Read from the weights, not from the config.
        final_norm, head: dotted module paths (``None`` when absent).
        context_length: the longest input accepted (``None``: no hard limit).
    """

    name: str
    architecture: str
    model_type: str
    kind: str
    n_params: int
    n_layers: int | None
    d_model: int | None
    vocab_size: int
    tied_embeddings: bool | None
    tie: str
    final_norm: str | None
    head: str | None
    dtype: str
    device: str
    context_length: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(**data)


@dataclass
class NearestTokens:
    """The ``k`` tokens nearest to one query in the input-embedding space.

    Attributes:
        query: display string of the query token (``"<vector>"`` for a vector query).
        query_id: its id (``None`` for a vector).
        metric: ``"cosine"`` or ``"dot"``.
        ids: (k,) neighbour ids, nearest first; tokens: (k,) their display strings.
        scores: (k,) cosine similarity or dot product.
    """

    query: str
    query_id: int | None
    metric: str
    ids: np.ndarray
    tokens: list[str]
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)

    def __repr__(self) -> str:
        pairs = ", ".join(f"{t!r}: {s:.3f}" for t, s in zip(self.tokens, self.scores))
        return f"NearestTokens({self.query!r}, {self.metric}: {pairs})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "query_id": self.query_id,
            "metric": self.metric,
            "ids": self.ids.tolist(),
            "tokens": list(self.tokens),
            "scores": json_floats(self.scores),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NearestTokens:
        return cls(**data)


@dataclass
class Embeddings:
    """Input embedding vectors of one text.

    Attributes:
        tokens: (P,) display strings; token_ids: (P,) ids.
        vectors: (P, d_embed) float32 CPU tensor: the input embedding module's output (what the
            model's embedding layer returns, before position embeddings and block 0).
    """

    tokens: list[str]
    token_ids: np.ndarray
    vectors: torch.Tensor

    @property
    def norms(self) -> np.ndarray:
        """(P,) Euclidean norm of each vector."""
        return self.vectors.norm(dim=-1).numpy()


# -- info ------------------------------------------------------------------------------------
def tie_status(scope) -> str:
    """``"shared"``, ``"equal"``, ``"different"`` or ``"no head"``, from the weights themselves."""
    out = scope.parts.head_weight if scope.parts is not None else None
    if out is None:
        return "no head"
    inp = scope.model.get_input_embeddings().weight
    if out is inp or (
        out.shape == inp.shape
        and out.device == inp.device
        and out.untyped_storage().data_ptr() == inp.untyped_storage().data_ptr()
        and out.storage_offset() == inp.storage_offset()
    ):
        return "shared"
    if out.is_meta or inp.is_meta:  # offloaded (accelerate): never read weights that are not loaded
        return "unknown (offloaded)"
    if out.shape == inp.shape and torch.equal(out.detach(), inp.detach().to(out.device, out.dtype)):
        return "equal"
    return "different"


def _config_int(config, name: str) -> int | None:
    try:
        value = getattr(config, name, None)
    except AttributeError:
        return None
    return value if isinstance(value, int) else None


def model_info(scope) -> ModelInfo:
    """Implementation of :meth:`logitscope.Scope.info`."""
    model, config, parts = scope.model, scope.model.config, scope.parts
    weight = model.get_input_embeddings().weight
    tie = tie_status(scope)
    described = parts.describe() if parts is not None else {}
    return ModelInfo(
        name=scope.name,
        architecture=type(model).__name__,
        model_type=config.model_type,
        kind=scope.kind,
        n_params=int(model.num_parameters()),
        n_layers=parts.n_blocks if parts is not None else _config_int(config, "num_hidden_layers"),
        d_model=residual_width(config) or int(weight.shape[1]),
        vocab_size=int(weight.shape[0]),
        tied_embeddings=None if tie == "no head" else tie in ("shared", "equal"),
        tie=tie,
        final_norm=described.get("final_norm"),
        head=described.get("head"),
        dtype=str(weight.dtype).removeprefix("torch."),
        device=str(weight.device),
        context_length=context_limit(config),
    )


# -- nearest ---------------------------------------------------------------------------------
def _n_tokens(scope) -> int:
    """Rows of the embedding matrix that are real tokens (padding rows past the tokenizer excluded)."""
    rows = scope.model.get_input_embeddings().weight.shape[0]
    return min(rows, len(scope.tokenizer)) if scope.tokenizer is not None else rows


def _query(scope, item, weight: torch.Tensor) -> tuple[str, int | None, torch.Tensor]:
    """(display string, id or None, float32 vector) of one ``nearest`` query."""
    if isinstance(item, torch.Tensor) and item.is_floating_point():
        if item.shape != (weight.shape[1],):
            raise InputError(f"a query vector must have shape ({weight.shape[1]},), got {tuple(item.shape)}")
        if not bool(torch.isfinite(item).all()):
            raise InputError("the query vector holds NaN or inf")
        return "<vector>", None, item.detach().float()
    if isinstance(item, str):
        ids = to_ids(item, scope.tokenizer, special_tokens=False)
        if len(ids) != 1:
            pieces = display_tokens(ids, scope.tokenizer)
            hint = ""
            if len(to_ids(" " + item, scope.tokenizer, special_tokens=False)) == 1:
                hint = f"; {' ' + item!r} (with a leading space) is one token"
            raise InputError(f"{item!r} is {len(ids)} tokens {pieces}, not one{hint}")
        item = ids[0]
    if not isinstance(item, (int, np.integer)) or isinstance(item, bool):
        raise InputError(f"a query must be a one-token string, a token id or a vector, got {type(item).__name__}")
    if not 0 <= item < weight.shape[0]:
        raise InputError(f"token id {item} is outside the vocabulary (size {weight.shape[0]})")
    return display_tokens([int(item)], scope.tokenizer)[0], int(item), weight[int(item)].detach().float()


def nearest(scope, token, *, k: int = 10, metric: str = "cosine", include_self: bool = False):
    """Implementation of :meth:`logitscope.Scope.nearest` (see there).

    Scores every token of the vocabulary in row chunks of the embedding matrix (float32, ~64 MiB
    each), keeping a running top-k, so no float32 copy of the whole matrix is made.
    """
    if metric not in ("cosine", "dot"):
        raise InputError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    single = not isinstance(token, (list, tuple)) and not (isinstance(token, torch.Tensor) and token.dim() == 2)
    items = [token] if single else list(token)
    if not items:
        raise EmptyInputError("no query tokens given")
    weight = scope.model.get_input_embeddings().weight
    V = _n_tokens(scope)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= V - (0 if include_self else 1):
        raise InputError(f"k must be between 1 and the number of other tokens ({V - 1})")
    queries = [_query(scope, item, weight) for item in items]
    q = torch.stack([v for _, _, v in queries]).to(weight.device)  # (n, d)
    if metric == "cosine":
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    self_ids = torch.tensor([-1 if i is None or include_self else i for _, i, _ in queries], device=weight.device)
    best_s = torch.empty(len(items), 0, device=weight.device)
    best_i = torch.empty(len(items), 0, dtype=torch.long, device=weight.device)
    step = max(1, DEFAULT_CHUNK_ELEMENTS // weight.shape[1])
    with torch.inference_mode():
        for r0 in range(0, V, step):
            rows = weight[r0 : min(V, r0 + step)].float()  # (c, d)
            _check_finite(rows, r0)
            s = q @ rows.T  # (n, c)
            if metric == "cosine":
                s = s / rows.norm(dim=-1).clamp_min(1e-12)
            ids = torch.arange(r0, r0 + rows.shape[0], device=weight.device)
            s = s.masked_fill(ids.unsqueeze(0) == self_ids.unsqueeze(1), float("-inf"))
            s_top, i_top = s.topk(min(k, s.shape[1]), dim=-1)
            best_s, order = torch.cat([best_s, s_top], 1).topk(min(k, best_s.shape[1] + s_top.shape[1]), dim=-1)
            best_i = torch.cat([best_i, ids[i_top]], 1).gather(1, order)
    best_i, best_s = best_i.cpu().numpy(), best_s.cpu().numpy()
    out = [
        NearestTokens(query, qid, metric, best_i[n], display_tokens(best_i[n].tolist(), scope.tokenizer), best_s[n])
        for n, (query, qid, _) in enumerate(queries)
    ]
    return out[0] if single else out


# -- embed -----------------------------------------------------------------------------------
def _ids(scope, inputs, special_tokens: bool) -> list[int]:
    ids = to_ids(inputs, scope.tokenizer, special_tokens=special_tokens)
    if not ids:
        raise EmptyInputError("the input is empty: it has no tokens")
    check_vocab(ids, scope.model.get_input_embeddings().weight.shape[0])
    return ids


def _embed_on_device(scope, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return scope.model.get_input_embeddings()(torch.tensor(ids, device=scope.input_device))


def _check_finite(rows: torch.Tensor, first_id: int) -> None:
    """Raise ``CorruptWeightsError`` naming the embedding rows (token ids) that hold NaN/inf."""
    finite = torch.isfinite(rows).all(dim=-1)
    if not bool(finite.all()):
        bad = (first_id + (~finite).nonzero()[:, 0]).tolist()
        raise CorruptWeightsError(f"the input embeddings of token ids {bad[:5]} hold NaN or inf")


def embed(scope, inputs, *, special_tokens: bool = True) -> Embeddings:
    """Implementation of :meth:`logitscope.Scope.embed`."""
    ids = _ids(scope, inputs, special_tokens)
    vectors = _embed_on_device(scope, ids).float().cpu()
    finite = torch.isfinite(vectors).all(dim=-1)
    if not bool(finite.all()):
        bad = [ids[i] for i in (~finite).nonzero()[:, 0].tolist()]
        raise CorruptWeightsError(f"the input embeddings of token ids {bad[:5]} hold NaN or inf")
    return Embeddings(display_tokens(ids, scope.tokenizer), np.asarray(ids, dtype=np.int64), vectors)


def embed_through_head(scope, inputs, *, k: int = 10, tail: bool = False, special_tokens: bool = True):
    """Implementation of :meth:`logitscope.Scope.embed_through_head`; returns a :class:`~logitscope.outputs.logits.TopTokens`.

    Each position is scored against its own token (``target_ids`` = ``token_ids``), so
    ``target_ranks`` shows whether a token's embedding maps back to itself.
    """
    from .top_tokens import top_tokens

    parts = scope.require_head()
    ids = _ids(scope, inputs, special_tokens)
    h = _embed_on_device(scope, ids)
    with torch.inference_mode():
        if tail:
            z = parts.unembed(h)
        else:
            head = scope.model.get_output_embeddings()
            head = parts.head if head is None else head
            z = head(h.to(parts.head_device)).float()
    meta = {"model": scope.name, "model_type": parts.model_type, "kind": parts.kind, "tail": tail}
    return top_tokens(z, k, token_ids=ids, target_ids=ids, tokenizer=scope.tokenizer, meta=meta)
