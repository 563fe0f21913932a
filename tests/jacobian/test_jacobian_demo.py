"""The Jacobian lens shipped for the demo model: published layout, fits the model, reads out exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import logitscope
from logitscope.jacobian import JacobianLens
from logitscope.jacobian.format import DEMO_FILE

TEXT = "Blessed be the LORD God, the God of"


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo", device="cpu", dtype="float32")


def test_shipped_file_is_in_the_published_layout():
    raw = torch.load(DEMO_FILE, weights_only=True)
    assert {"J", "n_prompts", "source_layers", "d_model"} <= set(raw)
    assert raw["source_layers"] == list(range(7)) and raw["d_model"] == 256
    assert all(m.dtype == torch.float16 and m.shape == (256, 256) for m in raw["J"].values())
    meta = raw["metadata"]
    assert meta["skip_first"] == 16 and meta["max_seq_len"] == 128 and meta["target_layer"] == 7
    assert raw["n_prompts"] >= 16 and meta["n_skipped"] == 0
    assert len(meta["heldout"]["layers"]) == 9  # the docs table: embed, 1..8


def test_shipped_lens_fits_the_demo_model_and_reads_out(demo):
    lens = JacobianLens.load("demo", scope=demo)
    res = demo.lens(TEXT, jacobian="demo")
    assert res.meta["lens"] == "jacobian" and res.meta["jacobian_lens"] == "demo"
    assert res.layer_names == [str(i) for i in range(1, 9)]
    model = demo.model
    ids = demo.tokenizer(TEXT)["input_ids"]
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        for layer in (0, 3, 6):  # row l+1 = tail(h_l @ J_lᵀ) through the model's own norm and head
            z = model.lm_head(model.model.norm(out.hidden_states[layer + 1][0] @ lens.J[layer].T))
            logp = z.double().log_softmax(-1)
            ent = -(logp.exp() * logp).sum(-1).numpy()
            np.testing.assert_allclose(res.entropy[layer], ent, atol=1e-4, rtol=1e-4)
            np.testing.assert_array_equal(res.top_ids[layer, :, 0], logp.argmax(-1).numpy())
    np.testing.assert_array_equal(res.top_ids[-1, :, 0], out.logits[0].argmax(-1).numpy())  # the model's own


def test_other_models_are_refused():
    import tiny

    from logitscope import Scope
    from logitscope.errors import LensMismatchError

    with pytest.raises(LensMismatchError):
        Scope(tiny.build("llama")).lens([1, 2, 3], jacobian="demo")
