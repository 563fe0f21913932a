"""Architecture knowledge, in one place: where each model keeps its blocks, final norm and head.

Keyed by ``config.model_type``. Architectures not listed are handled by :func:`discover`, which
finds the same parts by structure; either way the result is checked against the model's own
logits when a :class:`~logitscope.scope.Scope` is built (see ``parts.self_check``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["causal", "seq2seq", "masked"]


@dataclass(frozen=True)
class ArchSpec:
    """Where the lens-relevant modules live, as dotted paths from the top-level model.

    Attributes:
        blocks: the ``nn.ModuleList`` of residual blocks the lens runs over.
        final_norm: the norm applied after the last block (``None``: the model has none).
        pre_head: modules applied between the final norm and the head, in order.
        head: the module that maps the stream to logits (``None``: ``get_output_embeddings()``).
        logits_bias: a tensor attribute added to the logits (BART's ``final_logits_bias``).
        scale_decoder_output: multiply the normed stream by ``d_model ** -0.5`` when the config's
            ``scale_decoder_outputs`` flag is set (T5).
    """

    blocks: str
    final_norm: str | None = None
    pre_head: tuple[str, ...] = ()
    head: str | None = None
    logits_bias: str | None = None
    scale_decoder_output: bool = False


_LLAMA_LIKE = ArchSpec("model.layers", "model.norm")
_GPT2_LIKE = ArchSpec("transformer.h", "transformer.ln_f")
_T5 = ArchSpec("decoder.block", "decoder.final_layer_norm", scale_decoder_output=True)
_BART = ArchSpec("model.decoder.layers", "model.decoder.layer_norm", logits_bias="final_logits_bias")

REGISTRY: dict[str, ArchSpec] = {
    # decoder-only
    **dict.fromkeys(
        [
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "phi3",
            "granite",
            "granitemoe",
            "cohere",
            "cohere2",
            "olmo",
            "olmo2",
            "starcoder2",
            "stablelm",
            "smollm3",
            "glm",
            "helium",
            "ministral",
        ],
        _LLAMA_LIKE,
    ),
    **dict.fromkeys(["gpt2", "bloom", "falcon", "gptj", "gpt_neo", "gpt_bigcode", "codegen"], _GPT2_LIKE),
    "gpt_neox": ArchSpec("gpt_neox.layers", "gpt_neox.final_layer_norm"),
    "phi": ArchSpec("model.layers", "model.final_layernorm"),
    "opt": ArchSpec("model.decoder.layers", "model.decoder.final_layer_norm", pre_head=("model.decoder.project_out",)),
    # encoder-decoder: the lens runs over decoder blocks
    **dict.fromkeys(["t5", "mt5", "umt5"], _T5),
    **dict.fromkeys(["bart", "mbart", "pegasus", "marian", "plbart"], _BART),
    # masked LMs: the lens runs over encoder blocks through the MLM head
    "bert": ArchSpec("bert.encoder.layer", head="cls"),
    "roberta": ArchSpec("roberta.encoder.layer", head="lm_head"),
    "xlm-roberta": ArchSpec("roberta.encoder.layer", head="lm_head"),
    "electra": ArchSpec("electra.encoder.layer", pre_head=("generator_predictions",), head="generator_lm_head"),
    "distilbert": ArchSpec(
        "distilbert.transformer.layer",
        pre_head=("vocab_transform", "activation", "vocab_layer_norm"),
        head="vocab_projector",
    ),
}

# Names a final norm goes by, tried on the module that owns the block list (discovery only).
NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm", "norm_f", "layer_norm", "ln_out")


@dataclass(frozen=True)
class PostHead:
    """Changes some models make to the logits after the head, read from their config.

    Applied in this order: ``logits / divide_by``, ``logits * multiply_by``, ``tanh(x / c) * c``.
    """

    divide_by: float | None = None  # Granite: config.logits_scaling
    multiply_by: float | None = None  # Cohere: config.logit_scale
    softcap: float | None = None  # Gemma 2/3: config.final_logit_softcapping
    names: list[str] = field(default_factory=list)


def post_head(config) -> PostHead:
    """Read the post-head logit transforms from a model config."""
    get = lambda name: getattr(config, name, None)  # noqa: E731
    divide = get("logits_scaling")
    multiply = get("logit_scale")
    softcap = get("final_logit_softcapping")
    names = [n for n, v in (("logits_scaling", divide), ("logit_scale", multiply), ("softcap", softcap)) if v]
    return PostHead(
        divide_by=float(divide) if divide not in (None, 1, 1.0) else None,
        multiply_by=float(multiply) if multiply not in (None, 1, 1.0) else None,
        softcap=float(softcap) if softcap else None,
        names=names,
    )


def model_kind(model) -> Kind:
    """Causal LM, encoder-decoder, or masked LM, from the config and the head class."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    name = type(model).__name__
    if "MaskedLM" in name or "ForPreTraining" in name:
        return "masked"
    return "causal"


def spec_for(model) -> tuple[ArchSpec, bool]:
    """The spec for ``model``: from the registry, else discovered. Returns ``(spec, discovered)``."""
    spec = REGISTRY.get(model.config.model_type)
    if spec is not None:
        return spec, False
    return discover(model), True


def discover(model) -> ArchSpec:
    """Find blocks and final norm of an unlisted architecture by structure.

    Blocks: the longest ``nn.ModuleList`` whose children share one class (for encoder-decoder
    models, one under a ``decoder``). Final norm: a known norm name on the module that owns it.
    Head: ``get_output_embeddings()``, plus ``final_logits_bias`` if the model has one, and a
    ``d_model -> d_head`` projection on the owner when the head is narrower than the stream.
    """
    import torch.nn as nn

    from .errors import UnsupportedModelError

    want_decoder = model_kind(model) == "seq2seq"
    candidates = []
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(m) for m in module}) == 1 and (not want_decoder or "decoder" in path):
                candidates.append((len(module), -path.count("."), path))
    if not candidates:
        raise UnsupportedModelError(
            f"could not find the transformer blocks of architecture {model.config.model_type!r} "
            f"({type(model).__name__}); please open an issue with its model type"
        )
    _, _, blocks = max(candidates)
    owner_path = blocks.rsplit(".", 1)[0] if "." in blocks else ""
    owner = model.get_submodule(owner_path)
    final_norm = None
    for name in NORM_NAMES:
        if isinstance(getattr(owner, name, None), nn.Module):
            final_norm = f"{owner_path}.{name}" if owner_path else name
            break
    # A head narrower than the stream (OPT-350m style) needs the owner's d_model -> d_head projection.
    pre_head: tuple[str, ...] = ()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    d_head = getattr(head, "in_features", None)
    d_model = getattr(model.config, "hidden_size", None)
    if d_head is not None and d_model is not None and d_head != d_model:
        for name, child in owner.named_children():
            if isinstance(child, nn.Linear) and (child.in_features, child.out_features) == (d_model, d_head):
                pre_head = (f"{owner_path}.{name}" if owner_path else name,)
                break
    bias = "final_logits_bias" if hasattr(model, "final_logits_bias") else None
    scale = bool(getattr(model.config, "scale_decoder_outputs", False))  # T5-style rescale flag
    return ArchSpec(blocks, final_norm, pre_head=pre_head, logits_bias=bias, scale_decoder_output=scale)


