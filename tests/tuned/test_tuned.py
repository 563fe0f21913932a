"""The tuned lens applied: exact against the model's own modules, tuned-lens format interop, bad lenses.

Oracles come from the model itself: ``output_hidden_states`` rows 0..L-1 (raw streams), the
model's own final norm and head modules, and the tuned-lens formula ``tail(h + W h + b)``.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest
import tiny
import torch
from torch import nn

from logitscope import Scope
from logitscope.errors import CorruptWeightsError, InputError, LensMismatchError
from logitscope.tuned import TunedLens, load_lens, unembed_hash

IDS = [5, 17, 3, 44, 9, 71, 30, 2, 88, 61, 12, 40]
CONFIG_KEYS = {
    "base_model_name_or_path", "d_model", "num_hidden_layers", "bias", "base_model_revision", "unembed_hash",
    "lens_type",
}  # fmt: skip


def _random_translators(lens: TunedLens, scale: float = 0.3, seed: int = 0) -> TunedLens:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in lens.translators:
            t.weight.copy_(torch.randn(t.weight.shape, generator=g) * scale / t.weight.shape[0] ** 0.5)
            t.bias.copy_(torch.randn(t.bias.shape, generator=g) * scale)
    return lens


def _oracle_logprobs(model, ids, weights, biases, tail) -> list[torch.Tensor]:
    """log-softmax of tail(h + W h + b) for rows 0..L-1 and the model's own logits for row L, float64."""
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        rows = []
        for layer, (w, b) in enumerate(zip(weights, biases)):
            h = out.hidden_states[layer][0]  # raw stream: HF normalises only the last entry
            rows.append(tail(h + h @ w.T + b).double().log_softmax(-1))
        rows.append(out.logits[0].double().log_softmax(-1))
    return rows


def _llama_tail(model):
    return lambda h: model.lm_head(model.model.norm(h))


def _gpt2_tail(model):
    return lambda h: model.lm_head(model.transformer.ln_f(h))


def _gemma2_tail(model):
    cap = model.config.final_logit_softcapping
    return lambda h: torch.tanh(model.lm_head(model.model.norm(h)) / cap) * cap


def _tuned_lens_hash(weight: torch.Tensor) -> str:
    """The hash as tuned-lens 0.2.0 documents it: SHA-256 of numpy's one-decimal print of W_U."""
    return hashlib.sha256(np.array_str(weight.detach().numpy(), precision=1).encode()).hexdigest()


