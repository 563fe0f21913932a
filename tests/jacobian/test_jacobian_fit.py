"""The Jacobian-lens estimator against oracles that are not the code under test.

Closed forms (a residual block ``h + W h``: J = I + W; a causal cumulative sum: J = (|V|+1)/2 · I),
brute-force autograd over the whole input-output Jacobian on tiny llama/gpt2, finite differences
of ``J v``; merge = joint fit; a resumed fit is bit-identical; parameters never get gradients.
"""

from __future__ import annotations

import pytest
import tiny
import torch
from torch import nn

from logitscope import Scope
from logitscope.errors import EmptyInputError, InputError, UnsupportedModelError
from logitscope.jacobian import JacobianLens

D, L = tiny.D, tiny.L


def _prompts(n: int, lengths=(20, 23, 26, 21, 30, 19), seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, tiny.V, (lengths[i % len(lengths)],), generator=g).tolist() for i in range(n)]


class Residual(nn.Module):
    """``h + W h``, the same at every position: ∂out[p']/∂h[p] = (I + W) if p' = p else 0."""

    def __init__(self, W: torch.Tensor):
        super().__init__()
        self.W = nn.Parameter(W.clone())

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states + hidden_states @ self.W.T


class CumSum(nn.Module):
    """``out[p] = Σ_{q<=p} h[q]`` (causal): ∂out[p']/∂h[p] = I for p <= p'."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states.cumsum(dim=1)


def _with_blocks(blocks: list[nn.Module]) -> Scope:
    """A tiny llama whose decoder layers are replaced by ``blocks`` (its tail stays the model's own)."""
    model = tiny.build("llama")
    model.model.layers = nn.ModuleList(blocks)
    model.config.num_hidden_layers = len(blocks)
    model.config.bos_token_id = 0  # forced in front of every prompt (prompt ids start at 2)
    return Scope(model)


def test_residual_block_closed_form():
    g = torch.Generator().manual_seed(1)
    A, W = (torch.randn(D, D, generator=g) * 0.2 for _ in range(2))
    scope = _with_blocks([Residual(torch.zeros(D, D)), Residual(A), Residual(W)])  # h_0 → (I+A) → (I+W)
    lens = scope.fit_jacobian_lens(_prompts(3), skip_first=4, dim_batch=5)  # 5 does not divide d = 32
    eye = torch.eye(D)
    assert lens.source_layers == [0, 1] and lens.n_prompts == 3
    torch.testing.assert_close(lens.J[1], eye + W, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens.J[0], (eye + W) @ (eye + A), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("skip_first", [0, 3, 16])
def test_causal_cumsum_closed_form(skip_first):
    scope = _with_blocks([Residual(torch.zeros(D, D)), Residual(torch.zeros(D, D)), CumSum()])
    T = 24
    lens = scope.fit_jacobian_lens(_prompts(1, lengths=(T - 1,)), skip_first=skip_first)  # + BOS = T tokens
    n_valid = T - 1 - skip_first
    for layer in (0, 1):
        torch.testing.assert_close(lens.J[layer], (n_valid + 1) / 2 * torch.eye(D), atol=1e-5, rtol=1e-6)


def _block_outputs(model, blocks, ids, layer, replace=None):
    """Output of block ``layer`` on ``ids`` (detached), or with ``replace``: the last block's output when
    block ``layer``'s output is replaced by it (a pure function of that stream)."""
    got = {}

    def swap(mod, args, out):
        if replace is None:
            got["src"] = (out[0] if isinstance(out, tuple) else out).detach()
            return None
        return (replace, *out[1:]) if isinstance(out, tuple) else replace

    def last(mod, args, out):
        got["out"] = out[0] if isinstance(out, tuple) else out

    handles = [blocks[layer].register_forward_hook(swap), blocks[-1].register_forward_hook(last)]
    try:
        model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return got["src"] if replace is None else got["out"]


def _brute_force(scope, prompts, sources, skip_first):
    """Mean over prompts of (1/|V|) Σ_{p∈V} Σ_{p'∈V} ∂h_final[p']/∂h_l[p], from the full Jacobian."""
    model, blocks = scope.model, scope.parts.blocks
    out = {}
    for layer in sources:
        acc = torch.zeros(D, D, dtype=torch.float64)
        for ids in prompts:
            ids = [0, *ids][:128]
            h = _block_outputs(model, blocks, ids, layer)
            full = torch.autograd.functional.jacobian(
                lambda x, ids=ids, layer=layer: _block_outputs(model, blocks, ids, layer, x)[0], h
            )
            full = full[:, :, 0]  # (T', d, T, d): ∂h_final[p', i] / ∂h_l[p, j]
            V = range(skip_first, len(ids) - 1)
            acc += sum(full[q, :, p, :] for p in V for q in V).double() / len(V)
        out[layer] = (acc / len(prompts)).float()
    return out


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_brute_force_autograd_oracle(name):
    model = tiny.build(name)
    model.config.bos_token_id = 0
    scope = Scope(model)
    prompts = _prompts(2, lengths=(11, 14))
    lens = scope.fit_jacobian_lens(prompts, skip_first=4, dim_batch=8)
    ref = _brute_force(scope, prompts, [0, 1], 4)
    for layer in (0, 1):
        torch.testing.assert_close(lens.J[layer], ref[layer], atol=2e-5, rtol=1e-4)
    assert lens.J[0].abs().max() > 0.1  # a real, non-trivial Jacobian


def test_finite_difference_of_J_v():
    """J v against central differences of the model itself (float64; its softmax runs in float32, so
    eps = 1e-3 keeps that rounding below the tolerance) and against autograd's own JVP."""
    model = tiny.build("llama").double()
    model.config.bos_token_id = 0
    scope = Scope(model)
    ids = _prompts(1, lengths=(19,))[0]
    skip = 5
    lens = scope.fit_jacobian_lens([ids], skip_first=skip)
    full_ids = [0, *ids]
    V = list(range(skip, len(full_ids) - 1))
    blocks = scope.parts.blocks
    v = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for layer in (0, 1):
        h = _block_outputs(model, blocks, full_ids, layer)
        bump = torch.zeros_like(h)
        bump[0, V] = v  # the same direction at every valid source position
        eps = 1e-3

        def summed(x, layer=layer):  # Σ_{p'∈V} h_final[p'] as a function of block `layer`'s output
            return _block_outputs(model, blocks, full_ids, layer, x)[0, V].sum(0)

        with torch.no_grad():
            fd = (summed(h + eps * bump) - summed(h - eps * bump)) / (2 * eps) / len(V)
        Jv = lens.J[layer].double() @ v
        torch.testing.assert_close(Jv, fd, atol=3e-4, rtol=1e-3)
        _, jvp = torch.autograd.functional.jvp(summed, h, bump)
        torch.testing.assert_close(Jv, jvp / len(V), atol=2e-6, rtol=1e-5)
        assert Jv.abs().max() > 0.1


def test_merge_equals_joint_fit_and_dim_batch_does_not_matter():
    scope = Scope(tiny.build("gpt2"))
    prompts = _prompts(5)
    joint = scope.fit_jacobian_lens(prompts, skip_first=4)
    a = scope.fit_jacobian_lens(prompts[:3], skip_first=4, dim_batch=3)
    b = scope.fit_jacobian_lens(prompts[3:], skip_first=4, dim_batch=32)
    merged = JacobianLens.merge(a, b)
    assert merged.n_prompts == 5 and merged.source_layers == joint.source_layers
    for layer in joint.source_layers:
        torch.testing.assert_close(merged.J[layer], joint.J[layer], atol=1e-6, rtol=1e-6)


def test_parameters_never_get_gradients():
    model = tiny.build("llama")
    flags = [p.requires_grad for p in model.parameters()]
    seen = []
    scope = Scope(model)
    scope.fit_jacobian_lens(
        _prompts(2), skip_first=4, progress=lambda r: seen.append([p.requires_grad for p in model.parameters()])
    )
    assert all(p.grad is None for p in model.parameters())
    assert seen and not any(any(s) for s in seen)  # frozen during the fit
    assert [p.requires_grad for p in model.parameters()] == flags  # restored afterwards


def test_short_prompts_are_skipped_and_counted():
    scope = Scope(tiny.build("llama"))
    prompts = _prompts(3)
    short = [[5, 6, 7]]
    with_short = scope.fit_jacobian_lens(short + prompts + short, skip_first=4)
    plain = scope.fit_jacobian_lens(prompts, skip_first=4)
    assert with_short.n_prompts == 3 and with_short.metadata["n_skipped"] == 2
    for layer in plain.source_layers:
        assert torch.equal(with_short.J[layer], plain.J[layer])
    limited = scope.fit_jacobian_lens(short + prompts, skip_first=4, n_prompts=2)
    two = scope.fit_jacobian_lens(prompts[:2], skip_first=4)
    assert limited.n_prompts == 2 and torch.equal(limited.J[0], two.J[0])


def test_resume_is_bit_identical(tmp_path):
    scope = Scope(tiny.build("llama"))
    prompts = _prompts(5)
    ckpt = tmp_path / "fit.ckpt"
    full = scope.fit_jacobian_lens(prompts, skip_first=4)

    def interrupt(record):
        if record["done"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scope.fit_jacobian_lens(prompts, skip_first=4, checkpoint=ckpt, save_every=2, progress=interrupt)
    state = torch.load(ckpt, weights_only=True)
    assert state["n_done"] == 2 and state["next_idx"] == 2  # the third prompt is lost, not half-saved
    resumed = scope.fit_jacobian_lens(prompts, skip_first=4, checkpoint=ckpt, save_every=2, resume=True)
    assert resumed.n_prompts == 5
    for layer in full.source_layers:
        assert torch.equal(resumed.J[layer], full.J[layer])
    with pytest.raises(InputError, match="other fit settings"):
        scope.fit_jacobian_lens(prompts, skip_first=3, checkpoint=ckpt, resume=True)


def test_source_and_target_layers():
    scope = Scope(tiny.build("llama"))
    prompts = _prompts(2)
    lens = scope.fit_jacobian_lens(prompts, skip_first=4, source_layers=[0], target_layer=1)
    ref = scope.fit_jacobian_lens(prompts, skip_first=4, source_layers=[-3], target_layer=-2)
    assert lens.source_layers == [0] and lens.metadata["target_layer"] == 1
    assert torch.equal(lens.J[0], ref.J[0])
    with pytest.raises(InputError, match="below target_layer"):
        scope.fit_jacobian_lens(prompts, source_layers=[2])
    with pytest.raises(InputError, match="out of range"):
        scope.fit_jacobian_lens(prompts, source_layers=[7])


def test_all_prompts_too_short_is_one_error_and_nothing_written(tmp_path):
    scope = Scope(tiny.build("llama"))
    out = tmp_path / "lens.pt"
    with pytest.raises(EmptyInputError, match="all shorter than skip_first"):
        scope.fit_jacobian_lens([[1, 2, 3]] * 4, out=out, checkpoint=tmp_path / "c.ckpt", save_every=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,why", [("t5", "encoder-decoder"), ("bert", "masked")])
def test_encoder_decoder_and_masked_models_are_refused(name, why):
    scope = Scope(tiny.build(name))
    with pytest.raises(UnsupportedModelError, match=why):
        scope.fit_jacobian_lens(_prompts(2))


def test_texts_and_corpus_prompts_get_bos(tmp_path):
    from logitscope.jacobian.prompts import iter_prompts

    model, tok = tiny.saved_gpt2(tmp_path / "m")
    scope = Scope(model, tok)
    (tmp_path / "c.txt").write_text(tiny.TEXT)
    n = len(tok(tiny.TEXT, add_special_tokens=False)["input_ids"])
    got = list(iter_prompts(str(tmp_path / "c.txt"), scope, 16))
    assert all(p[0] == tok.bos_token_id and len(p) <= 16 for p in got)
    assert sum(len(p) - 1 for p in got) == n  # every token once, in 15-token pieces
    texts = list(iter_prompts([tiny.TEXT, "The cat"], scope, 16))
    assert len(texts) == 2 and texts[0][0] == tok.bos_token_id and len(texts[0]) == 16
