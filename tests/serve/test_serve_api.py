"""The viewer's JSON API (``logitscope serve``) through FastAPI's TestClient.

Every 200 is checked against the Python API for the same input (which the lens tests check against
the models themselves); every refusal is a 4xx with a JSON message (or the documented 503).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading

import numpy as np
import pandas as pd
import pytest
import tiny

from logitscope import Scope

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from logitscope.diff.run import row_pairs  # noqa: E402
from logitscope.serve import Limits, create_app  # noqa: E402
from logitscope.serve.guard import HostPolicy  # noqa: E402
from logitscope.serve.slots import Busy, Slot, run_exclusive  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog"


def word_tokenizer():
    """A WordLevel tokenizer over tiny.TEXT with BERT-style specials (fits tiny.V = 96)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w[0] for w in pre_tokenizers.Whitespace().pre_tokenize_str(tiny.TEXT.lower())})
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def scopes(tmp_path_factory):
    """Two GPT-2s sharing a tokenizer (3 and 5 blocks), a llama with another vocabulary, a T5, a BERT."""
    a_model, tok = tiny.saved_gpt2(tmp_path_factory.mktemp("a"))
    b_model, _ = tiny.saved_gpt2(tmp_path_factory.mktemp("b"), n_layer=5, seed=1)
    words = word_tokenizer()
    return {
        "tiny": Scope(a_model, tok, name="tiny"),
        "deep": Scope(b_model, tok, name="deep"),
        "other": Scope(tiny.build("llama"), name="other"),
        "t5": Scope(tiny.build("t5"), words, name="t5"),
        "bert": Scope(tiny.build("bert"), words, name="bert"),
    }


@pytest.fixture(scope="module")
def client(scopes):
    app = create_app(scopes, limits=Limits(max_tokens=40, max_chars=300, max_top_k=20, max_body_bytes=4096))
    return TestClient(app, base_url="http://localhost:8000")


def post(client, path, body, **kw):
    r = client.post(path, json=body, **kw)
    assert r.headers["content-type"].startswith("application/json") or r.status_code == 200, r.text
    return r


# -- results equal the Python API --------------------------------------------------------------
def test_models_lists_names_kinds_and_limits(client):
    data = client.get("/api/models").json()
    kinds = {m["name"]: m["kind"] for m in data["models"]}
    assert kinds == {"tiny": "causal", "deep": "causal", "other": "causal", "t5": "seq2seq", "bert": "masked"}
    assert data["limits"]["max_tokens"] == 40
    assert set(data["metrics"]) == {"entropy", "prob", "target", "rank", "kl"}
    bert = next(m for m in data["models"] if m["name"] == "bert")
    assert bert["mask_token"] == "[MASK]"


def test_lens_equals_scope_lens(client, scopes):
    body = {"model": "tiny", "text": TEXT, "target": " the", "top_k": 7, "track": [" the", 5]}
    r = post(client, "/api/lens", body)
    assert r.status_code == 200, r.text
    got = r.json()
    want = scopes["tiny"].lens(TEXT, target=" the", top_k=7, track=[" the", 5]).to_dict()
    assert got["stride"] == 1 and got["n_streams_total"] == 4
    for key, value in want.items():
        assert got[key] == value, key


def test_lens_stride_keeps_embed_and_output(scopes):
    app = create_app({"deep": scopes["deep"]}, limits=Limits(max_rows=3))
    c = TestClient(app, base_url="http://localhost")
    auto = c.post("/api/lens", json={"model": "deep", "text": TEXT}).json()
    assert auto["stride"] == 3 and auto["layers"] == [0, 3, 5]
    two = c.post("/api/lens", json={"model": "deep", "text": TEXT, "stride": 2}).json()
    assert two["layers"] == [0, 2, 4, 5]
    want = scopes["deep"].lens(TEXT, layers=[0, 2, 4, 5], top_k=10).to_dict()
    assert two["top_probs"] == want["top_probs"] and two["entropy"] == want["entropy"]


