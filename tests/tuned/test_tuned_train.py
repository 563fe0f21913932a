"""Tuned-lens training: the gradient is KL(final ‖ layer)'s, chunking and resuming change nothing, bad data fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny
import torch

from logitscope import Scope
from logitscope.errors import EmptyInputError, InputError
from logitscope.tuned.train import TrainConfig, train_lens

SEQ = 16


@pytest.fixture(scope="module")
def llama():
    return Scope(tiny.build("llama"))


def _ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, tiny.V, n)


def _params(lens) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in lens.parameters()])


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_one_step_is_minus_the_gradient_of_mean_kl(llama, name):
    """lr 1, no momentum, no decay, no clipping: W after one step = -∇ of Σ_layers mean KL(final ‖ layer).

    Gemma-2 softcaps its logits (``c · tanh(z / c)``): the gradient goes through the softcap of the
    one model tail (``ModelParts.unembed``) that the lens itself uses.
    """
    scope = llama if name == "llama" else Scope(tiny.build(name))
    ids = _ids(4 * SEQ + 1)  # exactly four windows, all in the first step
    cfg = TrainConfig(steps=1, tokens_per_step=4 * SEQ, seq_len=SEQ, momentum=0.0, weight_decay=0.0, grad_clip=1e9)
    lens = train_lens(scope, ids, config=cfg)
    model = scope.model
    cap = getattr(model.config, "final_logit_softcapping", None)
    x = torch.from_numpy(np.stack([ids[k * SEQ : k * SEQ + SEQ] for k in range(4)]))  # (4, T)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    logp_f = out.logits.double().log_softmax(-1)  # (4, T, V)
    total = 0.0
    ws = [torch.zeros(tiny.D, tiny.D, dtype=torch.float64, requires_grad=True) for _ in range(tiny.L)]
    bs = [torch.zeros(tiny.D, dtype=torch.float64, requires_grad=True) for _ in range(tiny.L)]
    m64 = type(model)(model.config).double().eval()
    m64.load_state_dict(model.state_dict())
    for layer in range(tiny.L):
        h = out.hidden_states[layer].double()
        z = m64.lm_head(m64.model.norm(h + h @ ws[layer].T + bs[layer]))  # all positions at once: the plain way
        if cap is not None:
            z = cap * torch.tanh(z / cap)
        kl = (logp_f.exp() * (logp_f - z.log_softmax(-1))).sum(-1).mean()
        total = total + kl
    total.backward()
    for layer, t in enumerate(lens.translators):
        torch.testing.assert_close(t.weight.double(), -ws[layer].grad, atol=2e-6, rtol=1e-4)
        torch.testing.assert_close(t.bias.double(), -bs[layer].grad, atol=2e-6, rtol=1e-4)
    first = lens.training_log["steps"][0]["kl"]
    assert first[0] > 0 and len(first) == tiny.L


def test_position_chunks_do_not_change_the_lens(llama):
    cfg = dict(steps=2, tokens_per_step=4 * SEQ, seq_len=SEQ, batch_size=3)
    a = train_lens(llama, _ids(400), config=TrainConfig(**cfg))
    b = train_lens(llama, _ids(400), config=TrainConfig(**cfg, chunk_rows=7))
    torch.testing.assert_close(_params(a), _params(b), atol=1e-6, rtol=1e-5)


def test_training_lowers_kl_and_writes_the_folder(tmp_path):
    model, tok = tiny.saved_gpt2(tmp_path / "model")
    scope = Scope(model, tok)
    docs = [tiny.TEXT] * 12
    out = tmp_path / "lens"
    lens = scope.train_lens(docs, out=out, steps=25, tokens_per_step=4 * SEQ, seq_len=SEQ, lr=2.0, save_every=10)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.pt", "training_log.json"]
    assert not (tmp_path / "lens.ckpt.pt").exists()  # removed once the folder is complete
    log = json.loads((out / "training_log.json").read_text())
    assert len(log["steps"]) == 25 and log["settings"]["seq_len"] == SEQ
    cmp = scope.evaluate(docs, seq_len=SEQ, batch_size=4, tuned=out, ci="stderr")
    assert (cmp.tuned.kl_to_final[:-1] < cmp.logit.kl_to_final[:-1]).all()
    assert cmp.tuned.kl_to_final[-1] == cmp.logit.kl_to_final[-1] == 0
    assert lens.source == str(out)


def test_resume_gives_the_uninterrupted_lens(llama, tmp_path):
    cfg = dict(steps=4, tokens_per_step=4 * SEQ, seq_len=SEQ, save_every=2)
    whole = train_lens(llama, _ids(300), config=TrainConfig(**cfg))
    ckpt = tmp_path / "run.ckpt.pt"

    def interrupt(record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lens(llama, _ids(300), config=TrainConfig(**cfg), checkpoint=ckpt, progress=interrupt)
    assert ckpt.is_file()
    resumed = train_lens(llama, _ids(300), config=TrainConfig(**cfg), checkpoint=ckpt, resume=True)
    torch.testing.assert_close(_params(resumed), _params(whole), atol=0, rtol=0)
    assert [r["step"] for r in resumed.training_log["steps"]] == [1, 2, 3, 4]
    with pytest.raises(InputError, match="other training settings"):
        train_lens(llama, _ids(300), config=TrainConfig(**dict(cfg, lr=0.5)), checkpoint=ckpt, resume=True)


def test_bad_training_data(llama):
    cfg = TrainConfig(steps=2, tokens_per_step=4 * SEQ, seq_len=SEQ)
    with pytest.raises(EmptyInputError, match="no window"):
        train_lens(llama, _ids(SEQ), config=cfg)  # fewer than seq_len + 1 tokens
    with pytest.raises(InputError, match="ran out"):
        train_lens(llama, iter(_ids(5 * SEQ).tolist()), config=cfg)  # a one-shot iterator, too short
    with pytest.raises(InputError, match="outside the vocabulary"):
        train_lens(llama, np.full(200, tiny.V + 3), config=cfg)
    with pytest.raises(InputError, match="steps must be"):
        train_lens(llama, _ids(200), config=TrainConfig(steps=0))
    with pytest.raises(InputError, match="chunk_rows"):
        train_lens(llama, _ids(200), config=TrainConfig(chunk_rows=0))
    with pytest.raises(InputError, match="causal"):
        train_lens(Scope(tiny.build("bert")), _ids(200), config=cfg)
