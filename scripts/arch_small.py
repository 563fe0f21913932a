"""Build any transformers LM architecture small: a few blocks, d_model 64, vocab 512, perturbed.

Used by ``scripts/arch_sweep.py``. Sizes are set by field *name* on the config class's own
defaults (``hidden_size``/``d_model``/``n_embd``/... → 64, layer counts → 3, heads → 4, ...), so a
new architecture needs no entry here unless its config has an unusual field; those few live in
:data:`OVERRIDES` (test-side build knowledge, not lens knowledge). Every parameter and floating
buffer gets noise after init: fresh norms are exactly 1/0 and would hide a skipped norm or scale.
"""

from __future__ import annotations

import torch

D = 64  # d_model
FFN = 128  # feed-forward width
HEADS = 4
KV_HEADS = 2
HEAD_DIM = D // HEADS
LAYERS = 3  # blocks the lens runs over (decoder blocks for encoder-decoder models)
ENC_LAYERS = LAYERS  # encoder blocks of encoder-decoder models (as many: caches are sized by one count)
V = 512  # vocabulary
MAX_POS = 128
MAX_PARAMS = 12_000_000  # anything larger was not shrunk: reported as not buildable (audio towers: ~5-11M)

_SIZES: dict[str, int] = {
    **dict.fromkeys(
        ["hidden_size", "d_model", "n_embd", "dim", "embed_dim", "model_dim", "d_embed", "emb_dim", "n_embed"], D
    ),
    **dict.fromkeys(["embedding_size", "word_embed_proj_dim", "embedding_dim", "input_embedding_size"], D),
    **dict.fromkeys(
        [
            "intermediate_size",
            "d_ff",
            "ffn_dim",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "hidden_dim",
            "ffn_hidden_size",
            "d_inner",
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "expert_intermediate_size",
            "mlp_dim",
            "n_inner",
            "feed_forward_proj_size",
            "block_size_intermediate",
            "ff_intermediate_size",
            "dense_intermediate_size",
            "shared_experts_intermediate_size",
        ],
        FFN,
    ),
    **dict.fromkeys(
        ["num_hidden_layers", "n_layer", "n_layers", "num_decoder_layers", "decoder_layers", "num_layers"], LAYERS
    ),
    **dict.fromkeys(["encoder_layers", "num_encoder_layers"], ENC_LAYERS),
    **dict.fromkeys(
        [
            "num_attention_heads",
            "n_head",
            "n_heads",
            "num_heads",
            "encoder_attention_heads",
            "decoder_attention_heads",
            "num_attn_heads",
        ],
        HEADS,
    ),
    **dict.fromkeys(
        ["head_dim", "d_kv", "attention_head_dim", "kv_channels", "d_head", "attention_head_size"], HEAD_DIM
    ),
    **dict.fromkeys(["qk_nope_head_dim", "v_head_dim", "linear_head_dim"], HEAD_DIM),
    "qk_head_dim": 2 * HEAD_DIM,  # qk_nope_head_dim + qk_rope_head_dim
    "expert_ffn_hidden_size": FFN,
    **dict.fromkeys(["index_n_heads", "indexer_n_heads"], HEADS),  # sparse-attention indexers
    "index_head_dim": HEAD_DIM,
    "zero_expert_num": 1,
    **dict.fromkeys(["qk_rope_head_dim", "pronunciation_embed_dim", "shape_embed_dim"], HEAD_DIM),
    "rotary_dim": 8,
    **dict.fromkeys(["dim_ff", "intermediate_size_mlp"], FFN),
    "vocab_size_per_layer_input": V,
    "hidden_size_per_layer_input": 16,
    **dict.fromkeys(["src_vocab_size", "tgt_vocab_size"], V),
    **dict.fromkeys(["entity_vocab_size", "shape_vocab_size", "pronunciation_vocab_size"], 64),
    **dict.fromkeys(["kv_lora_rank", "q_lora_rank"], 32),
    **dict.fromkeys(
        ["num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_experts_total"], 4
    ),
    **dict.fromkeys(["num_experts_per_tok", "moe_topk", "num_selected_experts", "moe_k", "top_k_experts"], 2),
    **dict.fromkeys(["n_group", "topk_group", "n_shared_experts", "num_shared_experts", "num_expert_group"], 1),
    "num_experts_per_token": 2,
    **dict.fromkeys(["vocab_size", "n_vocab", "text_vocab_size", "unpadded_vocab_size"], V),
    "encoder_hash_byte_group_vocab": 64,  # BLT's hashed n-gram embeddings (500002 rows each)
    **dict.fromkeys(["hidden_size_global", "encoder_cross_output_size"], D),  # BLT's global transformer
    **dict.fromkeys(["adapter_in_dim", "adapter_out_dim", "adapter_input_size"], D),  # vision/audio adapters
    **dict.fromkeys(["d_latents", "num_latents"], D),  # Perceiver
    "num_self_attends_per_block": LAYERS,
    **dict.fromkeys(["max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"], MAX_POS),
}
_KV = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num", "n_head_kv", "num_kv_groups")
# Token ids a config names; any that falls outside the small vocabulary is moved inside it.
_TOKEN_IDS = {
    "bos_token_id": 0,
    "pad_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 2,
    "sep_token_id": 3,
    "cls_token_id": 4,
    "mask_token_id": 5,
    "unk_token_id": 6,
}