def test_column_equals_tracked_lens_at_every_layer(client, scopes):
    ids = [3, 40, 77]
    r = post(client, "/api/column", {"model": "deep", "text": TEXT, "position": 4, "ids": ids, "tokens": [" the"]})
    assert r.status_code == 200, r.text
    col = r.json()
    ref = scopes["deep"].lens(TEXT, track=col["ids"])
    assert col["ids"][:3] == ids and len(col["ids"]) == 4 and col["layer_names"] == ref.layer_names
    # the library's numbers, bit for bit: the JSON's 9 significant digits give back the same float32
    np.testing.assert_array_equal(np.array(col["probs"], dtype=np.float32), ref.tracked_probs[:, :, 4])
    np.testing.assert_array_equal(np.array(col["ranks"]), ref.tracked_ranks[:, :, 4])
    np.testing.assert_array_equal(np.array(col["entropy"], dtype=np.float32), ref.entropy[:, 4])
    assert col["top1_ids"] == ref.top_ids[:, 4, 0].tolist()


def test_compare_kl_final_row_equals_model_logits(client, scopes):
    other = "A quick brown dog jumps over the lazy fox"
    body = {"a": {"model": "tiny", "text": TEXT}, "b": {"model": "deep", "text": other, "position": 2}}
    r = post(client, "/api/compare", body)
    assert r.status_code == 200, r.text
    cmp = r.json()
    assert cmp["pairs"] == [[0, 0], [1, 2], [2, 3], [3, 5]] and cmp["alignment"] == "fraction of depth"
    za = scopes["tiny"].logits(TEXT).logits[-1].double().log_softmax(-1)  # the models' own output
    zb = scopes["deep"].logits(other).logits[2].double().log_softmax(-1)
    kl_ab = float((za.exp() * (za - zb)).sum())
    kl_ba = float((zb.exp() * (zb - za)).sum())
    assert cmp["kl_ab"][-1] == pytest.approx(kl_ab, rel=1e-4, abs=1e-6)
    assert cmp["kl_ba"][-1] == pytest.approx(kl_ba, rel=1e-4, abs=1e-6)
    same = post(client, "/api/compare", {"a": {"model": "tiny", "text": TEXT}, "b": {"model": "tiny", "text": TEXT}})
    assert same.json()["alignment"] == "identity" and max(same.json()["kl_ab"]) == 0.0


def test_compare_refuses_different_vocabularies(client):
    r = post(client, "/api/compare", {"a": {"model": "tiny", "text": TEXT}, "b": {"model": "other", "text": TEXT}})
    assert r.status_code == 400
    assert "vocabularies differ" in r.json()["error"]


def test_row_pairs_by_fraction_of_depth():
    assert row_pairs(4, 4) == [(i, i) for i in range(5)]
    assert row_pairs(12, 6) == [(0, 0), (2, 1), (4, 2), (6, 3), (8, 4), (10, 5), (12, 6)]
    assert row_pairs(3, 5)[0] == (0, 0) and row_pairs(3, 5)[-1] == (3, 5)


def test_logits_seq2seq_masked_and_generate(client, scopes):
    r = post(client, "/api/logits", {"model": "t5", "text": "the cat sat on the mat", "top_k": 5})
    want = scopes["t5"].logits("the cat sat on the mat").top(5).to_dict()
    got = r.json()
    assert got["tokens"] == want["tokens"] and len(got["tokens"]) == 1  # T5 without labels: the first decoder step
    assert got["top_ids"] == want["top_ids"] and got["top_probs"] == want["top_probs"]
    r = post(client, "/api/logits", {"model": "bert", "text": "the cat [MASK] on the mat", "top_k": 3})
    out = scopes["bert"].logits("the cat [MASK] on the mat")
    assert r.json()["masked"] and r.json()["positions"] == out.mask_positions.tolist() == [3]
    assert r.json()["top_ids"] == out.top(3, positions=out.mask_positions).to_dict()["top_ids"]
    r = post(client, "/api/logits", {"model": "tiny", "text": TEXT, "generate": 4})
    want = scopes["tiny"].logits(TEXT, generate=4)
    assert r.json()["generated_text"] == want.generated_text and r.json()["target_ids"] == want.generated_ids.tolist()


def test_lens_seq2seq_and_masked(client, scopes):
    r = post(client, "/api/lens", {"model": "t5", "text": "the cat sat on the mat", "target": "the dog"})
    want = scopes["t5"].lens("the cat sat on the mat", target="the dog", top_k=10).to_dict()
    assert r.json()["top_probs"] == want["top_probs"] and r.json()["source_tokens"] == want["source_tokens"]
    r = post(client, "/api/lens", {"model": "bert", "text": "the cat [MASK] on the mat"})
    assert r.json()["target_rank"] == scopes["bert"].lens("the cat [MASK] on the mat").to_dict()["target_rank"]


