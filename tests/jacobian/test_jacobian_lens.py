"""Jacobian-lens readout and file format: rows = tail(J h) from the model's own modules, the last row
= the model's logits; the published layout in both directions; bad files are one clear error each."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tiny
import torch

from logitscope import Scope
from logitscope.errors import CorruptWeightsError, InputError, LensMismatchError
from logitscope.jacobian import JacobianLens

D, L = tiny.D, tiny.L
IDS = [3, 17, 42, 8, 64, 25, 11, 90, 5]


def _random_lens(d: int = D, layers=range(L - 1), seed: int = 0, n: int = 7) -> JacobianLens:
    g = torch.Generator().manual_seed(seed)
    J = {layer: torch.eye(d) + 0.3 * torch.randn(d, d, generator=g) for layer in layers}
    return JacobianLens(J=J, n_prompts=n, d_model=d)


TAILS = {
    "llama": lambda m: lambda h: m.lm_head(m.model.norm(h)),
    "gpt2": lambda m: lambda h: m.lm_head(m.transformer.ln_f(h)),
    "gemma2": lambda m: lambda h: torch.tanh(m.lm_head(m.model.norm(h)) / 2.0) * 2.0,
}


@pytest.mark.parametrize("name", sorted(TAILS))
def test_rows_are_tail_of_J_h_and_last_row_is_the_logits(name):
    model = tiny.build(name)
    scope = Scope(model)
    lens = _random_lens()
    res = scope.lens(IDS, jacobian=lens)
    assert res.layer_names == ["1", "2", str(L)]  # the fitted rows and the final one: no J at row 0
    tail = TAILS[name](model)
    with torch.no_grad():
        out = model(torch.tensor([IDS]), output_hidden_states=True)
        rows = []
        for layer in range(L - 1):  # row l+1 = output of block l (raw: HF normalises only the last entry)
            h = out.hidden_states[layer + 1][0]
            rows.append(tail(h @ lens.J[layer].T).double().log_softmax(-1))
        rows.append(out.logits[0].double().log_softmax(-1))  # the model's own output
    final = rows[-1]
    for r, logp in enumerate(rows):
        p = logp.exp()
        np.testing.assert_allclose(res.entropy[r], (-(p * logp).sum(-1)).numpy(), atol=3e-5, rtol=1e-5)
        kl = (final.exp() * (final - logp)).sum(-1).numpy()
        np.testing.assert_allclose(res.kl_to_final[r], kl, atol=3e-5, rtol=1e-5)
        np.testing.assert_array_equal(res.top_ids[r, :, 0], logp.argmax(-1).numpy())
        tgt = logp[torch.arange(len(IDS) - 1), torch.tensor(IDS[1:])].numpy()
        np.testing.assert_allclose(res.target_logprob[r, :-1], tgt, atol=3e-5, rtol=1e-5)
    assert res.meta["lens"] == "jacobian" and res.meta["jacobian_lens"]
    np.testing.assert_allclose(res.kl_to_final[-1], 0, atol=1e-6)
    plain = scope.lens(IDS)
    np.testing.assert_allclose(res.entropy[-1], plain.entropy[L], atol=1e-6)  # the model's own output
    assert not np.allclose(res.entropy[0], plain.entropy[1], atol=1e-3)
    same = scope.lens(IDS, lens=lens)  # the generic selector: the same lens object
    np.testing.assert_array_equal(same.entropy, res.entropy)
    with pytest.raises(InputError, match="no transform for layer embed"):
        scope.lens(IDS, jacobian=lens, layers=[0, 1])


def test_identity_lens_is_the_logit_lens_and_batches_match():
    scope = Scope(tiny.build("llama"))
    eye = JacobianLens(J={layer: torch.eye(D) for layer in range(L - 1)}, n_prompts=1, d_model=D)
    a, b = scope.lens(IDS, track=[7], layers=[1, 2, L]), scope.lens(IDS, track=[7], jacobian=eye)
    for field in ("entropy", "kl_to_final", "top_probs", "target_logprob", "tracked_probs"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-6)
    lens = _random_lens()
    one = scope.lens(IDS[:5], jacobian=lens)
    many = scope.lens([IDS, IDS[:5]], jacobian=lens, layers=[1, -1])
    np.testing.assert_allclose(many[1].entropy, one.entropy[[0, 2]], atol=1e-5)


def test_float16_save_load_round_trip_and_plain_torch_load(tmp_path):
    lens = _random_lens()
    lens.metadata.update(model="tiny", skip_first=16, corpus=str(tmp_path), torch=torch.__version__)  # a str subclass
    path = lens.save(tmp_path / "lens.pt")
    raw = torch.load(path, weights_only=True)  # plain torch, no logitscope class inside
    assert set(raw) == {"J", "n_prompts", "source_layers", "d_model", "metadata"}
    assert raw["source_layers"] == [0, 1] and raw["d_model"] == D and raw["n_prompts"] == 7
    assert all(isinstance(k, int) and v.dtype == torch.float16 for k, v in raw["J"].items())
    back = JacobianLens.load(path)
    assert back.J[0].dtype == torch.float32 and back.metadata["model"] == "tiny"
    for layer in lens.source_layers:
        assert (back.J[layer] - lens.J[layer]).abs().max() <= 2e-3
        assert torch.equal(back.J[layer], lens.J[layer].half().float())
    exact = JacobianLens.load(lens.save(tmp_path / "f32.pt", dtype=torch.float32))
    assert torch.equal(exact.J[1], lens.J[1])


def test_file_in_the_published_layout_loads(tmp_path):
    g = torch.Generator().manual_seed(5)
    J = {layer: torch.randn(D, D, generator=g).to(torch.float16) for layer in range(L - 1)}
    torch.save({"J": J, "n_prompts": 12, "source_layers": [0, 1], "d_model": D}, tmp_path / "lens.pt")
    lens = JacobianLens.load(tmp_path / "lens.pt")
    assert lens.source_layers == [0, 1] and lens.n_prompts == 12 and lens.metadata == {}
    assert torch.equal(lens.J[1], J[1].float())
    scope = Scope(tiny.build("llama"))
    res = scope.lens(IDS, jacobian=str(tmp_path / "lens.pt"))
    assert res.meta["jacobian_lens"] == str(tmp_path / "lens.pt")
    by_kind = scope.lens(IDS, lens=str(tmp_path / "lens.pt"))  # lens=PATH: the kind is read from the file
    assert by_kind.meta["lens"] == "jacobian"
    np.testing.assert_array_equal(by_kind.entropy, res.entropy)


def test_merge_weights_by_prompts_and_refuses_mismatches(tmp_path):
    a, b = _random_lens(seed=1, n=1), _random_lens(seed=2, n=3)
    m = JacobianLens.merge(a, str(b.save(tmp_path / "b.pt", dtype=torch.float32)))
    torch.testing.assert_close(m.J[0], (a.J[0] + 3 * b.J[0]) / 4)
    assert m.n_prompts == 4
    with pytest.raises(LensMismatchError, match="cannot merge"):
        JacobianLens.merge(a, _random_lens(layers=[0]))
    with pytest.raises(LensMismatchError, match="cannot merge"):
        JacobianLens.merge(a, _random_lens(d=16))


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_file_is_refused(tmp_path, capsys):
    state = _random_lens().to_state()
    state["metadata"] = {"x": _Evil()}
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump(state, fh)  # not even a torch zip: a bare pickle
    torch.save(state, tmp_path / "evil_zip.pt")
    for name in ("evil.pt", "evil_zip.pt"):
        with pytest.raises(CorruptWeightsError, match="refused|cannot read"):
            JacobianLens.load(tmp_path / name)
    assert "pickled code ran" not in capsys.readouterr().out


def test_lens_for_another_model_is_refused(tmp_path):
    scope = Scope(tiny.build("llama"))
    with pytest.raises(LensMismatchError, match="d_model 16"):
        scope.lens(IDS, jacobian=_random_lens(d=16))
    with pytest.raises(LensMismatchError, match="source layers"):
        scope.lens(IDS, jacobian=_random_lens(layers=range(5)))
    other = _random_lens()
    other.metadata["n_layers"] = 6
    with pytest.raises(LensMismatchError, match="6 blocks"):
        scope.lens(IDS, jacobian=other)


def test_checkpoint_instead_of_a_lens_is_refused(tmp_path):
    scope = Scope(tiny.build("llama"))
    ckpt = tmp_path / "fit.ckpt"
    scope.fit_jacobian_lens([list(range(2, 30))], skip_first=4, checkpoint=ckpt, save_every=1)
    with pytest.raises(InputError, match="fit checkpoint.*not a lens"):
        JacobianLens.load(ckpt)
    with pytest.raises(InputError, match="fit checkpoint"):
        scope.lens(IDS, jacobian=str(ckpt))


@pytest.mark.parametrize(
    "state,match",
    [
        ({"J": {}, "n_prompts": 1, "d_model": D}, "non-empty"),
        ({"J": {0: torch.zeros(3, 3)}, "n_prompts": 1, "d_model": D}, "should be a float"),
        ({"J": {0: torch.zeros(D, D)}, "n_prompts": 0, "d_model": D}, "positive integer"),
        ({"J": {0: torch.zeros(D, D)}, "n_prompts": 1}, "missing d_model"),
        ({"J": {0: torch.full((D, D), float("nan"))}, "n_prompts": 1, "d_model": D}, "NaN"),
        ({"J": {0: torch.zeros(D, D)}, "n_prompts": 1, "d_model": D, "source_layers": [1]}, "do not match"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_damaged_files(tmp_path, state, match):
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CorruptWeightsError, match=match):
        JacobianLens.load(tmp_path / "bad.pt")


def test_missing_file_and_wrong_arguments(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        JacobianLens.load(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(CorruptWeightsError, match="cannot read"):
        JacobianLens.load(tmp_path / "garbage.pt")
    scope = Scope(tiny.build("llama"))
    with pytest.raises(InputError, match="jacobian= alone"):
        scope.lens(IDS, jacobian=_random_lens(), tuned="demo")
    with pytest.raises(InputError, match="sublayers"):
        scope.lens(IDS, jacobian=_random_lens(), sublayers=True)


def test_fitted_lens_remembers_its_model_by_unembedding_hash():
    prompts = [list(range(2, 26))]
    lens = Scope(tiny.build("llama", seed=0)).fit_jacobian_lens(prompts, skip_first=4)
    assert lens.metadata["unembed_hash"]
    other = Scope(tiny.build("llama", seed=1))  # same shapes, other weights
    with pytest.raises(LensMismatchError, match="different unembedding"):
        other.lens(IDS, jacobian=lens)
    with pytest.warns(UserWarning, match="different unembedding"):
        other.lens(IDS, lens=lens, strict=False)
