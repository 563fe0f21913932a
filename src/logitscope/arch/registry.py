"""Architecture knowledge, in one place: where each model keeps its blocks, final norm and head.

Keyed by ``config.model_type``. Architectures not listed are handled by :func:`~logitscope.arch.discover.discover`, which
finds the same parts by structure; either way the result is checked against the model's own
logits when a :class:`~logitscope.scope.Scope` is built (see ``parts.self_check``).
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass, field, replace
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
        tied_projection: a Linear applied transposed (``h @ weight``) between the pre-head
            modules and the head (NeoMME's ``unembedding_projection``, its embedding projection's twin).
        scale_decoder_output: the model may multiply the normed stream by ``d_model ** -0.5``
            before the head (the T5 family). Which config flag turns it on changed between
            transformers releases (UMT5: ``tie_word_embeddings`` up to 5.23,
            ``scale_decoder_outputs`` from 5.24), so :func:`scale_flag` reads it from the
            installed model's own ``forward``.
        scale_flag: the flag assumed when the installed source cannot be read.
    """

    blocks: str
    final_norm: str | None = None
    pre_head: tuple[str, ...] = ()
    head: str | None = None
    logits_bias: str | None = None
    tied_projection: str | None = None
    scale_decoder_output: bool = False
    scale_flag: str = "scale_decoder_outputs"


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
    **dict.fromkeys(["t5", "mt5", "longt5"], _T5),
    # UMT5 (up to transformers 5.23) and Switch Transformers rescale on tie_word_embeddings
    **dict.fromkeys(["umt5", "switch_transformers"], replace(_T5, scale_flag="tie_word_embeddings")),
    **dict.fromkeys(["bart", "mbart", "pegasus", "marian", "plbart"], _BART),
    # BigBird-Pegasus applies its (misnamed) layernorm_embedding after the last decoder block
    "bigbird_pegasus": replace(_BART, final_norm="model.decoder.layernorm_embedding"),
    "fsmt": ArchSpec("model.decoder.layers", head="model.decoder.output_projection"),  # not get_output_embeddings()
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
    "megatron-bert": ArchSpec("bert.encoder.layer", "bert.encoder.ln", head="cls"),  # pre-LN: a final norm
    # LFM2/3 apply their (misnamed) embedding_norm after the last block
    **dict.fromkeys(["lfm2", "lfm2_moe", "lfm3"], ArchSpec("model.layers", "model.embedding_norm")),
    "neomme": ArchSpec("model.layers", "model.final_norm", head="lm_head", tied_projection="unembedding_projection"),
    # BLT: the head reads the byte-level local decoder (local encoder -> patches -> global model -> here)
    "blt": ArchSpec("model.local_decoder.layers", "model.local_decoder.norm"),
    # one layer group run num_hidden_layers times (rows follow the calls: STREAMS)
    "albert": ArchSpec("albert.encoder.albert_layer_groups", head="predictions"),
    # HRM: the head reads the H state; a row is one H-module call (its own final_norm included)
    "hrm_text": ArchSpec("model.H_module"),
    # XLM/FlauBERT keep each block's parts in parallel lists; layer_norm2[i] closes block i (post-norm)
    **dict.fromkeys(["xlm", "flaubert"], ArchSpec("transformer.layer_norm2", head="pred_layer")),
}

# Architectures the lens cannot run on, and why (raised as UnsupportedModelError at load).
UNLENSABLE: dict[str, str] = {
    **dict.fromkeys(
        ["inkling2_loop", "inkling2_loop_text"],
        "its looped layers' later passes restart from the pre-loop stream and read messages from the previous pass, so no single stream per row is what the model with later layers removed computes",
    ),
    "perceiver": "its blocks run on config.num_latents latent vectors, not on the input positions (only its decoder's cross-attention maps them back to tokens), so no block stream belongs to a token",
}


# `if self.config.<flag>:` (comment lines allowed) guarding `* (self.model_dim**-0.5)` in forward
_RESCALE = re.compile(r"if\s+self\.config\.(\w+)\s*:[^\n]*\n(?:\s*#[^\n]*\n)*[^\n]*self\.model_dim\s*\*\*\s*-0\.5")


@functools.cache
def _rescale_in_source(model_cls: type) -> tuple[bool, str | None] | None:
    """(rescales at all, the flag guarding it) as the installed code says; None if unreadable."""
    try:
        source = inspect.getsource(model_cls.forward)
    except (OSError, TypeError):
        return None
    if m := _RESCALE.search(source):
        return True, m.group(1)
    return ("model_dim**-0.5" in source.replace(" ", "")), None


def scale_flag(model, spec: ArchSpec) -> str | None:
    """The config flag that turns the decoder-output rescale on for this model, or None: never rescales.

    Read from the installed model class's ``forward`` (the flag changed between transformers
    releases); ``spec.scale_flag`` where the source cannot be read. The load-time self-check
    verifies the outcome either way.
    """
    if not spec.scale_decoder_output:
        return None
    found = _rescale_in_source(type(model))
    if found is None:
        return spec.scale_flag
    rescales, flag = found
    if not rescales:
        return None
    return flag or spec.scale_flag


