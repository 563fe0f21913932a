"""The lens, row by row, against the model itself with its later blocks removed (the truncation oracle).

The oracle never touches logitscope: it deep-copies the model, keeps only the first ``l`` blocks
(block paths written here, independently of the registry) and runs the real forward.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tiny
import torch
from torch import nn

import logitscope

# Where each test architecture keeps the blocks the lens runs over (test-side knowledge).
BLOCKS = {
    **dict.fromkeys(
        [
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3_text",
            "phi",
            "phi3",
            "mixtral",
            "granite",
            "cohere",
        ],
        "model.layers",
    ),
    **dict.fromkeys(["gpt2", "bloom", "falcon", "gptj", "gpt_neo"], "transformer.h"),
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
    "t5": "decoder.block",
    "t5_untied": "decoder.block",
    "bart": "model.decoder.layers",
    "mbart": "model.decoder.layers",
    "bert": "bert.encoder.layer",
    "roberta": "roberta.encoder.layer",
}
assert set(BLOCKS) == set(tiny.CONFIGS)

SRC = [5, 17, 33, 8, 61, 12, 40, 77, 23, 9]
TGT = [14, 52, 7, 30]


def truncated(model: nn.Module, path: str, n_keep: int) -> nn.Module:
    """A copy of ``model`` whose block list at ``path`` holds only its first ``n_keep`` blocks."""
    clone = copy.deepcopy(model)
    parent_path, name = path.rsplit(".", 1)
    parent = clone.get_submodule(parent_path)
    setattr(parent, name, nn.ModuleList(list(getattr(parent, name))[:n_keep]))
    return clone


def oracle_logprobs(model, name: str, n_keep: int) -> torch.Tensor:
    """(positions, vocab) float64 log-probabilities of the model cut after ``n_keep`` blocks."""
    cut = truncated(model, BLOCKS[name], n_keep)
    with torch.no_grad():
        if name in tiny.SEQ2SEQ:
            start = model.config.decoder_start_token_id
            out = cut(input_ids=torch.tensor([SRC]), decoder_input_ids=torch.tensor([[start, *TGT]]))
        else:
            out = cut(input_ids=torch.tensor([SRC]))
    return out.logits[0].double().log_softmax(-1)


def lens_of(model, name: str, **kw):
    scope = logitscope.Scope(model)
    if name in tiny.SEQ2SEQ:
        return scope.lens(SRC, target=TGT, **kw)
    return scope.lens(SRC, **kw)


@pytest.mark.parametrize("name", list(tiny.CONFIGS))
def test_every_row_equals_truncated_model(name):
    model = tiny.build(name)
    res = lens_of(model, name, top_k=3, track=[3, 50])
    n_blocks = len(model.get_submodule(BLOCKS[name]))
    assert res.n_streams == n_blocks + 1
    assert res.layer_names[0] == "embed" and res.layer_names[-1] == str(n_blocks)
    final = oracle_logprobs(model, name, n_blocks)
    # the last row is the model's own output distribution
    with torch.no_grad():
        full = lens_inputs_forward(model, name)
    np.testing.assert_allclose(final.numpy(), full.numpy(), atol=1e-5)
    targets = torch.tensor(res.target_ids)
    for row in range(n_blocks + 1):
        logp = oracle_logprobs(model, name, row)
        p = logp.exp()
        entropy = -(p * logp).sum(-1)
        kl = (final.exp() * (final - logp)).sum(-1)
        np.testing.assert_allclose(res.entropy[row], entropy.numpy(), atol=1e-4, err_msg=f"{name} row {row} entropy")
        np.testing.assert_allclose(res.kl_to_final[row], kl.numpy(), atol=1e-4, err_msg=f"{name} row {row} KL")
        top_p, top_i = p.topk(3, dim=-1)
        assert (res.top_ids[row, :, 0] == top_i[:, 0].numpy()).all(), f"{name} row {row} top-1"
        np.testing.assert_allclose(res.top_probs[row], top_p.numpy(), atol=1e-5)
        has = targets >= 0
        tgt_lp = logp[has.nonzero()[:, 0], targets[has]]
        np.testing.assert_allclose(res.target_logprob[row][has.numpy()], tgt_lp.numpy(), atol=1e-4)
        ranks = (logp[has] > tgt_lp[:, None]).sum(-1)
        np.testing.assert_array_equal(res.target_rank[row][has.numpy()], ranks.numpy())
        assert np.isnan(res.target_prob[row][~has.numpy()]).all() and (res.target_rank[row][~has.numpy()] == -1).all()
        np.testing.assert_allclose(res.tracked_probs[:, row].T, p[:, [3, 50]].numpy(), atol=1e-5)
        np.testing.assert_array_equal(res.tracked_ranks[1, row], (logp > logp[:, 50:51]).sum(-1).numpy())


def lens_inputs_forward(model, name):
    """The untouched model's own log-probabilities on the test input."""
    if name in tiny.SEQ2SEQ:
        start = model.config.decoder_start_token_id
        out = model(input_ids=torch.tensor([SRC]), decoder_input_ids=torch.tensor([[start, *TGT]]))
    else:
        out = model(input_ids=torch.tensor([SRC]))
    return out.logits[0].double().log_softmax(-1)


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2", "t5", "bart", "bert"])
def test_small_chunks_change_nothing(name):
    model = tiny.build(name)
    big = lens_of(model, name, top_k=4, track=[3, 50])
    scope = logitscope.Scope(model, chunk_size=3)  # forces many position and layer chunks
    small = scope.lens(SRC, target=TGT if name in tiny.SEQ2SEQ else None, top_k=4, track=[3, 50])
    for field in ("entropy", "kl_to_final", "top_probs", "target_logprob", "tracked_probs"):
        np.testing.assert_allclose(getattr(small, field), getattr(big, field), atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(small.top_ids, big.top_ids)
    np.testing.assert_array_equal(small.target_rank, big.target_rank)
    np.testing.assert_array_equal(small.tracked_ranks, big.tracked_ranks)


@pytest.mark.parametrize("name", ["gpt2", "llama", "opt", "t5", "bert"])
def test_padded_batches_match_one_at_a_time(name):
    model = tiny.build(name)
    scope = logitscope.Scope(model)
    inputs = [SRC[:3], SRC, SRC[2:7], SRC[:1]]
    targets = [TGT[:2], TGT, TGT[:1], TGT[1:]] if name in tiny.SEQ2SEQ else None
    batched = scope.lens(inputs, target=targets, batch_size=3)
    assert len(batched) == len(inputs)
    for i, x in enumerate(inputs):
        one = scope.lens(x, target=targets[i] if targets else None)
        assert batched[i].token_ids.tolist() == one.token_ids.tolist()
        for field in ("entropy", "kl_to_final", "top_probs", "target_logprob"):
            np.testing.assert_allclose(getattr(batched[i], field), getattr(one, field), atol=1e-4, equal_nan=True)
        np.testing.assert_array_equal(batched[i].top_ids[:, :, 0], one.top_ids[:, :, 0])


def test_layers_subset_and_names():
    model = tiny.build("llama")
    scope = logitscope.Scope(model)
    full = scope.lens(SRC)
    sub = scope.lens(SRC, layers=[0, -1, "2"])
    assert sub.layer_names == ["embed", "2", "3"]
    np.testing.assert_array_equal(sub.layers, [0, 2, 3])
    np.testing.assert_allclose(sub.entropy, full.entropy[[0, 2, 3]], atol=1e-6)
    np.testing.assert_allclose(sub.kl_to_final, full.kl_to_final[[0, 2, 3]], atol=1e-6)
    only_embed = scope.lens(SRC, layers=[0])  # KL still against the final layer
    np.testing.assert_allclose(only_embed.kl_to_final[0], full.kl_to_final[0], atol=1e-6)


def test_causal_target_scores_the_continuation():
    model = tiny.build("gpt2")
    scope = logitscope.Scope(model)
    res = scope.lens(SRC[:6], target=SRC[6:])
    assert res.n_positions == len(SRC)
    expected = [-1] * 5 + SRC[6:] + [-1]
    assert res.target_ids.tolist() == expected
    logp = lens_inputs_forward(model, "gpt2")
    for pos in range(5, 9):
        assert res.target_logprob[-1, pos] == pytest.approx(float(logp[pos, SRC[pos + 1]].detach()), abs=1e-4)
    assert np.isnan(res.target_prob[:, :5]).all()


def test_masked_lm_targets_are_the_input_tokens():
    model = tiny.build("bert")
    res = logitscope.Scope(model).lens(SRC)
    assert res.target_ids.tolist() == SRC


def test_seq2seq_without_target_is_the_start_token_only():
    model = tiny.build("t5")
    res = logitscope.Scope(model).lens(SRC)
    assert res.token_ids.tolist() == [model.config.decoder_start_token_id]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([SRC]), decoder_input_ids=torch.tensor([[0]])).logits[0, 0]
    assert res.top_ids[-1, 0, 0] == int(ref.argmax())


def test_bfloat16_model_keeps_float32_stats():
    model = tiny.build("llama").to(torch.bfloat16)
    res = logitscope.Scope(model).lens(SRC)
    assert res.entropy.dtype == np.float32 and np.isfinite(res.entropy).all()
    ref = tiny.build("llama")
    res32 = logitscope.Scope(ref).lens(SRC)
    np.testing.assert_allclose(res.entropy, res32.entropy, atol=0.05)
