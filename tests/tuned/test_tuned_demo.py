"""The tuned lens shipped for the demo model: better than the logit lens on held-out text, in tuned-lens layout.

Computed at test time on ``demo_model/heldout.txt`` (held-out chapters the model and the lens
never trained on): the paper's main result, lower KL to the final layer and lower cross-entropy
at every row but the last.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import logitscope
from logitscope.tuned.format import DEMO_DIR

HELDOUT = Path(logitscope.__file__).parent / "demo_model" / "heldout.txt"


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo", device="cpu", dtype="float32")


def test_shipped_lens_beats_the_logit_lens_on_heldout_text(demo):
    cmp = demo.evaluate(HELDOUT, seq_len=128, batch_size=8, tuned="demo", ci="stderr")
    logit, tuned = cmp.logit, cmp.tuned
    assert logit.n_tokens == tuned.n_tokens > 500
    assert (tuned.kl_to_final[:-1] < logit.kl_to_final[:-1]).all(), (tuned.kl_to_final, logit.kl_to_final)
    assert (tuned.ce[:-1] < logit.ce[:-1]).all(), (tuned.ce, logit.ce)
    assert tuned.ce[-1] == logit.ce[-1] and tuned.kl_to_final[-1] == logit.kl_to_final[-1] == 0
    assert tuned.meta["tuned_lens"] == "demo"


def test_shipped_lens_folder_is_in_tuned_lens_layout(demo):
    assert sorted(p.name for p in DEMO_DIR.iterdir() if p.is_file()) == [
        "config.json", "params.pt", "training_log.json",
    ]  # fmt: skip
    config = json.loads((DEMO_DIR / "config.json").read_text())
    assert config["lens_type"] == "linear_tuned_lens" and config["bias"] is True
    assert (config["d_model"], config["num_hidden_layers"]) == (256, demo.n_layers)
    head = demo.model.lm_head.weight.detach().numpy()
    assert config["unembed_hash"] == hashlib.sha256(np.array_str(head, precision=1).encode()).hexdigest()
    state = torch.load(DEMO_DIR / "params.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        **{f"{i}.weight": (256, 256) for i in range(demo.n_layers)},
        **{f"{i}.bias": (256,) for i in range(demo.n_layers)},
    }
    log = json.loads((DEMO_DIR / "training_log.json").read_text())
    assert log["command"].startswith("python scripts/train_tuned_demo.py") and log["steps"]


def test_shipped_lens_on_a_prompt(demo):
    res = demo.lens("Blessed be the LORD God, the God of", tuned="demo", track=[" Israel"])
    plain = demo.lens("Blessed be the LORD God, the God of", track=[" Israel"])
    assert res.meta["lens"] == "tuned" and plain.meta["lens"] == "logit"
    np.testing.assert_array_equal(res.entropy[-1], plain.entropy[-1])  # the last row has no translator
    assert (res.kl_to_final[:-1].mean(axis=1) < plain.kl_to_final[:-1].mean(axis=1)).all()