# Names a final norm goes by, tried on the module that owns the block list, then on its parent
# (discovery only; a wrong guess fails the load-time self-check rather than giving wrong rows).
NORM_NAMES = (
    "norm",
    "ln_f",
    "final_layer_norm",
    "final_layernorm",
    "final_norm",
    "norm_f",
    "layer_norm",
    "ln_out",
    "layernorm",
    "LayerNorm",
    "output_layernorm",
    "emb_layer_norm_after",
    "out_norm",
)


@dataclass(frozen=True)
class PostHead:
    """Changes some models make to the logits after the head, read from their config.

    Applied in this order: ``logits / divide_by``, ``logits * multiply_by``, ``tanh(x / c) * c``.
    """

    divide_by: float | None = None  # Granite: config.logits_scaling
    multiply_by: float | None = None  # Cohere: config.logit_scale
    softcap: float | None = None  # Gemma 2/3: config.final_logit_softcapping
    names: list[str] = field(default_factory=list)


def text_config(config):
    """The (decoder's) text sub-config of a composite config (multimodal, encoder-decoder), else ``config``."""
    try:
        return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    except (AttributeError, TypeError, ValueError):
        return config


def residual_width(config) -> int | None:
    """The width ``d`` of the residual stream the lens reads: ``hidden_size`` of the text config.

    Every transformers config maps its own name for it (``n_embd``, ``d_model``) to ``hidden_size``;
    multimodal configs keep it in their text sub-config. ``None`` when the config does not say.
    """
    for source in (text_config(config), config):
        try:
            d = getattr(source, "hidden_size", None)
        except AttributeError:
            d = None
        if isinstance(d, int) and not isinstance(d, bool) and d > 0:
            return d
    return None


def post_head(config) -> PostHead:
    """Read the post-head logit transforms from a model config (or its decoder/text sub-config)."""
    text = text_config(config)

    def get(name: str):
        value = getattr(config, name, None)
        return getattr(text, name, None) if value is None else value

    # Inkling divides the normed stream by logits_mup_width_multiplier: the same as the logits, its head has no bias
    divide = get("logits_scaling") or get("logits_mup_width_multiplier")
    multiply = get("logit_scale")
    # Gemma 2/3: final_logit_softcapping; RecurrentGemma: logits_soft_cap; xLSTM: output_logit_soft_cap
    softcap = get("final_logit_softcapping") or get("logits_soft_cap") or get("output_logit_soft_cap")
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


# Configurations under which an otherwise lensable architecture is not: (flag, value, why).
UNLENSABLE_IF: dict[str, tuple[str, object, str]] = {
    "flaubert": (
        "pre_norm",
        True,
        "with pre_norm=True no module outputs the stream between its blocks (the residual add follows layer_norm2's input)",
    ),
}


# -- context length ------------------------------------------------------------------------
# Config fields holding a hard context limit (absolute position embeddings, RoPE tables).
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx", "seq_length")
# Relative-position models with no hard limit (their n_positions is only a training length).
_NO_HARD_LIMIT = {"t5", "mt5", "umt5", "longt5", "switch_transformers"}
# Models whose position ids start after the padding index (RoBERTa's fairseq heritage).
_POSITIONS_AFTER_PAD = {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl", "data2vec-text"}


# Where an encoder-decoder model's first decoder token comes from when its config names no
# decoder_start_token_id: a dotted config path, or "last_input" for the last non-pad input token
# (mBART-cc25 ships so: the language id; ``shift_tokens_right`` in modeling_mbart/modeling_plbart).
_DECODER_START = {"mbart": "last_input", "plbart": "last_input", "t5gemma": "decoder.bos_token_id"}


def decoder_start(config, input_ids) -> int | None:
    """The decoder's first token by the model's own rule, or ``None`` when it has no rule."""
    start = getattr(config, "decoder_start_token_id", None)
    rule = _DECODER_START.get(config.model_type)
    if start is None and rule == "last_input":
        real = [t for t in input_ids if t != getattr(config, "pad_token_id", None)]
        start = real[-1] if real else None
    elif start is None and rule is not None:
        start = config
        for name in rule.split("."):
            start = getattr(start, name, None)
    return int(start) if isinstance(start, int) and not isinstance(start, bool) else None


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
    # hybrid state-space blocks: a mixer (Mamba / linear attention / short conv, or attention) then an MLP
    **dict.fromkeys(["granitemoehybrid", "qwen3_next"], _PRE_MLP),
    **dict.fromkeys(["jamba", "bamba", "falcon_h1"], BlockLayout("pre_ff_layernorm")),
    **dict.fromkeys(["lfm2", "lfm2_moe"], BlockLayout("ffn_norm")),
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
