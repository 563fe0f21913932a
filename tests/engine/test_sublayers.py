"""The sub-layer lens against the model itself: later blocks removed, block l's MLP output zeroed.

The oracle never touches logitscope's registry: it deep-copies the model, keeps the first ``l``
blocks, silences block ``l``'s MLP branch with a hook (module paths written here, test-side) and
runs the real forward. Row ``"l.attn"`` (``"l.in+attn"`` for parallel blocks) must match it.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
from test_lens_exact import BLOCKS, SRC, TGT, truncated

import logitscope
from logitscope.errors import InputError, UnsupportedModelError

# The module, relative to a block, whose output is the MLP branch added to the stream (test-side).
MLP = {
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
            "gpt2",
            "gpt_neo",
            "gptj",
            "gpt_neox",
            "falcon",
        ],
        "mlp",
    ),
    "opt": "fc2",
    "bloom": "mlp.dense_4h_to_h",  # BloomMLP adds the residual itself: silence only its projection
    **dict.fromkeys(["t5", "t5_untied"], "layer.2.DenseReluDense"),
    "mbart": "fc2",
}
PARALLEL = {"phi", "gptj", "gpt_neox", "falcon", "cohere"}  # these tiny configs have parallel blocks
REFUSED = {"bart", "bert", "roberta"}  # post-norm blocks: no stream the MLP only adds to


def test_every_tiny_architecture_is_classified():
    # a new architecture in tests/tiny.py needs its MLP path here (or a place in REFUSED)
    assert set(MLP) | REFUSED == set(tiny.CONFIGS)


def _zero(module, args, output):
    if isinstance(output, tuple):
        return (torch.zeros_like(output[0]), *output[1:])
    return torch.zeros_like(output)


def oracle_logprobs(model, name: str, block: int) -> torch.Tensor:
    """(positions, vocab) float64 log-probabilities: first ``block`` blocks, the last one's MLP silenced."""
    cut = truncated(model, BLOCKS[name], block)
    cut.get_submodule(BLOCKS[name])[block - 1].get_submodule(MLP[name]).register_forward_hook(_zero)
    with torch.no_grad():
        if name in tiny.SEQ2SEQ:
            start = model.config.decoder_start_token_id
            out = cut(input_ids=torch.tensor([SRC]), decoder_input_ids=torch.tensor([[start, *TGT]]))
        else:
            out = cut(input_ids=torch.tensor([SRC]))
    return out.logits[0].double().log_softmax(-1)


def sublayer_lens(model, name: str, **kw):
    scope = logitscope.Scope(model)
    return scope.lens(SRC, target=TGT if name in tiny.SEQ2SEQ else None, sublayers=True, **kw)


@pytest.mark.parametrize("name", sorted(MLP))
def test_attn_rows_equal_model_with_mlp_silenced(name):
    model = tiny.build(name)
    res = sublayer_lens(model, name, top_k=3)
    n_blocks = len(model.get_submodule(BLOCKS[name]))
    suffix = "in+attn" if name in PARALLEL else "attn"
    expected = ["embed"] + [n for b in range(1, n_blocks + 1) for n in (f"{b}.{suffix}", str(b))]
    assert res.layer_names == expected
    assert res.meta["sublayers"] == ("parallel" if name in PARALLEL else "sequential")
    plain = logitscope.Scope(model).lens(SRC, target=TGT if name in tiny.SEQ2SEQ else None, top_k=3)
    has = res.target_ids >= 0
    targets = torch.tensor(res.target_ids)
    for b in range(1, n_blocks + 1):
        row = res.layer_names.index(f"{b}.{suffix}")
        logp = oracle_logprobs(model, name, b)
        p = logp.exp()
        np.testing.assert_allclose(res.entropy[row], -(p * logp).sum(-1).numpy(), atol=1e-4, err_msg=f"{name} {b}")
        top_p, top_i = p.topk(3, dim=-1)
        np.testing.assert_array_equal(res.top_ids[row, :, 0], top_i[:, 0].numpy(), err_msg=f"{name} {b} top-1")
        np.testing.assert_allclose(res.top_probs[row], top_p.numpy(), atol=1e-5)
        tgt = logp[torch.from_numpy(has).nonzero()[:, 0], targets[has]]
        np.testing.assert_allclose(res.target_logprob[row][has], tgt.numpy(), atol=1e-4)
        # block rows are the plain lens's rows, KL still against the final row
        full = res.layer_names.index(str(b))
        np.testing.assert_allclose(res.entropy[full], plain.entropy[b], atol=1e-6)
        np.testing.assert_allclose(res.kl_to_final[full], plain.kl_to_final[b], atol=1e-6)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_post_norm_blocks_are_refused(name):
    scope = logitscope.Scope(tiny.build(name))
    with pytest.raises(UnsupportedModelError, match="sub-layer lens"):
        scope.lens(SRC, target=TGT if name in tiny.SEQ2SEQ else None, sublayers=True)


