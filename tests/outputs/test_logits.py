"""Scope.logits against the models themselves: causal, encoder-decoder (first step, teacher-forced,
greedy), masked; batching, top-k, export, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tiny
import torch

from logitscope import Scope
from logitscope.errors import ContextLengthError, EmptyInputError, InputError, NoLMHeadError
from logitscope.outputs.logits import LogitsResult, TopTokens

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEQS = [[5, 17, 33, 8, 61, 12, 40], [11, 4], [60, 61, 62, 63, 64]]
SRC = [5, 17, 33, 8, 61, 12, 40, 77, 23, 9]
TGT = [14, 52, 7, 30]
# A spread of position schemes: learned (gpt2, opt with offset), rotary, alibi (bloom), softcap, scaling.
CAUSAL = ["gpt2", "llama", "opt", "bloom", "gemma2", "granite"]


def word_tokenizer():
    """A WordLevel tokenizer over tiny.TEXT with BERT-style specials (fits tiny.V = 96)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w for w in pre_tokenizers.Whitespace().pre_tokenize_str(tiny.TEXT.lower()) for w in [w[0]]})
    vocab = {w: i for i, w in enumerate(specials + words)}
    assert len(vocab) <= tiny.V
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def forward(model, **kw) -> torch.Tensor:
    """The model's own logits for one sequence, (positions, vocab)."""
    with torch.inference_mode():
        return model(**{k: torch.tensor([v]) for k, v in kw.items()}).logits[0].float()


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_logits_equal_model_and_batch_equals_single(name):
    model = tiny.build(name)
    scope = Scope(model)
    batch = scope.logits(SEQS, batch_size=3)  # right-padded batch of different lengths
    for seq, out in zip(SEQS, batch):
        assert out.logits.dtype == torch.float32 and out.logits.device.type == "cpu"
        assert out.logits.shape == (len(seq), tiny.V)
        torch.testing.assert_close(out.logits, forward(model, input_ids=seq), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scope.logits(seq).logits, out.logits, atol=1e-5, rtol=1e-5)
        assert out.target_ids.tolist() == seq[1:] + [-1]
        assert out.token_ids.tolist() == seq


@pytest.mark.parametrize("name", ["t5", "bart", "mbart"])
def test_seq2seq_without_target_is_first_decoder_step(name):
    model = tiny.build(name)
    out = Scope(model).logits(SRC)
    start = model.config.decoder_start_token_id
    assert out.logits.shape == (1, tiny.V)
    assert out.token_ids.tolist() == [start] and out.source_ids.tolist() == SRC
    torch.testing.assert_close(out.logits, forward(model, input_ids=SRC, decoder_input_ids=[start]))


