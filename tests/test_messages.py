"""Issue 21 item 6 (CLI and library): each message says what is actually wrong, and on the command
line names flags, not Python arguments. Item 11: a checkpoint with more blocks than its config."""

from __future__ import annotations

import json
import shutil

import pytest
import tiny
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.cli.common import cli_words
from logitscope.errors import CorruptWeightsError, EmptyInputError
from logitscope.loading import DEMO_DIR


def cli_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


def test_empty_track_and_target(demo, monkeypatch):
    with pytest.raises(EmptyInputError, match="track= item is empty"):
        demo.lens("In the beginning", track=[""])
    with pytest.raises(EmptyInputError, match="target= text is empty"):
        demo.lens("In the beginning", target="")
    with pytest.raises(EmptyInputError, match="target= text is empty"):
        demo.logits("In the beginning", target="")
    monkeypatch.setattr("logitscope.cli.lens.load_scope", lambda *a, **k: pytest.fail("loaded the model"))
    assert "--track is empty" in cli_error("lens", "demo", "x", "--track", "")
    assert "--target is empty" in cli_error("lens", "demo", "x", "--target", "")
    for cmd in ("logits", "attribute"):
        err = cli_error(cmd, "demo", "x", "--target", "")
        assert "--target" in err and "empty" in err and "the text is empty" not in err, err


def test_input_file_that_is_not_a_regular_file(tmp_path):
    assert "holds no texts" in cli_error("lens", "demo", "--input-file", "/dev/null")
    assert "no such file" in cli_error("lens", "demo", "--input-file", tmp_path / "nope.txt")
    assert "is a directory" in cli_error("lens", "demo", "--input-file", tmp_path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    out = {}
    out["gpt2_no_tok"] = root / "gpt2_no_tok"  # transformers 5 builds an *empty* GPT-2 tokenizer here
    tiny.saved_gpt2(out["gpt2_no_tok"])
    for f in out["gpt2_no_tok"].glob("tokenizer*"):
        f.unlink()
    for f in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        (out["gpt2_no_tok"] / f).unlink(missing_ok=True)
    out["bad_json"] = root / "bad_json"
    shutil.copytree(DEMO_DIR, out["bad_json"])
    (out["bad_json"] / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    out["config_only"] = root / "config_only"
    shutil.copytree(DEMO_DIR, out["config_only"])
    (out["config_only"] / "tokenizer.json").unlink()
    return out


def test_folder_without_tokenizer_files(folders):
    scope = logitscope.load(folders["gpt2_no_tok"])
    assert scope.tokenizer is None
    assert len(scope.lens([1, 2, 3]).tokens) == 3  # ids still work
    err = cli_error("lens", folders["gpt2_no_tok"], "hello")
    assert "no tokenizer" in err and "the input is empty" not in err


def test_unreadable_tokenizer_files_are_named(folders):
    with pytest.raises(CorruptWeightsError, match=r"tokenizer file tokenizer\.json .* is not valid JSON"):
        logitscope.load(folders["bad_json"])
    err = cli_error("lens", folders["bad_json"], "hello")
    assert "tokenizer.json" in err and "not valid JSON" in err and "no tokenizer files" not in err
    err = cli_error("lens", folders["config_only"], "hello")
    assert "tokenizer_config.json" in err and "no vocabulary" in err


def test_wrong_shaped_weight_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny.saved_gpt2(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    key = "transformer.h.1.mlp.c_fc.weight"
    shape = tuple(tensors[key].shape)
    tensors[key] = tensors[key][:, :-3].contiguous()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CorruptWeightsError) as info:
        logitscope.load(tmp_path)
    msg = str(info.value)
    assert key in msg and str((shape[0], shape[1] - 3)) in msg and str(shape) in msg, msg
    assert "above report" not in msg
    assert key in cli_error("info", tmp_path)


def test_more_blocks_than_config_declares(tmp_path):
    tiny.saved_gpt2(tmp_path, n_layer=4)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg, n_layer=2)))
    with pytest.raises(CorruptWeightsError, match=r"more blocks than its config\.json declares.* 2, 3"):
        logitscope.load(tmp_path)
    tiny.saved_gpt2(tmp_path / "ok", n_layer=2)  # a matching pair still loads
    assert logitscope.load(tmp_path / "ok").n_layers == 2


@pytest.mark.parametrize(
    "library, flag",
    [
        ("sublayers=True works with the logit lens only, not with a tuned lens", "--sublayers"),
        ("tuned lens 'x' was trained for another model; pass strict=False to apply it anyway", "train-lens"),
        ("GPT2Model has no head, or use scope.embed()/scope.nearest(), which need", "logitscope embed"),
        ("shorten it or pass truncate=True (keeps the first tokens)", "add --truncate"),
        ("tuned= takes a TunedLens", "--tuned"),
    ],
)
def test_cli_messages_name_flags(library, flag):
    out = cli_words(library)
    assert flag in out and "=True" not in out and "strict=" not in out and "scope." not in out, out


def test_cli_sublayers_with_tuned_names_flags():
    err = cli_error("lens", "demo", "x", "--sublayers", "--tuned", "demo")
    assert "--sublayers" in err and "--tuned" in err and "=True" not in err


def test_a_missing_lens_path_is_named_before_the_model_loads(monkeypatch, tmp_path):
    """``--lens``/``--tuned``/``--jacobian`` naming nothing: one error naming the flag (not "no tuned
    lens" for ``--lens``), before the model is loaded."""
    monkeypatch.setattr("logitscope.cli.lens.load_scope", lambda *a, **k: pytest.fail("loaded the model"))
    for flag in ("--lens", "--tuned", "--jacobian"):
        err = cli_error("lens", "demo", "x", flag, tmp_path / "nope")
        assert err.startswith(f"error: {flag} '{tmp_path / 'nope'}': no such file or folder"), err
    corpus = tmp_path / "c.txt"
    corpus.write_text("In the beginning\n", encoding="utf-8")
    monkeypatch.setattr("logitscope.data.corpus.Corpus", lambda *a, **k: pytest.fail("read the corpus"))
    for flag in ("--tuned", "--jacobian"):
        err = cli_error("eval", "demo", "--data", corpus, "--out", tmp_path / "out", flag, tmp_path / "nope")
        assert f"error: {flag} " in err and "no such file or folder" in err, err