# Per model type (or class name): extra config kwargs (after the generic shrink) where the names above are not enough.
OVERRIDES: dict[str, dict] = {
    "longformer": {"attention_window": 4},  # pads 6 tokens to 8 inside the model (default: 512)
    "esm": {"pad_token_id": 1, "mask_token_id": 5},  # ESM checkpoints set these; the config class does not
    "mamba2": {"head_dim": 2 * D // HEADS, "n_groups": 1},  # num_heads * head_dim == expand * hidden_size
    "lfm2_moe": {"layer_types": ["conv", "full_attention", "conv"], "num_dense_layers": 1},
    "dots1": {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1},
    "gemma3n_text": {"num_kv_shared_layers": 0},
    # DBRX checkpoints set these in attn_config; the attention reads rope_theta there and clamps on clip_qkv
    "dbrx": {"attn_config": {"kv_n_heads": KV_HEADS, "rope_theta": 10000.0, "clip_qkv": 8.0}},
    # Granite 4.0-H: Mamba layers with an attention layer among them (the config default is all Mamba)
    "granitemoehybrid": {
        "layer_types": ["linear_attention", "full_attention", "linear_attention"],
        "mamba_n_heads": 8,
        "mamba_d_state": 16,
    },
    # Dory: released configs list each layer as (attention, mlp) blocks; 1 input, 1 looped (twice), 1 output layer
    "dory": {
        "num_hidden_layers": 6,
        "layer_types": ["sliding_attention", "mlp", "full_attention", "mlp", "sliding_attention", "mlp"],
        "n_input_layers": 2,
        "n_recurrent_layers": 2,
        "n_output_layers": 2,
        "n_recurrent_loops": 2,
    },
    "esmc": {"num_key_value_heads": HEADS, "vocab_size": V},  # no grouped-query attention; the sweep's ids need V
    "cohere_compass_text": {
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        }
    },
    "musicgen": {"decoder": {"num_codebooks": 1}},  # one codebook: the decoder reads (batch, seq) ids
    "musicgen_melody": {"decoder": {"num_codebooks": 1}},
    "reformer": {"axial_pos_shape": [8, 16], "axial_pos_embds_dim": [32, 32]},
    "ReformerModelWithLMHead": {"is_decoder": True},  # (by class) causal; ReformerForMaskedLM must not be
    # Qwen4-Exp: its attention layers are indexed (QSA), which needs every indexer field
    **dict.fromkeys(
        ["qwen4_exp", "qwen4_exp_text"],
        {
            "indexer_n_heads": HEADS,
            "indexer_kv_heads": 1,
            "indexer_head_dim": HEAD_DIM,
            "indexer_budget": 8,
            "indexer_compress_ratio": 4,
            "hc_lowrank": 16,
        },
    ),
    # block attention residuals over boundaries at layers 0 and 2 (the default block spans more layers than 3)
    "inkling2_text": {"n_layers_per_attn_res_block": 2},
    # Dots3: its sliding-window layer's own head_dim is qk_nope_head_dim + qk_rope_head_dim
    "dots3_note_text": {"per_layer_config": {"2": {"head_dim": 2 * HEAD_DIM}}},
    # the shared transformer is tied across hybrid layers: it needs two of them
    "zamba": {"layers_block_type": ["hybrid", "linear_attention", "hybrid"]},
}


def _dory_first_calls(model, n: int) -> None:
    """Dory run for its first ``n`` layer calls only (input layers, then whole loops of one recurrent layer)."""
    c = model.config
    if c.n_recurrent_layers != 1 or n >= c.n_input_layers + c.n_recurrent_loops + c.n_output_layers:
        raise ValueError("the Dory oracle cuts within the input layers or the loop of one recurrent layer")
    c.n_output_layers = 0
    c.n_recurrent_loops = max(n - c.n_input_layers, 0)
    c.n_input_layers = min(n, c.n_input_layers)