def test_nearest_equals_scope_nearest(client, scopes):
    r = post(client, "/api/nearest", {"model": "tiny", "text": " the fox", "k": 4, "metric": "dot"})
    ids = scopes["tiny"].tokenizer(" the fox", add_special_tokens=False)["input_ids"]
    want = [n.to_dict() for n in scopes["tiny"].nearest(ids, k=4, metric="dot")]
    assert json.loads(json.dumps(want, default=lambda a: a.tolist())) == r.json()["queries"]


def test_exports_are_what_the_cli_writes(client, scopes):
    from logitscope.lens.export import to_json

    body = {"model": "tiny", "text": TEXT, "top_k": 3}
    res = scopes["tiny"].lens(TEXT, top_k=3)
    r = client.post("/api/export", json={**body, "format": "json"})
    assert r.status_code == 200 and "logitscope-tiny.json" in r.headers["content-disposition"]
    assert r.json() == json.loads(to_json(res))
    r = client.post("/api/export", json={**body, "format": "csv"})
    df = pd.read_csv(io.StringIO(r.text), keep_default_na=False)
    assert len(df) == res.n_streams * res.n_positions
    np.testing.assert_allclose(df["entropy"].to_numpy(), res.entropy.ravel(), rtol=1e-6)
    r = client.post("/api/export", json={**body, "format": "html", "metric": "kl"})
    assert r.headers["content-type"].startswith("text/html") and b"plotly" in r.content[:200_000]
    assert re.search(rb"<script[^>]*src=", r.content) is None  # plotly.js embedded, no external script


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/api/lens", {"model": "nope", "text": "a"}, 404, "unknown model"),
        ("/api/lens", {"model": "tiny", "text": ""}, 400, "empty"),
        ("/api/lens", {"model": "tiny", "text": "x" * 301}, 413, "characters"),
        ("/api/lens", {"model": "tiny", "text": " the" * 60}, 413, "tokens"),
        ("/api/lens", {"model": "tiny", "text": "a", "top_k": 21}, 413, "top-k 21"),
        ("/api/lens", {"model": "tiny", "text": "a", "top_k": 0}, 422, "top-k"),
        ("/api/lens", {"model": "tiny", "text": "a", "track": list(range(9))}, 413, "pinned"),
        ("/api/lens", {"model": "tiny", "text": "a", "track": [" quick brown fox"]}, 400, "one token"),
        ("/api/lens", {"model": "tiny", "text": "a", "path": "/etc/passwd"}, 422, "path"),
        ("/api/lens", {"model": "tiny"}, 422, "text"),
        ("/api/lens", {"model": ["tiny"], "text": "a"}, 422, "model"),
        ("/api/lens", {"model": "bert", "text": "the cat", "target": "sat"}, 400, "masked"),
        ("/api/column", {"model": "tiny", "text": TEXT, "position": 99}, 400, "out of range"),
        ("/api/column", {"model": "tiny", "text": TEXT, "ids": [10**6]}, 400, "outside the vocabulary"),
        ("/api/logits", {"model": "tiny", "text": "a", "generate": 65}, 413, "generates at most"),
        ("/api/logits", {"model": "bert", "text": "the cat", "generate": 2}, 400, "do not generate"),
        ("/api/nearest", {"model": "tiny", "text": "a", "k": 51}, 413, "neighbours"),
        ("/api/nearest", {"model": "tiny", "text": "a", "metric": "l2"}, 422, "metric"),
        ("/api/export", {"model": "tiny", "text": "a", "format": "exe"}, 422, "format"),
    ],
)
def test_bad_requests_get_4xx_json(client, path, body, status, words):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"], r.json()


