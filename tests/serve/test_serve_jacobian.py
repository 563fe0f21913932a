"""The viewer's Jacobian lens (``serve --jacobian NAME=FILE``; ``lens: "jacobian"`` in /api/lens and /api/column).

Every 200 equals ``scope.lens(jacobian=...)`` (itself checked against the model's own modules in
test_jacobian_lens.py); every refusal is a 4xx JSON message.
"""

from __future__ import annotations

import pytest
import tiny
import torch
from test_serve_api import word_tokenizer

from logitscope import Scope

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from logitscope.errors import InputError, LensMismatchError  # noqa: E402
from logitscope.jacobian import JacobianLens  # noqa: E402
from logitscope.serve import Limits, create_app  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def scopes(tmp_path_factory):
    model, tok = tiny.saved_gpt2(tmp_path_factory.mktemp("a"))
    bert = Scope(tiny.build("bert"), word_tokenizer(), name="bert")
    return {"tiny": Scope(model, tok, name="tiny"), "bert": bert}


@pytest.fixture(scope="module")
def lens_file(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    J = {layer: torch.eye(tiny.D) + 0.3 * torch.randn(tiny.D, tiny.D, generator=g) for layer in range(tiny.L - 1)}
    return JacobianLens(J=J, n_prompts=3, d_model=tiny.D).save(tmp_path_factory.mktemp("j") / "tiny.pt")


@pytest.fixture(scope="module")
def client(scopes, lens_file):
    app = create_app(scopes, limits=Limits(max_tokens=40), jacobian={"tiny": str(lens_file)})
    return TestClient(app, base_url="http://localhost")


def test_models_say_which_have_a_jacobian_lens(client, lens_file):
    got = {m["name"]: m["jacobian_lens"] for m in client.get("/api/models").json()["models"]}
    assert got == {"tiny": str(lens_file), "bert": None}


def test_jacobian_lens_equals_scope_lens(client, scopes, lens_file):
    r = client.post("/api/lens", json={"model": "tiny", "text": TEXT, "top_k": 5, "lens": "jacobian"})
    assert r.status_code == 200, r.text
    got = r.json()
    want = scopes["tiny"].lens(TEXT, top_k=5, jacobian=str(lens_file)).to_dict()
    plain = scopes["tiny"].lens(TEXT, top_k=5).to_dict()
    assert got["meta"]["lens"] == "jacobian" and got["entropy"] != plain["entropy"]
    for key, value in want.items():
        assert got[key] == value, key
    col = client.post("/api/column", json={"model": "tiny", "text": TEXT, "position": 2, "lens": "jacobian"}).json()
    assert col["entropy"] == pytest.approx([row[2] for row in want["entropy"]], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize(
    "body, words",
    [
        ({"model": "bert", "text": "a b", "lens": "jacobian"}, "no jacobian lens"),
        ({"model": "tiny", "text": TEXT, "lens": "jacobian", "sublayers": True}, "logit lens only"),
    ],
)
def test_refusals_are_4xx_json(client, body, words):
    for path in ("/api/lens", "/api/column"):
        r = client.post(path, json=body)
        assert 400 <= r.status_code < 500, r.text
        assert words in r.json()["error"]


def test_jacobian_must_name_a_served_model_and_fit_it(scopes, lens_file, tmp_path):
    with pytest.raises(InputError, match="--jacobian"):
        create_app({"tiny": scopes["tiny"]}, jacobian={"nope": str(lens_file)})
    other = JacobianLens(J={0: torch.eye(16)}, n_prompts=1, d_model=16).save(tmp_path / "other.pt")
    with pytest.raises(LensMismatchError):
        create_app({"tiny": scopes["tiny"]}, jacobian={"tiny": str(other)})


def test_demo_model_gets_its_shipped_jacobian_lens_and_others_do_not(scopes):
    import logitscope

    demo = logitscope.load("demo")
    c = TestClient(create_app({"demo": demo, "tiny": scopes["tiny"]}), base_url="http://localhost")
    got = {m["name"]: m["jacobian_lens"] for m in c.get("/api/models").json()["models"]}
    assert got == {"demo": "demo", "tiny": None}
    r = c.post("/api/lens", json={"model": "demo", "text": "The cat sat", "top_k": 3, "lens": "jacobian"}).json()
    assert r["top_probs"] == demo.lens("The cat sat", top_k=3, jacobian="demo").to_dict()["top_probs"]
