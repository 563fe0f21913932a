"""The viewer's API where a new user met wrong numbers or unclear refusals.

Compare mode pairs positions by token index, a target's tokens with the other target's (checked
against the model: identical prefixes of a causal LM give identical distributions, KL 0); an input
over the model's context answers 413 as docs/serve.md says; messages name the viewer's controls,
never Python arguments.
"""

from __future__ import annotations

import pytest
import tiny

from logitscope import Scope

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from logitscope.serve import Limits, create_app  # noqa: E402
from logitscope.serve.words import viewer_words  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    model, tok = tiny.saved_gpt2(tmp_path_factory.mktemp("a"))
    app = create_app({"tiny": Scope(model, tok, name="tiny")}, limits=Limits(max_tokens=1000))
    return TestClient(app, base_url="http://127.0.0.1"), tok


def compare(client, a: dict, b: dict) -> dict:
    r = client.post("/api/compare", json={"a": {"model": "tiny", **a}, "b": {"model": "tiny", **b}})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_target_on_one_side_does_not_shift_the_other(client):
    c, tok = client
    n = len(tok(PROMPT)["input_ids"])
    for pos in range(n):
        out = compare(c, {"text": PROMPT, "target": " and", "position": pos}, {"text": PROMPT, "position": None})
        assert out["b"]["position"] == pos and out["a"]["token"] == out["b"]["token"]
        assert max(out["kl_ab"] + out["kl_ba"]) < 1e-6  # the same prefix: the same distribution at every layer
    out = compare(c, {"text": PROMPT, "position": None}, {"text": PROMPT, "target": " and", "position": 3})
    assert out["a"]["position"] == 3 and max(out["kl_ab"]) < 1e-6
    out = compare(c, {"text": PROMPT, "position": -1}, {"text": PROMPT, "position": None})  # no cell: the last
    assert out["a"]["position"] == out["b"]["position"] == n - 1


def test_targets_pair_with_targets(client):
    c, tok = client
    long, short = "The quick brown fox", "The cat"
    start_a, start_b = len(tok(long)["input_ids"]) - 1, len(tok(short)["input_ids"]) - 1
    target = " jumps over the lazy dog"
    for k in range(len(tok(target)["input_ids"]) - 1):
        out = compare(
            c,
            {"text": long, "target": target, "position": start_a + k},
            {"text": short, "target": target, "position": None},
        )
        assert out["b"]["position"] == start_b + k
        if k:  # the k-th target token is the same token on both sides
            assert out["a"]["token"] == out["b"]["token"]
    # a prompt position pairs by index, inside the other's prompt
    out = compare(
        c, {"text": long, "target": target, "position": 1}, {"text": short, "target": target, "position": None}
    )
    assert out["b"]["position"] == 1


def test_an_input_over_the_context_is_413_in_the_viewers_words(client):
    c, _ = client
    r = c.post("/api/lens", json={"model": "tiny", "text": "the " * 200})  # tiny's context: 64 tokens
    assert r.status_code == 413, r.text
    message = r.json()["error"]
    assert "context" in message and "truncate" not in message and "=" not in message
    r = c.post("/api/lens", json={"model": "tiny", "text": "the", "top_k": -5})
    assert r.status_code == 422 and r.json()["error"].startswith("top-k:")


def test_library_messages_in_the_viewers_words():
    assert viewer_words("sublayers=True works with the logit lens only, not with a tuned lens") == (
        "sub-layer rows work with the logit lens only: turn sub-layers off or pick the logit lens"
    )
    for message in (
        "the input has 601 tokens but the model's context is 512; shorten it or pass truncate=True "
        "(keeps the first tokens; with a target, the prompt's last)",
        "lens made for gpt2; pass strict=False to apply it anyway",
        "BertModel has no language-modelling head (no logits to lens). Load the model with its head "
        "(e.g. *ForCausalLM / *ForMaskedLM), or use scope.embed()/scope.nearest(), which need only the input embeddings.",
        "top_k=60 is over the limit",
    ):
        words = viewer_words(message)
        assert "=" not in words and "scope." not in words and "top_k" not in words, words