# Classes no config can run from token ids alone, and why (the sweep reports them as not buildable
# without trying; a class that merely fails to build small keeps its own error as the reason).
_DRAFTER = (
    "a speculative-decoding drafter: its forward takes the main model's inputs_embeds and "
    "shared_kv_states, not token ids, so there is no token-level forward to lens"
)
NOT_BUILDABLE: dict[str, str] = {
    "Gemma4AssistantForCausalLM": _DRAFTER,
    "Gemma4UnifiedAssistantForCausalLM": _DRAFTER,
    "VoxtralRealtimeForConditionalGeneration": (
        "a streaming speech model: its forward requires input_features (audio) or encoder_inputs_embeds "
        "at every step, so it has no text-only forward to lens"
    ),
}


# The truncation oracle where cutting the block list is not "the forward stopped after n block
# calls" (``arch_sweep.oracle``), done by the model's own loop counts: XLM/FlauBERT keep each
# block's parts in parallel lists and loop over range(n_layers); HRM runs H_cycles H-module calls;
# Dory re-enters its loop through norm(h) + the input section's output.
TRUNCATE = {
    "xlm": lambda model, n: setattr(model.transformer, "n_layers", n),
    "flaubert": lambda model, n: setattr(model.transformer, "n_layers", n),
    "hrm_text": lambda model, n: setattr(model.config, "H_cycles", n),
    "dory": _dory_first_calls,
}

# Size fields whose ``None`` default the models cannot run with (real checkpoints always set them).
_FILL_NONE = {k for k, v in _SIZES.items() if k not in ("num_experts", "num_local_experts", "n_routed_experts")}
_FILL_NONE -= {"num_experts_per_tok", "moe_topk", "num_selected_experts", "moe_k", "top_k_experts", "n_inner"}
_FILL_NONE -= {"n_group", "topk_group", "n_shared_experts", "num_shared_experts", "moe_num_experts"}


def _cut_layers(values: list) -> list:
    """The first blocks' per-layer settings, swapping in the first of each kind missing from them
    (hybrid models whose first layers are all linear attention still get an attention layer)."""
    out = list(values[:LAYERS])
    hashable = all(isinstance(v, (str, int, float, type(None))) for v in values)
    missing = [v for v in dict.fromkeys(values) if v not in out] if hashable else []
    for i, value in enumerate(missing[: LAYERS - 1]):
        out[LAYERS - 1 - i] = value
    return out


def _shrink_value(key: str, value, n_layers_before: int | None):
    if value is None and key in _FILL_NONE:
        return _SIZES[key]
    if value is None and key in _KV:
        return KV_HEADS
    if isinstance(value, bool) or value is None:
        return value
    if key in _SIZES and isinstance(value, int) and value > 0:
        return min(value, _SIZES[key]) if key not in ("num_experts_per_tok",) else min(value, 2)
    if key in _KV and isinstance(value, int) and value > 1:
        return KV_HEADS
    if key in _TOKEN_IDS:
        if isinstance(value, int) and value >= V:
            return _TOKEN_IDS[key]
        if isinstance(value, list):
            return [v if v < V else _TOKEN_IDS[key] for v in value if isinstance(v, int)]
        return value
    if isinstance(value, list) and key in _SIZES and all(isinstance(v, int) for v in value):
        value = [min(v, _SIZES[key]) for v in value]  # per-layer sizes (Gemma 3n's intermediate_size)
    if isinstance(value, list) and n_layers_before and len(value) == n_layers_before:
        return _cut_layers(value)  # per-layer settings (layer_types, ...)
    return value


