"""A wrong argument type is one ``InputError``, never a raw ``TypeError``;
numpy integer arrays work as token ids, exactly as lists do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import logitscope
from logitscope.errors import InputError


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


@pytest.mark.parametrize("name", [None, 5, 1.5, b"demo", ["demo"]])
def test_load_refuses_a_non_name(name):
    with pytest.raises(InputError, match="model name"):
        logitscope.load(name)


@pytest.mark.parametrize("generate", [1.5, "3", True, 0, -2, [2]])
def test_generate_must_be_a_whole_number(demo, generate):
    with pytest.raises(InputError, match="generate="):
        demo.logits("In the beginning", generate=generate)


def test_generate_takes_a_numpy_integer(demo):
    a = demo.logits("In the beginning", generate=np.int64(3))
    b = demo.logits("In the beginning", generate=3)
    assert a.generated_ids.tolist() == b.generated_ids.tolist() and torch.equal(a.logits, b.logits)


@pytest.mark.parametrize("layers", [1.5, {1, 2}, object()])
def test_layers_of_a_wrong_type(demo, layers):
    with pytest.raises(InputError, match="layers="):
        demo.lens("In the beginning", layers=layers)


def test_numpy_ids_equal_list_ids(demo):
    ids = demo.tokenizer("In the beginning God")["input_ids"]
    for dtype in (np.int64, np.int32, np.uint16):
        arr = np.array(ids, dtype=dtype)
        a, b = demo.lens(arr), demo.lens(ids)
        assert a.tokens == b.tokens and np.array_equal(a.entropy, b.entropy)
        assert torch.equal(demo.logits(arr).logits, demo.logits(ids).logits)
    batch = demo.lens(np.array([ids, ids[::-1]]))  # a 2-D array is a batch of rows
    assert [r.token_ids.tolist() for r in batch] == [ids, ids[::-1]]
    res = demo.lens(np.array(ids), layers=np.array([0, -1]))
    assert res.layer_names == ["embed", str(demo.n_layers)]
    tgt = demo.lens(ids[:3], target=np.array(ids[3:]))
    assert tgt.target_ids.tolist()[2:] == ids[3:] + [-1]


@pytest.mark.parametrize("bad", [np.array([1.0, 2.0]), np.array([[[1]]]), np.array([True, False]), np.array(["a"])])
def test_numpy_arrays_that_are_not_ids(demo, bad):
    with pytest.raises(InputError):
        demo.lens(bad)


def test_compare_says_what_is_missing(demo):
    with pytest.raises(InputError, match="needs something to compare with") as info:
        logitscope.compare(demo, None, "x")
    assert "not both" not in str(info.value)
    with pytest.raises(InputError, match="not both"):
        logitscope.compare(demo, demo, "x", against="y")
    with pytest.raises(InputError, match="must be a Scope"):
        logitscope.compare(demo, "x", "y")
