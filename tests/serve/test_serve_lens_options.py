"""The viewer's lens options: sub-layer rows and the tuned lens (``sublayers``, ``lens`` in /api/lens).

Every 200 equals ``scope.lens`` with the same options (checked against the models in the lens,
sub-layer and tuned-lens tests); every refusal is a 4xx JSON message, never a 500.
"""

from __future__ import annotations

import pytest
import tiny
import torch
from test_serve_api import word_tokenizer

from logitscope import Scope

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from logitscope.errors import InputError  # noqa: E402
from logitscope.serve import Limits, create_app  # noqa: E402
from logitscope.tuned import TunedLens  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def scopes(tmp_path_factory):
    model, tok = tiny.saved_gpt2(tmp_path_factory.mktemp("a"))
    bert = Scope(tiny.build("bert"), word_tokenizer(), name="bert")
    return {"tiny": Scope(model, tok, name="tiny"), "bert": bert}


@pytest.fixture(scope="module")
def lens_dir(scopes, tmp_path_factory):
    """A tuned lens for ``tiny`` with random (non-identity) translators, saved as a folder."""
    lens = TunedLens.from_scope(scopes["tiny"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in lens.translators:
            t.weight.copy_(0.3 * torch.randn(t.weight.shape, generator=gen))
            t.bias.copy_(0.3 * torch.randn(t.bias.shape, generator=gen))
    folder = tmp_path_factory.mktemp("lens") / "tiny-lens"
    lens.save(folder)
    return folder


@pytest.fixture(scope="module")
def client(scopes, lens_dir):
    app = create_app(scopes, limits=Limits(max_tokens=40), tuned={"tiny": str(lens_dir)})
    return TestClient(app, base_url="http://localhost")


def test_models_say_which_have_a_tuned_lens(client, lens_dir):
    tuned = {m["name"]: m["tuned_lens"] for m in client.get("/api/models").json()["models"]}
    assert tuned == {"tiny": str(lens_dir), "bert": None}


def test_sublayers_equal_scope_lens(client, scopes):
    r = client.post("/api/lens", json={"model": "tiny", "text": TEXT, "target": " the", "top_k": 5, "sublayers": True})
    assert r.status_code == 200, r.text
    got = r.json()
    want = scopes["tiny"].lens(TEXT, target=" the", top_k=5, sublayers=True).to_dict()
    assert got["layer_names"] == ["embed", "1.attn", "1", "2.attn", "2", "3.attn", "3"]
    for key, value in want.items():
        assert got[key] == value, key


def test_sublayers_column_rows_match_the_lens(client, scopes):
    lens = scopes["tiny"].lens(TEXT, top_k=1, sublayers=True)
    top1 = [int(i) for i in lens.top_ids[:, 4, 0]]
    r = client.post("/api/column", json={"model": "tiny", "text": TEXT, "position": 4, "ids": top1, "sublayers": True})
    assert r.status_code == 200, r.text
    col = r.json()
    assert col["layer_names"] == lens.layer_names
    # each row's own top-1 has rank 0 in that row, with the lens's probability
    for s, tok in enumerate(top1):
        k = col["ids"].index(tok)
        assert col["ranks"][k][s] == 0
        assert col["probs"][k][s] == pytest.approx(float(lens.top_probs[s, 4, 0]), rel=1e-4)


def test_sublayers_with_stride_keep_attn_rows(scopes):
    c = TestClient(create_app({"tiny": scopes["tiny"]}, limits=Limits(max_rows=3)), base_url="http://localhost")
    got = c.post("/api/lens", json={"model": "tiny", "text": TEXT, "sublayers": True, "stride": 2}).json()
    assert got["layer_names"] == ["embed", "2.attn", "2", "3.attn", "3"]


def test_tuned_lens_equals_scope_lens(client, scopes, lens_dir):
    r = client.post("/api/lens", json={"model": "tiny", "text": TEXT, "top_k": 5, "lens": "tuned"})
    assert r.status_code == 200, r.text
    got = r.json()
    want = scopes["tiny"].lens(TEXT, top_k=5, tuned=str(lens_dir)).to_dict()
    plain = scopes["tiny"].lens(TEXT, top_k=5).to_dict()
    assert got["meta"]["lens"] == "tuned" and got["entropy"] != plain["entropy"]
    for key, value in want.items():
        assert got[key] == value, key
    col = client.post("/api/column", json={"model": "tiny", "text": TEXT, "position": 2, "lens": "tuned"}).json()
    assert col["entropy"] == [row[2] for row in want["entropy"]]  # the library's floats, exactly


def test_demo_model_gets_its_shipped_tuned_lens():
    import logitscope

    demo = logitscope.load("demo")
    c = TestClient(create_app({"demo": demo}), base_url="http://localhost")
    assert c.get("/api/models").json()["models"][0]["tuned_lens"] == "demo"
    got = c.post("/api/lens", json={"model": "demo", "text": "The cat sat", "top_k": 3, "lens": "tuned"}).json()
    assert got["top_probs"] == demo.lens("The cat sat", top_k=3, tuned="demo").to_dict()["top_probs"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"model": "bert", "text": "a b", "sublayers": True}, "sub-layer"),
        ({"model": "bert", "text": "a b", "lens": "tuned"}, "no tuned lens"),
        ({"model": "tiny", "text": TEXT, "lens": "tuned", "sublayers": True}, "logit lens only"),
    ],
)
def test_refusals_are_4xx_json(client, body, words):
    for path in ("/api/lens", "/api/column"):
        r = client.post(path, json=body)
        assert 400 <= r.status_code < 500, r.text
        assert words in r.json()["error"]


def test_tuned_must_name_a_served_model(scopes, lens_dir):
    with pytest.raises(InputError, match="--tuned"):
        create_app({"tiny": scopes["tiny"]}, tuned={"nope": str(lens_dir)})
