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
MAX_PARAMS = 4_000_000  # anything larger was not shrunk: reported as not buildable

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
    **dict.fromkeys(["vocab_size", "n_vocab", "text_vocab_size"], V),
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

# Per model type: extra config kwargs (after the generic shrink) where the names above are not enough.
OVERRIDES: dict[str, dict] = {
    "longformer": {"attention_window": 4},  # pads 6 tokens to 8 inside the model (default: 512)
    "esm": {"pad_token_id": 1, "mask_token_id": 5},  # ESM checkpoints set these; the config class does not
    "esmc": {"num_key_value_heads": HEADS},  # no grouped-query attention
    "mamba2": {"head_dim": 2 * D // HEADS, "n_groups": 1},  # num_heads * head_dim == expand * hidden_size
    "lfm2_moe": {"layer_types": ["conv", "full_attention", "conv"], "num_dense_layers": 1},
    "dots1": {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1},
    "gemma3n_text": {"num_kv_shared_layers": 0},
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
        if isinstance(value, dict) and ("model_type" in value or key.endswith("_config")):
            new = shrink(value)
            if new:
                out[key] = {**({"model_type": value["model_type"]} if "model_type" in value else value), **new}
            continue
        if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
            new = {k: v for k, v in value.items() if int(k) < LAYERS}  # per-layer settings keyed by index
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


def small_config(model_type: str):
    """The config of ``model_type`` at sweep size (raises whatever the config class raises)."""
    from transformers import AutoConfig

    default = AutoConfig.for_model(model_type)
    kw = shrink(default.to_dict())
    for key in ("model_type", "transformers_version", "architectures", "_name_or_path"):
        kw.pop(key, None)
    kw.update(OVERRIDES.get(model_type, {}))
    config = AutoConfig.for_model(model_type, **kw)
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