# -- context length ------------------------------------------------------------------------
# Config fields holding a hard context limit (absolute position embeddings, RoPE tables).
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx", "seq_length")
# Relative-position models with no hard limit (their n_positions is only a training length).
_NO_HARD_LIMIT = {"t5", "mt5", "umt5"}
# Models whose position ids start after the padding index (RoBERTa's fairseq heritage).
_POSITIONS_AFTER_PAD = {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl", "data2vec-text"}


def context_limit(config) -> int | None:
    """The longest input the model accepts, or ``None`` when it has no hard limit."""
    if config.model_type in _NO_HARD_LIMIT:
        return None
    for name in _CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            if config.model_type in _POSITIONS_AFTER_PAD:
                value -= int(getattr(config, "pad_token_id", None) or 0) + 1
            return value
    return None


# -- inside a block (sub-layer lens, direct logit attribution) -----------------------------
@dataclass(frozen=True)
class BlockLayout:
    """Where a block's stream after its attention sub-layer(s) is, as paths relative to one block.

    Sequential blocks (``resid_post = resid_mid + mlp_out``) have that stream in the model: the
    input of ``mid`` (the pre-MLP norm; with post-sub-layer norms, as in Gemma 2, it already holds
    the *normed* attention output). Parallel blocks (``resid_post = resid_pre + attn_out + mlp_out``)
    have none: logitscope defines theirs as ``resid_post - mlp_out`` (= stream in + attention
    contribution), where ``mlp_out`` is the output of ``mlp``, added to the stream as it is.

    Attributes:
        mid: module whose input is the stream after attention (sequential blocks).
        mlp: module whose output is the MLP contribution (parallel blocks).
        parallel: ``True``, ``False``, or config flags any of which makes the blocks parallel.
        refuse_if: ``(config flag, value)`` pairs under which neither description holds.
    """

    mid: str | None = None
    mlp: str | None = None
    parallel: bool | tuple[str, ...] = False
    refuse_if: tuple[tuple[str, object], ...] = ()


_PRE_MLP = BlockLayout("post_attention_layernorm")
_PARALLEL = BlockLayout(mlp="mlp", parallel=True)

# Post-norm blocks (BERT, RoBERTa, BART, Marian: norm after the residual add) have no stream that
# the MLP merely adds to, and are left out: the sub-layer lens refuses them.
BLOCK_LAYOUTS: dict[str, BlockLayout] = {
    **dict.fromkeys(
        [
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "phi3",
            "granite",
            "granitemoe",
            "olmo",
            "starcoder2",
            "smollm3",
            "glm",
            "helium",
            "ministral",
        ],
        _PRE_MLP,
    ),
    **dict.fromkeys(["gemma2", "gemma3_text"], BlockLayout("pre_feedforward_layernorm")),
    "olmo2": BlockLayout("mlp"),  # post-sub-layer norms, no pre-MLP norm: the MLP's own input
    **dict.fromkeys(["gpt2", "gpt_neo", "gpt_bigcode"], BlockLayout("ln_2")),
    "bloom": BlockLayout("post_attention_layernorm", refuse_if=(("apply_residual_connection_post_layernorm", True),)),
    "opt": BlockLayout("final_layer_norm", refuse_if=(("do_layer_norm_before", False),)),
    **dict.fromkeys(["cohere", "cohere2", "phi", "gptj", "codegen"], _PARALLEL),
    "gpt_neox": BlockLayout("post_attention_layernorm", "mlp", parallel=("use_parallel_residual",)),
    "stablelm": BlockLayout("post_attention_layernorm", "mlp", parallel=("use_parallel_residual",)),
    "falcon": BlockLayout("post_attention_layernorm", "mlp", parallel=("parallel_attn", "new_decoder_architecture")),
    # encoder-decoder: the stream after self- and cross-attention, entering the feed-forward
    **dict.fromkeys(["t5", "mt5"], BlockLayout("layer.2")),
    "mbart": BlockLayout("final_layer_norm"),
}


def block_layout(config) -> tuple[BlockLayout, bool] | None:
    """``(layout, parallel)`` for a model config, or ``None`` when its blocks have no such stream.

    ``None`` for architectures not in :data:`BLOCK_LAYOUTS` and for configs matching a
    ``refuse_if`` entry.
    """
    layout = BLOCK_LAYOUTS.get(config.model_type)
    if layout is None or any(getattr(config, flag, None) == value for flag, value in layout.refuse_if):
        return None
    parallel = layout.parallel
    if isinstance(parallel, tuple):
        parallel = any(bool(getattr(config, flag, False)) for flag in parallel)
    return layout, bool(parallel)
