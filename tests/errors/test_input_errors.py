"""Bad inputs to the lens are one ``InputError`` (or a subclass) before any number: empty or
overlong text, ids outside the vocabulary, bad tracks/layers/batch sizes, wrong argument types;
one truncation rule, named in CLI words on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny
import torch
from errors_common import cli
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.errors import ContextLengthError, EmptyInputError, InputError, LogitscopeError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    tiny.saved_gpt2(path)
    return path


@pytest.fixture(scope="module")
def scope(model_dir):
    return logitscope.load(model_dir)


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


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


def test_roberta_context_excludes_the_padding_offset():
    scope = logitscope.Scope(tiny.build("roberta"))  # max_position_embeddings 130, pad 1 -> 128 tokens
    assert scope.lens([5] * 128).n_positions == 128
    with pytest.raises(ContextLengthError, match="context is 128"):
        scope.lens([5] * 129)
    assert scope.lens([5] * 200, truncate=True).n_positions == 128


def test_cli_messages_name_flags(tiny_lm_dir):
    long = "word " * 100
    err = cli("lens", tiny_lm_dir, long).stderr
    assert "--truncate" in err and "truncate=True" not in err
    err = cli("logits", tiny_lm_dir, long).stderr
    assert "--truncate" in err
    res = cli("logits", tiny_lm_dir, long, "--truncate", "-f", "json", ok=True)
    assert "Token indices sequence length" not in res.output  # no transformers warning on top
    assert len(json.loads(res.stdout)["positions"]) == 64
    cli("demo", "--help", ok=True)
    assert "--truncate" in CliRunner().invoke(app, ["demo", "--help"]).stdout
    assert "--trust-remote-code" in __import__("logitscope.cli.common", fromlist=["x"]).cli_words(
        "'x' needs trust_remote_code=True"
    )


def test_truncation_rule(tiny_lm_dir):
    scope = logitscope.load(tiny_lm_dir)
    ids = list(range(1, 101))
    assert scope.lens(ids, truncate=True).token_ids.tolist() == ids[:64]  # first tokens without a target
    res = scope.lens(ids, target=[5, 6], truncate=True)  # the prompt's last tokens with one
    assert res.token_ids.tolist() == ids[100 - 62 :] + [5, 6]
    with pytest.raises(ContextLengthError, match="keeps the first tokens; with a target, the prompt's last"):
        scope.lens(ids)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.lens(None),
        lambda s: s.lens(5),
        lambda s: s.lens("And God", top_k=2.5),
        lambda s: s.lens("And God", top_k=None),
        lambda s: s.lens("And God", track=5.5),
        lambda s: s.lens("And God", target=3.0),
        lambda s: s.logits(None),
        lambda s: s.evaluate(Path("missing")),
        lambda s: s.evaluate(None),
        lambda s: s.nearest(torch.full((256,), float("nan"))),
        lambda s: s.nearest(" God", k=2.5),
        lambda s: logitscope.Scope(None),
        lambda s: logitscope.Scope("gpt2"),
    ],
)
def test_api_type_errors(demo, call):
    with pytest.raises(LogitscopeError) as info:
        call(demo)
    assert str(info.value) and "\n" not in str(info.value)