def _assert_matches(res, rows: list[torch.Tensor], ids) -> None:
    for r, logp in enumerate(rows):
        p = logp.exp()
        np.testing.assert_allclose(res.entropy[r], (-(p * logp).sum(-1)).numpy(), atol=2e-5, rtol=1e-5)
        kl = (rows[-1].exp() * (rows[-1] - logp)).sum(-1).numpy()
        np.testing.assert_allclose(res.kl_to_final[r], kl, atol=2e-5, rtol=1e-5)
        np.testing.assert_array_equal(res.top_ids[r, :, 0], logp.argmax(-1).numpy())
        tgt = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()
        np.testing.assert_allclose(res.target_logprob[r, :-1], tgt, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name,tail", [("llama", _llama_tail), ("gpt2", _gpt2_tail), ("gemma2", _gemma2_tail)])
def test_tuned_rows_equal_tail_of_translated_stream(name, tail):
    model = tiny.build(name)
    scope = Scope(model)
    lens = _random_translators(TunedLens.from_scope(scope))
    res = scope.lens(IDS, tuned=lens)
    ws = [t.weight.detach() for t in lens.translators]
    bs = [t.bias.detach() for t in lens.translators]
    _assert_matches(res, _oracle_logprobs(model, IDS, ws, bs, tail(model)), IDS)
    assert res.meta["lens"] == "tuned" and res.meta["tuned_lens"]
    assert scope.lens(IDS).meta["lens"] == "logit"
    sub = scope.lens(IDS, tuned=lens, layers=[1, -1])  # a subset of rows keeps each row's translator
    np.testing.assert_allclose(sub.entropy, res.entropy[[1, tiny.L]], atol=1e-6)


@pytest.mark.parametrize("name", ["llama", "gemma2", "opt"])
def test_zero_lens_equals_logit_lens(name):
    scope = Scope(tiny.build(name))
    plain = scope.lens(IDS, top_k=3, track=[7, 8])
    zero = scope.lens(IDS, top_k=3, track=[7, 8], tuned=TunedLens.from_scope(scope))
    for field in ("entropy", "kl_to_final", "top_probs", "target_logprob", "tracked_probs"):
        np.testing.assert_allclose(getattr(zero, field), getattr(plain, field), atol=1e-5, rtol=0, err_msg=field)
    np.testing.assert_array_equal(zero.top_ids, plain.top_ids)


def _write_tuned_lens_folder(path, model, d, L, *, misspell=False, seed=1) -> nn.ModuleList:
    """A folder as tuned-lens 0.2.0 writes it: a ModuleList of Linear(d, d) state dict + its config."""
    torch.manual_seed(seed)
    translators = nn.ModuleList([nn.Linear(d, d) for _ in range(L)])
    path.mkdir()
    torch.save(translators.state_dict(), path / "params.pt")
    key = "unemebd_hash" if misspell else "unembed_hash"
    config = {
        "base_model_name_or_path": "tiny", "d_model": d, "num_hidden_layers": L, "bias": True,
        "base_model_revision": None, key: _tuned_lens_hash(model.lm_head.weight), "lens_type": "linear_tuned_lens",
    }  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    return translators


@pytest.mark.parametrize("misspell", [False, True])
def test_reads_tuned_lens_folder(tmp_path, misspell):
    model = tiny.build("llama")
    scope = Scope(model)
    folder = tmp_path / "lens"
    translators = _write_tuned_lens_folder(folder, model, tiny.D, tiny.L, misspell=misspell)
    lens = load_lens(folder)
    assert lens.config.unembed_hash == unembed_hash(scope.parts) == _tuned_lens_hash(model.lm_head.weight)
    res = scope.lens(IDS, tuned=str(folder))
    ws = [t.weight.detach() for t in translators]
    bs = [t.bias.detach() for t in translators]
    _assert_matches(res, _oracle_logprobs(model, IDS, ws, bs, _llama_tail(model)), IDS)
    assert res.meta["tuned_lens"] == str(folder)


def test_saved_folder_has_tuned_lens_layout(tmp_path):
    model = tiny.build("gpt2")
    scope = Scope(model)
    lens = _random_translators(TunedLens.from_scope(scope))
    lens.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "params.pt"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert set(config) == CONFIG_KEYS and config["lens_type"] == "linear_tuned_lens"
    assert (config["d_model"], config["num_hidden_layers"], config["bias"]) == (tiny.D, tiny.L, True)
    assert config["unembed_hash"] == _tuned_lens_hash(model.lm_head.weight)
    state = torch.load(tmp_path / "out" / "params.pt", weights_only=True)
    assert set(state) == {f"{i}.{k}" for i in range(tiny.L) for k in ("weight", "bias")}
    theirs = nn.ModuleList([nn.Linear(tiny.D, tiny.D) for _ in range(tiny.L)])
    theirs.load_state_dict(state)  # what tuned-lens does with it (strict)
    for mine, other in zip(lens.translators, theirs):
        torch.testing.assert_close(other.weight, mine.weight, rtol=0, atol=0)
    again = scope.lens(IDS, tuned=tmp_path / "out")
    np.testing.assert_array_equal(again.entropy, scope.lens(IDS, tuned=lens).entropy)


def test_lens_for_another_model_is_refused(tmp_path):
    scope = Scope(tiny.build("llama"))
    other = TunedLens.from_scope(Scope(tiny.build("gpt2")))  # 3 blocks, d 32, other head
    with pytest.raises(LensMismatchError, match="different unembedding"):
        scope.lens(IDS, tuned=other)
    with pytest.warns(UserWarning, match="different unembedding"):
        scope.lens(IDS, tuned=other, strict=False)
    deeper = Scope(_llama(n_layers=tiny.L + 1))
    with pytest.raises(LensMismatchError, match="blocks"):
        deeper.lens(IDS, tuned=TunedLens.from_scope(scope))
    wider = TunedLens(TunedLens.from_scope(scope).config.__class__("x", tiny.D * 2, tiny.L))
    with pytest.raises(LensMismatchError, match="d_model"):
        scope.lens(IDS, tuned=wider)


def _llama(n_layers: int):
    from transformers import AutoModelForCausalLM

    cfg = tiny.config_for("llama")
    cfg.num_hidden_layers = n_layers
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


class _Boom:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize(
    "damage,error,match",
    [
        ("garbage", CorruptWeightsError, "cannot read"),
        ("pickle", CorruptWeightsError, "cannot read"),
        ("keys", CorruptWeightsError, "keys do not match"),
        ("shape", CorruptWeightsError, "shape"),
        ("nan", CorruptWeightsError, "NaN"),
        ("config_key", CorruptWeightsError, "missing key 'd_model'"),
        ("config_json", CorruptWeightsError, "not valid JSON"),
        ("no_params", InputError, "no params.pt"),
        ("lens_type", CorruptWeightsError, "lens_type"),
    ],
)
def test_damaged_lens_folders(tmp_path, capsys, damage, error, match):
    scope = Scope(tiny.build("llama"))
    folder = tmp_path / "lens"
    TunedLens.from_scope(scope).save(folder)
    params, config = folder / "params.pt", folder / "config.json"
    state = torch.load(params, weights_only=True)
    cfg = json.loads(config.read_text())
    if damage == "garbage":
        params.write_bytes(b"\x00not a zip" * 50)
    elif damage == "pickle":
        params.write_bytes(pickle.dumps({"0.weight": _Boom()}))
    elif damage == "keys":
        state["99.weight"] = state.pop("0.weight")
        torch.save(state, params)
    elif damage == "shape":
        state["1.bias"] = torch.zeros(3)
        torch.save(state, params)
    elif damage == "nan":
        state["0.weight"][0, 0] = float("nan")
        torch.save(state, params)
    elif damage == "config_key":
        del cfg["d_model"]
        config.write_text(json.dumps(cfg))
    elif damage == "config_json":
        config.write_text("{not json")
    elif damage == "no_params":
        params.unlink()
    elif damage == "lens_type":
        config.write_text(json.dumps(dict(cfg, lens_type="lora_lens")))
    with pytest.raises(error, match=match):
        scope.lens(IDS, tuned=folder)
    assert "pickled code ran" not in capsys.readouterr().out
    with pytest.raises(InputError, match="does not exist"):
        scope.lens(IDS, tuned=tmp_path / "missing")