def test_layers_subset_chunks_and_batches():
    model = tiny.build("llama")
    scope = logitscope.Scope(model)
    full = scope.lens(SRC, sublayers=True, track=[3])
    sub = scope.lens(SRC, sublayers=True, layers=[0, 2])
    assert sub.layer_names == ["embed", "2.attn", "2"]
    np.testing.assert_allclose(sub.entropy, full.entropy[[0, 3, 4]], atol=1e-6)
    np.testing.assert_allclose(sub.kl_to_final, full.kl_to_final[[0, 3, 4]], atol=1e-6)
    small = logitscope.Scope(model, chunk_size=3).lens(SRC, sublayers=True, track=[3])
    np.testing.assert_allclose(small.tracked_probs, full.tracked_probs, atol=1e-6)
    np.testing.assert_array_equal(small.top_ids, full.top_ids)
    batched = scope.lens([SRC[:4], SRC], sublayers=True, batch_size=2)
    np.testing.assert_allclose(batched[1].entropy, full.entropy, atol=1e-5)
    np.testing.assert_allclose(batched[0].entropy, scope.lens(SRC[:4], sublayers=True).entropy, atol=1e-5)


@pytest.mark.parametrize("name", ["llama", "gptj"])
def test_layers_names_sublayer_rows(name):
    scope = logitscope.Scope(tiny.build(name))
    full = scope.lens(SRC, sublayers=True)
    suffix = full.layer_names[1].split(".", 1)[1]  # "attn", or "in+attn" for parallel blocks
    sub = scope.lens(SRC, layers=["2.attn", 0, "-1.attn"])  # naming a sub-layer row implies sublayers=True
    assert sub.layer_names == ["embed", f"2.{suffix}", f"3.{suffix}"]
    rows = [full.layer_names.index(n) for n in sub.layer_names]
    np.testing.assert_allclose(sub.entropy, full.entropy[rows], atol=1e-6)
    np.testing.assert_allclose(sub.kl_to_final, full.kl_to_final[rows], atol=1e-6)
    np.testing.assert_array_equal(sub.top_ids, full.top_ids[rows])
    for bad in (["2.mlp"], ["4.attn"], ["x.attn"]):
        with pytest.raises(InputError):
            scope.lens(SRC, layers=bad)


def test_kl_of_attn_rows_is_against_the_final_row():
    model = tiny.build("gpt2")
    res = sublayer_lens(model, "gpt2")
    final = oracle_logprobs(model, "gpt2", 3)  # MLP of the last block silenced, not the final row
    with torch.no_grad():
        real = model(input_ids=torch.tensor([SRC])).logits[0].double().log_softmax(-1)
    kl = (real.exp() * (real - final)).sum(-1)
    np.testing.assert_allclose(res.kl_to_final[res.layer_names.index("3.attn")], kl.numpy(), atol=1e-4)


def test_sublayers_with_tuned_lens_is_refused():
    scope = logitscope.Scope(tiny.build("llama"))
    from logitscope.tuned import TunedLens

    with pytest.raises(InputError, match="sublayers=True works with the logit lens only"):
        scope.lens(SRC, sublayers=True, tuned=TunedLens.from_scope(scope))


def test_cli_sublayers(tiny_lm_dir):
    from typer.testing import CliRunner

    from logitscope.cli import app

    out = CliRunner().invoke(app, ["lens", str(tiny_lm_dir), "The quick brown fox", "--sublayers", "-f", "json"])
    assert out.exit_code == 0, out.output
    names = __import__("json").loads(out.stdout)["layer_names"]
    assert names == ["embed", "1.attn", "1", "2.attn", "2", "3.attn", "3"]
    out = CliRunner().invoke(
        app, ["lens", str(tiny_lm_dir), "The quick brown fox", "--layers", "2.attn,-1", "-f", "json"]
    )
    assert out.exit_code == 0, out.output
    assert __import__("json").loads(out.stdout)["layer_names"] == ["2.attn", "3"]
