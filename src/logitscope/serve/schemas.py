"""Pydantic request models of the JSON API (documented at ``/docs``).

Models are picked by the name the server was started with; no field is ever a file path. Static
bounds here stop absurd values early; the server's :class:`~logitscope.serve.limits.Limits` are
checked in the routes, with messages naming the limit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Field(..., min_length=1, max_length=200, description="A model name from GET /api/models.")
Text = Field(..., max_length=100_000, description="The prompt (encoder-decoders: the source text).")
Target = Field(
    None,
    max_length=100_000,
    description="Causal LMs: a continuation to teacher-force and score. Encoder-decoders: the decoder text.",
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LensRequest(_Request):
    """The logit lens of one input: top-k and statistics at every (layer, position)."""

    model: str = Name
    text: str = Text
    target: str | None = Target
    top_k: int = Field(10, ge=1, le=1000, description="Top tokens kept per cell.")
    track: list[str | int] = Field(
        default_factory=list, max_length=1000, description="Pinned tokens (single-token strings or ids)."
    )
    stride: int | None = Field(
        None, ge=1, le=100_000, description="Show every stride-th layer (embed and output always); null: automatic."
    )
    sublayers: bool = Field(False, description="Also show each block's stream after attention (rows like '3.attn').")
    lens: Literal["logit", "tuned", "jacobian"] = Field(
        "logit",
        description="'tuned' / 'jacobian': the model's tuned or Jacobian lens (see GET /api/models).",
    )


class ColumnRequest(_Request):
    """Every layer's probability and rank of some tokens at one position (panel and trajectories)."""

    model: str = Name
    text: str = Text
    target: str | None = Target
    position: int = Field(-1, ge=-100_000, le=100_000, description="Lens position; negative counts from the end.")
    ids: list[int] = Field(default_factory=list, max_length=1000, description="Token ids to follow.")
    tokens: list[str] = Field(default_factory=list, max_length=1000, description="Single-token strings to follow.")
    sublayers: bool = Field(False, description="Also show each block's stream after attention (rows like '3.attn').")
    lens: Literal["logit", "tuned", "jacobian"] = Field(
        "logit",
        description="'tuned' / 'jacobian': the model's tuned or Jacobian lens (see GET /api/models).",
    )


class Side(_Request):
    """One side of a comparison."""

    model: str = Name
    text: str = Text
    target: str | None = Target
    position: int | None = Field(
        -1,
        ge=-100_000,
        le=100_000,
        description="Lens position compared (default: the last); null: the position paired with the other "
        "side's (the same token index, and a target's k-th token with the other target's k-th).",
    )


class CompareRequest(_Request):
    """Two prompts, or two models sharing a vocabulary: per-layer KL at one position each."""

    a: Side
    b: Side


class LogitsRequest(_Request):
    """The model's own output distribution (logits tab)."""

    model: str = Name
    text: str = Text
    target: str | None = Target
    generate: int | None = Field(None, ge=1, le=100_000, description="Greedy-decode this many tokens.")
    top_k: int = Field(10, ge=1, le=1000)


class NearestRequest(_Request):
    """Nearest tokens in the input-embedding space (embeddings tab)."""

    model: str = Name
    text: str = Field(..., max_length=100_000, description="A token or a text; each of its tokens is a query.")
    k: int = Field(10, ge=1, le=1000)
    metric: Literal["cosine", "dot"] = "cosine"


class ExportRequest(LensRequest):
    """A lens request plus the file to make of it."""

    format: Literal["json", "csv", "html"] = "json"
    metric: Literal["entropy", "prob", "target", "rank", "kl"] = "entropy"