@pytest.mark.parametrize("name", ["t5", "bart"])
def test_seq2seq_target_is_teacher_forced_like_labels(name):
    model = tiny.build(name)
    scope = Scope(model)
    out = scope.logits(SRC, target=TGT)
    assert out.logits.shape == (len(TGT) + 1, tiny.V)
    assert out.target_ids.tolist() == TGT + [-1]
    # With labels the model shifts them right behind decoder_start_token_id itself.
    torch.testing.assert_close(out.logits[: len(TGT)], forward(model, input_ids=SRC, labels=TGT))
    start = model.config.decoder_start_token_id
    torch.testing.assert_close(out.logits, forward(model, input_ids=SRC, decoder_input_ids=[start, *TGT]))
    # different source and target lengths in one padded batch
    srcs, tgts = [SRC, SRC[:3], SRC[2:8]], [TGT, TGT[:1], TGT[::-1] + TGT]
    for s, t, res in zip(srcs, tgts, scope.logits(srcs, target=tgts)):
        torch.testing.assert_close(res.logits, scope.logits(s, target=t).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama", "t5", "bart"])
def test_generate_is_greedy_and_matches_model_generate(name):
    model = tiny.build(name, noise=0.5)  # larger noise: less repetitive greedy output
    seq2seq = name in tiny.SEQ2SEQ
    out = Scope(model).logits(SRC, generate=6)
    with torch.inference_mode():
        ref = model.generate(
            torch.tensor([SRC]),
            attention_mask=torch.ones(1, len(SRC), dtype=torch.long),
            max_new_tokens=6,
            do_sample=False,
            num_beams=1,
            forced_eos_token_id=None,
            forced_bos_token_id=None,
            pad_token_id=0,
        )[0]
    gen = out.generated_ids.tolist()
    assert gen == ref[1 if seq2seq else len(SRC) :].tolist()
    assert out.logits.shape == (len(gen), tiny.V)
    assert out.logits.argmax(-1).tolist() == gen == out.target_ids.tolist()
    # every step's row is the model's own last-position logits on the prefix so far
    for i in range(len(gen)):
        if seq2seq:
            start = model.config.decoder_start_token_id
            ref_i = forward(model, input_ids=SRC, decoder_input_ids=[start, *gen[:i]])[-1]
        else:
            ref_i = forward(model, input_ids=SRC + gen[:i])[-1]
        torch.testing.assert_close(out.logits[i], ref_i, atol=1e-4, rtol=1e-4)


def test_generate_text_and_limits(tmp_path):
    import logitscope

    _, tok = tiny.saved_gpt2(tmp_path)
    scope = logitscope.load(tmp_path)
    out = scope.logits("The cat sat", generate=4)
    assert out.generated_text == tok.decode(out.generated_ids.tolist(), skip_special_tokens=True)
    assert out.source_ids.tolist() == tok("The cat sat")["input_ids"]
    with pytest.raises(ContextLengthError):
        scope.logits("The cat sat", generate=200)  # n_positions is 64
    with pytest.raises(InputError):
        scope.logits("The cat", target=" sat", generate=2)


@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_masked_logits_and_mask_positions(name):
    tok = word_tokenizer()
    model = tiny.build(name)
    scope = Scope(model, tok)
    texts = ["the cat [MASK] on the mat .", "[MASK] said , let there be [MASK]"]
    outs = scope.logits(texts)
    for text, out in zip(texts, outs):
        ids = tok(text)["input_ids"]
        torch.testing.assert_close(out.logits, forward(model, input_ids=ids), atol=1e-5, rtol=1e-5)
        masks = [i for i, t in enumerate(ids) if t == tok.mask_token_id]
        assert out.mask_positions.tolist() == masks
        top = out.top(3, positions=out.mask_positions)
        assert top.positions.tolist() == masks and top.tokens == ["[MASK]"] * len(masks)
        assert top.top_ids.tolist() == out.logits[masks].topk(3).indices.tolist()
    with pytest.raises(InputError):
        scope.logits("the cat", target="sat")
    with pytest.raises(InputError):
        scope.logits("the cat", generate=2)


def test_top_is_softmax_topk_and_json_round_trips():
    tok = word_tokenizer()
    out = Scope(tiny.build("llama"), tok).logits("the cat sat on the mat")
    top = out.top(4)
    probs = out.logits.softmax(-1)
    ref = probs.topk(4)
    assert top.top_ids.tolist() == ref.indices.tolist()
    np.testing.assert_allclose(top.top_probs, ref.values.numpy(), rtol=1e-5)
    np.testing.assert_allclose(top.top_logits, out.logits.topk(4).values.numpy())
    n = len(out.tokens)
    tgt = out.token_ids[1:]
    np.testing.assert_allclose(top.target_probs[:-1], probs[torch.arange(n - 1), tgt].numpy(), rtol=1e-5)
    assert np.isnan(top.target_probs[-1]) and top.target_ranks[-1] == -1 and top.target_tokens[-1] is None
    ranks = (out.logits[:-1] > out.logits[torch.arange(n - 1), tgt].unsqueeze(1)).sum(-1)
    assert top.target_ranks[:-1].tolist() == ranks.tolist()
    assert top.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert top.top_tokens[0] == [tok.decode([i]) for i in top.top_ids[0]]
    data = json.loads(json.dumps(top.to_dict()))
    assert TopTokens.from_dict(data).to_dict() == data
    with pytest.raises(InputError):
        out.top(0)


def test_save_safetensors_and_npy(tmp_path):
    out = Scope(tiny.build("t5")).logits(SRC, target=TGT)
    out.save(tmp_path / "x.safetensors")
    back = LogitsResult.load(tmp_path / "x.safetensors")
    assert torch.equal(back.logits, out.logits)
    assert back.token_ids.tolist() == out.token_ids.tolist() and back.source_ids.tolist() == SRC
    assert back.target_ids.tolist() == out.target_ids.tolist() and back.meta == out.meta
    out.save(tmp_path / "x.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), out.logits.numpy())
    with pytest.raises(InputError):
        out.save(tmp_path / "x.csv")


def test_dtype_and_device_options():
    model = tiny.build("llama").to(torch.bfloat16)
    scope = Scope(model)
    assert scope.logits(SRC).logits.dtype == torch.float32
    kept = scope.logits(SRC, dtype=None, device=None)
    assert kept.logits.dtype == torch.bfloat16
    torch.testing.assert_close(kept.logits, forward(model, input_ids=SRC).to(torch.bfloat16))


def test_input_errors():
    tok = word_tokenizer()
    scope = Scope(tiny.build("gpt2"), tok)
    with pytest.raises(EmptyInputError):
        scope.logits("")
    with pytest.raises(ContextLengthError):
        scope.logits(list(range(10)) * 13)  # 130 tokens, context 128
    assert scope.logits(list(range(10)) * 13, truncate=True).logits.shape == (128, tiny.V)
    with pytest.raises(InputError):
        scope.logits(SEQS, target=[TGT])  # 3 inputs, 1 target


def test_encoder_without_head_raises_clear_error():
    from transformers import BertModel

    scope = Scope(BertModel(tiny.config_for("bert")))
    assert scope.kind == "encoder"
    with pytest.raises(NoLMHeadError, match="no language-modelling head"):
        scope.logits(SRC)