def test_malformed_and_oversized_bodies(client):
    r = client.post("/api/lens", content=b'{"model": "tiny", "text": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    r = client.post("/api/lens", content=b"x" * 5000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["error"]
    r = client.post("/api/lens", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.get("/api/nothing").status_code == 404 and "error" in client.get("/api/nothing").json()


def test_host_and_origin_checks(client):
    assert client.get("/api/models", headers={"host": "evil.example:8000"}).status_code == 403
    assert client.get("/api/models", headers={"host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/api/models", headers={"host": "[::1]:8000"}).status_code == 200
    r = client.post("/api/lens", json={"model": "tiny", "text": "a"}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = client.post("/api/lens", json={"model": "tiny", "text": "a"}, headers={"origin": "http://localhost:8000"})
    assert r.status_code == 200
    local, everywhere = HostPolicy("127.0.0.1"), HostPolicy("0.0.0.0", ["box.lan"])
    assert not local.allows("192.168.1.5") and not local.allows("127.evil.com") and local.allows("127.0.0.2")
    assert everywhere.allows("192.168.1.5") and everywhere.allows("box.lan") and not everywhere.allows("evil.example")


def test_page_static_files_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and b'type="module"' in page.content
    assert "default-src 'self'" in page.headers["content-security-policy"]
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert client.get("/static/js/main.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/app.py").status_code == 404
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    local = re.search(r'src="(/vendor/swagger/swagger-ui-bundle\.js)"', docs.text)  # offline: fastapi-offline
    assert local is not None and client.get(local.group(1)).status_code == 200
    assert "cdn.jsdelivr" not in docs.text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/lens", "/api/column", "/api/compare", "/api/logits", "/api/nearest", "/api/export"} <= set(paths)


# -- the queue -----------------------------------------------------------------------------------
def test_full_queue_is_busy_and_one_runs_at_a_time():
    async def scenario():
        slot = Slot("m", max_queue=1)
        release = threading.Event()
        running, peak = [0], [0]

        def work():
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            release.wait(5)
            running[0] -= 1
            return "done"

        first = asyncio.create_task(run_exclusive([slot], work))
        second = asyncio.create_task(run_exclusive([slot], work))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy) as err:
            await run_exclusive([slot], work)
        assert err.value.retry_after >= 1
        release.set()
        assert await first == await second == "done"
        assert peak[0] == 1 and slot.admitted == 0

    asyncio.run(scenario())


def test_busy_is_503_with_retry_after(scopes):
    app = create_app({"tiny": scopes["tiny"]}, limits=Limits(max_queue=0))
    c = TestClient(app, base_url="http://localhost")
    app.state.entries["tiny"].slot.admitted = 1  # one computation running, no room to wait
    r = c.post("/api/lens", json={"model": "tiny", "text": "a"})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
    app.state.entries["tiny"].slot.admitted = 0
    assert c.post("/api/lens", json={"model": "tiny", "text": "a"}).status_code == 200


def test_vocab_fingerprint_tells_tokenizers_apart(scopes):
    from logitscope.serve.models import vocab_fingerprint

    assert vocab_fingerprint(scopes["tiny"]) == vocab_fingerprint(scopes["deep"])
    assert vocab_fingerprint(scopes["tiny"]) != vocab_fingerprint(scopes["other"])
    assert vocab_fingerprint(scopes["t5"]) == vocab_fingerprint(scopes["bert"])  # one tokenizer, same head size


def test_requests_whose_client_left_are_not_computed(scopes):
    """A live uvicorn: of five queued requests, the three the client cancelled never reach the model."""
    import socket
    import time

    import httpx
    import uvicorn

    calls = []

    class Counting:  # the tiny scope, with a slow, counted lens
        def __init__(self, scope):
            self.__dict__["_scope"] = scope

        def __getattr__(self, name):
            return getattr(self._scope, name)

        def lens(self, *args, **kwargs):
            calls.append(args[0])
            time.sleep(0.4)
            return self._scope.lens(*args, **kwargs)

    app = create_app({"tiny": Counting(scopes["tiny"])})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    async def scenario():
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:

            def send(i):
                return asyncio.create_task(c.post("/api/lens", json={"model": "tiny", "text": f"a {i}"}))

            tasks = [send(0)]
            while not calls:  # the first one is computing; the next four queue behind it
                await asyncio.sleep(0.01)
            tasks += [send(i) for i in range(1, 5)]
            await asyncio.sleep(0.15)
            for t in tasks[1:4]:
                t.cancel()  # superseded while queued
            return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        done = asyncio.run(scenario())
        time.sleep(0.5)
    finally:
        server.should_exit = True
        thread.join(10)
    assert [getattr(d, "status_code", None) for d in (done[0], done[4])] == [200, 200]
    assert sorted(calls) == ["a 0", "a 4"], calls
