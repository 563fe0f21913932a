"""NaN in the weights or the logits raises an error that names where, never a wrong number;
what does not touch the broken weights (embeddings, info) still works."""

from __future__ import annotations

import json

import pytest
import tiny
import torch
from errors_common import cli

import logitscope
from logitscope.errors import CorruptWeightsError, NonFiniteError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    tiny.saved_gpt2(path)
    return path


def test_nan_logits_raise_instead_of_numbers(model_dir):
    import torch

    scope = logitscope.load(model_dir)
    ids = scope.tokenizer("The fox")["input_ids"]
    with torch.no_grad():
        scope.model.get_input_embeddings().weight[ids[0]] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN"):
        scope.lens("The fox")
    with pytest.raises(NonFiniteError, match="NaN"):
        scope.logits("The fox")


def test_nan_weights_are_named_and_embeddings_still_work(tmp_path):
    model = tiny.build("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path)
    scope = logitscope.load(tmp_path)
    with pytest.raises(CorruptWeightsError, match=r"model\.layers\.1\.mlp\.down_proj\.weight"):
        scope.lens([1, 2, 3])
    with pytest.raises(CorruptWeightsError):
        scope.logits([1, 2, 3])
    assert scope.info().n_layers == 3
    emb = scope.embed([1, 2])
    assert torch.equal(emb.vectors, model.model.embed_tokens.weight[[1, 2]].detach())
    assert scope.nearest(1, k=3).ids.shape == (3,)
    assert json.loads(cli("info", tmp_path, "-f", "json", ok=True).stdout)["n_layers"] == 3
    assert "down_proj" in cli("lens", tmp_path, "--input-file", tmp_path / "config.json").stderr


def test_nan_embedding_rows_are_named():
    model = tiny.build("llama")
    with torch.no_grad():
        model.model.embed_tokens.weight[7] = float("nan")
    scope = logitscope.Scope(model, self_check=False)
    with pytest.raises(CorruptWeightsError, match=r"token ids \[7\]"):
        scope.nearest(3)
    with pytest.raises(CorruptWeightsError, match=r"\[7\]"):
        scope.embed([7, 8])
    assert scope.embed([8]).vectors.isfinite().all()