def shrink(config_dict: dict) -> dict:
    """The kwargs that shrink a config: sizes by field name, per-layer lists and dicts cut to the
    first blocks, sub-configs recursed. Only changed fields are returned, so fields a config derives
    from others (``head_dim``, ``lru_width``, ``layer_types``...) are derived again from the new sizes."""
    n_before = next(
        (config_dict[k] for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers") if k in config_dict), None
    )
    n_before = n_before if isinstance(n_before, int) else None
    out = {}
    for key, value in config_dict.items():
        per_layer = isinstance(value, dict) and value and all(str(k).isdigit() for k in value)
        if not per_layer and isinstance(value, dict) and ("model_type" in value or key.endswith("_config")):
            new = shrink(value)
            if new:
                out[key] = {**({"model_type": value["model_type"]} if "model_type" in value else value), **new}
            continue
        if per_layer:
            new = {  # per-layer settings keyed by index, each shrunk too (Dots3's per_layer_config)
                k: {**v, **shrink(v)} if isinstance(v, dict) else v for k, v in value.items() if int(k) < LAYERS
            }
        else:
            new = _shrink_value(key, value, n_before)
        if new != value:
            out[key] = new
    experts = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
    if any(config_dict.get(k) for k in experts) and config_dict.get("num_experts_per_tok", 0) is None:
        out["num_experts_per_tok"] = 2
    if "kv_lora_rank" in config_dict:  # multi-head latent attention: as many key/value heads as heads
        for key in _KV:
            if key in config_dict:
                out[key] = HEADS
    return out


def _merged(base: dict, extra: dict) -> dict:
    """``base`` updated by ``extra``, nested dicts (sub-configs) merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return out


# Layer-kind names older releases' configs insist on (transformers 5.0's Granite 4.0-H config takes only
# "mamba"/"attention" and raises on the names later releases use): tried only when the config rejects OVERRIDES.
_OLDER_LAYER_NAMES: dict[str, dict[str, str]] = {
    "granitemoehybrid": {"linear_attention": "mamba", "full_attention": "attention"},
}


def _mamba_kernels_is_a_hard_switch(model_type: str) -> bool:
    """Whether the installed modeling code runs the CUDA-only Mamba kernels whenever the config's
    ``use_mamba_kernels`` is set (transformers 5.0's Jamba/Zamba: their forward then raises on CPU, and
    the release tells CPU users to set it False); later releases choose the implementation themselves."""
    import importlib
    import inspect

    try:
        module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    except ImportError:
        return False
    return "use_fast_kernels = config.use_mamba_kernels" in inspect.getsource(module)


def _config_for(model_type: str, kw: dict):
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(model_type, **kw)
    except ValueError:
        names = _OLDER_LAYER_NAMES.get(model_type)
        if not names or "layer_types" not in kw:
            raise
        return AutoConfig.for_model(model_type, **{**kw, "layer_types": [names.get(t, t) for t in kw["layer_types"]]})


def small_config(model_type: str, class_name: str | None = None):
    """The config of ``model_type`` (for ``class_name``) at sweep size (raises whatever the config class raises)."""
    from transformers import AutoConfig

    extra = _merged(OVERRIDES.get(model_type, {}), OVERRIDES.get(class_name, {}))
    try:
        default = AutoConfig.for_model(model_type)
    except Exception:  # noqa: BLE001 - some config classes reject their own defaults (Gemma 4 assistants)
        default = AutoConfig.for_model(model_type, **extra)
    base = default.to_dict()
    kw = shrink(base)
    for key in ("model_type", "transformers_version", "architectures", "_name_or_path"):
        kw.pop(key, None)
    kw = _merged(kw, extra)  # a sub-config override merges into the shrunk sub-config
    config = _config_for(model_type, kw)
    if getattr(config, "use_mamba_kernels", False) and _mamba_kernels_is_a_hard_switch(model_type):
        config.use_mamba_kernels = False  # the PyTorch path, as CPU users of that release must set it
    config._attn_implementation = "eager"
    for sub in ("text_config", "decoder", "encoder"):
        inner = getattr(config, sub, None)
        if inner is not None and hasattr(inner, "_attn_implementation"):
            inner._attn_implementation = "eager"
    return config


def build(class_name: str, config, *, seed: int = 0, noise: float = 0.05):
    """Instantiate ``transformers.<class_name>`` from ``config``, perturbed, in eval mode (float32).

    Raises:
        ValueError: the model is still too large (a size field the shrink does not know).
    """
    import transformers

    cls = getattr(transformers, class_name)
    with torch.device("meta"):
        probe = cls(config)
    n_params = sum(p.numel() for p in probe.parameters())
    if n_params > MAX_PARAMS:
        big = max(probe.named_parameters(), key=lambda kv: kv[1].numel())
        raise ValueError(f"{n_params / 1e6:.1f}M parameters after shrinking (largest {big[0]} {tuple(big[1].shape)})")
    del probe
    torch.manual_seed(seed)
    model = cls(config)
    if hasattr(model, "set_default_language"):  # X-MOD: one adapter per language, chosen before use
        model.set_default_language(getattr(config, "default_language", None) or config.languages[0])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
        for name, b in model.named_buffers():
            if name.endswith("final_logits_bias"):
                b.add_(torch.randn_like(b) * 0.5)
    return model.eval()
