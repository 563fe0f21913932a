"""Tiny random-init models of many architectures, built in code, every parameter perturbed.

Fresh norms are exactly 1/0 and fresh biases 0, which would hide a skipped norm or bias, so every
parameter (and BART's ``final_logits_bias`` buffer) gets noise after init.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

V = 96  # vocab
D = 32  # d_model
L = 3  # blocks

_LLAMA = dict(
    hidden_size=D,
    intermediate_size=64,
    num_hidden_layers=L,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)

CONFIGS: dict[str, dict] = {
    "gpt2": dict(n_layer=L, n_embd=D, n_head=4, n_positions=128),
    "gpt_neox": dict(
        hidden_size=D,
        intermediate_size=64,
        num_hidden_layers=L,
        num_attention_heads=4,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    ),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": dict(_LLAMA, head_dim=8),
    "gemma": dict(_LLAMA, head_dim=8),
    "gemma2": dict(
        _LLAMA, head_dim=8, final_logit_softcapping=2.0, attn_logit_softcapping=20.0, query_pre_attn_scalar=8
    ),
    "gemma3_text": dict(_LLAMA, head_dim=8, final_logit_softcapping=3.0, sliding_window=16, query_pre_attn_scalar=8),
    "phi": dict(
        hidden_size=D, intermediate_size=64, num_hidden_layers=L, num_attention_heads=4, max_position_embeddings=128
    ),
    "phi3": dict(_LLAMA, num_key_value_heads=4, pad_token_id=0),
    "opt": dict(
        hidden_size=D,
        ffn_dim=64,
        num_hidden_layers=L,
        num_attention_heads=4,
        max_position_embeddings=128,
        word_embed_proj_dim=16,
        pad_token_id=1,
    ),
    "bloom": dict(hidden_size=D, n_layer=L, n_head=4),
    "falcon": dict(
        hidden_size=D,
        num_hidden_layers=L,
        num_attention_heads=4,
        new_decoder_architecture=False,
        multi_query=True,
        alibi=False,
    ),
    "gptj": dict(n_embd=D, n_layer=L, n_head=4, rotary_dim=4, n_positions=128),
    "gpt_neo": dict(
        hidden_size=D,
        num_layers=L,
        num_heads=4,
        attention_types=[[["global", "local"], 1], [["global"], 1]],
        max_position_embeddings=128,
        window_size=8,
    ),
    "mixtral": dict(_LLAMA, num_local_experts=4, num_experts_per_tok=2),
    "granite": dict(_LLAMA, logits_scaling=4.0, embedding_multiplier=2.0, residual_multiplier=0.5),
    "cohere": dict(_LLAMA, logit_scale=0.5),
    "t5": dict(
        d_model=D,
        d_kv=8,
        d_ff=64,
        num_layers=L,
        num_decoder_layers=L,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    ),
    "t5_untied": dict(
        d_model=D,
        d_kv=8,
        d_ff=64,
        num_layers=L,
        num_decoder_layers=L,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    ),
    "bart": dict(
        d_model=D,
        encoder_layers=2,
        decoder_layers=L,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    ),
    "mbart": dict(
        d_model=D,
        encoder_layers=2,
        decoder_layers=L,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    ),
    "bert": dict(
        hidden_size=D, num_hidden_layers=L, num_attention_heads=4, intermediate_size=64, max_position_embeddings=128
    ),
    "roberta": dict(
        hidden_size=D,
        num_hidden_layers=L,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=1,
    ),
}

CAUSAL = [k for k in CONFIGS if k not in {"t5", "t5_untied", "bart", "mbart", "bert", "roberta"}]
SEQ2SEQ = ["t5", "t5_untied", "bart", "mbart"]
MASKED = ["bert", "roberta"]


def config_for(name: str):
    model_type = "t5" if name == "t5_untied" else name
    kw = dict(CONFIGS[name], vocab_size=V)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        kw.setdefault(key, None if model_type not in {"t5"} else kw.get(key))
    cfg = AutoConfig.for_model(model_type, **kw)
    cfg._attn_implementation = "eager"
    return cfg


def build(name: str, seed: int = 0, noise: float = 0.05, **overrides):
    """A tiny model of architecture ``name`` (a key of CONFIGS), in eval mode, float32; ``overrides``
    set config attributes first (``num_hidden_layers=6``, ``sliding_window=4``)."""
    cfg = config_for(name)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    torch.manual_seed(seed)
    if name in SEQ2SEQ:
        model = AutoModelForSeq2SeqLM.from_config(cfg)
    elif name in MASKED:
        model = AutoModelForMaskedLM.from_config(cfg)
    else:
        model = AutoModelForCausalLM.from_config(cfg)
    if name == "t5_untied":
        # transformers 5 always ties T5's head to the shared embedding (the config flag only
        # drives the d_model**-0.5 rescale); untie it by hand, as a T5 v1.1 checkpoint is.
        head = model.lm_head
        head.weight = torch.nn.Parameter(head.weight.detach().clone() + torch.randn_like(head.weight))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
        bias = getattr(model, "final_logits_bias", None)
        if bias is not None:
            bias.add_(torch.randn_like(bias) * 0.5)
    return model.eval()


TEXT = (
    "The quick brown fox jumps over the lazy dog. And God said, Let there be light: and there was light.\n"
    "In the beginning was the Word, and the Word was with God. The cat sat on the mat; the dog sat on the log."
)


def tokenizer(vocab_size: int = 300):
    """A small byte-level BPE tokenizer trained in code (no hub), wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([TEXT] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def saved_gpt2(path, *, n_layer: int = L, seed: int = 0):
    """Save a tiny GPT-2 and its tokenizer to ``path`` (a model directory like a hub snapshot)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tokenizer()
    cfg = GPT2Config(
        n_layer=n_layer, n_embd=D, n_head=4, n_positions=64, vocab_size=len(tok), bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model.eval(), tok
