"""Property-based fuzzing (hypothesis) of the CLI and the Python API: one clear error, never a crash.

Whatever the arguments, file contents, encodings or model folders, every outcome is either a valid
result or a ``LogitscopeError`` (CLI: exit code 2 and exactly one ``error:`` line on stderr);
never another exception, never a traceback, and a failed command leaves its output folder exactly
as it was (no partial file, no temporary). Bounded: a fixed number of examples per property,
derandomized so CI runs the same cases every time (``LOGITSCOPE_FUZZ=N`` multiplies them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.errors import LogitscopeError
from logitscope.lens.result import LensResult

SCALE = int(os.environ.get("LOGITSCOPE_FUZZ", "1"))


def bounded(n: int):
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


# -- the Python API ----------------------------------------------------------------------------
def mostly(valid, invalid, odds: int = 3):
    """``valid`` about ``odds`` times out of ``odds + 1``, else ``invalid``."""
    return st.integers(0, odds).flatmap(lambda i: invalid if i == odds else valid)


IDS = mostly(st.integers(0, 4095), st.integers(-3, 4200))  # the demo vocabulary is 4096
TEXT = mostly(st.text(min_size=1, max_size=30), st.text(max_size=3))
BAD_INPUTS = st.one_of(
    st.none(),
    IDS,
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.lists(st.floats(), min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=3), IDS, max_size=2),
    st.lists(st.floats(-5, 5), min_size=1, max_size=4).map(torch.tensor),
    st.lists(st.lists(IDS, max_size=5), max_size=3),
)
INPUTS = mostly(
    st.one_of(
        TEXT,
        st.lists(IDS, min_size=1, max_size=8),
        st.lists(TEXT, min_size=1, max_size=3),
        st.lists(IDS, min_size=1, max_size=6).map(lambda v: torch.tensor(v, dtype=torch.long)),
    ),
    BAD_INPUTS,
)
NUMBERS = st.one_of(  # small, or far out of range (a valid huge top_k or generate= would only be slow)
    st.none(), st.booleans(), st.integers(-3, 10), st.sampled_from([4097, 10**9]), st.floats(allow_nan=True)
)
SMALL = mostly(st.integers(1, 8), NUMBERS)
LENS_KW = st.fixed_dictionaries(
    {},
    optional={
        "top_k": SMALL,
        "target": mostly(
            st.one_of(st.none(), TEXT, st.lists(IDS, max_size=3)), st.one_of(st.binary(max_size=3), st.floats())
        ),
        "track": mostly(
            st.one_of(st.none(), IDS, st.lists(IDS, max_size=3)),
            st.one_of(TEXT, st.floats(), st.lists(TEXT, max_size=2)),
        ),
        "layers": mostly(
            st.one_of(st.none(), st.integers(-9, 8), st.lists(st.integers(-9, 8), min_size=1, max_size=3)),
            st.one_of(st.integers(-12, 12), TEXT, st.lists(st.one_of(st.integers(-12, 12), TEXT), max_size=3)),
        ),
        "batch_size": SMALL,
        "truncate": st.booleans(),
    },
)


def valid_lens(res) -> None:
    assert isinstance(res, LensResult)
    assert np.isfinite(res.entropy).all() and (res.entropy >= -1e-4).all()
    assert ((res.top_probs >= 0) & (res.top_probs <= 1 + 1e-6)).all()
    assert res.top_ids.max(initial=0) < 4096


@bounded(50)
@given(x=INPUTS, kw=LENS_KW)
def test_lens_api(demo, x, kw):
    try:
        out = demo.lens(x, **kw)
    except LogitscopeError as err:
        assert str(err) and "\n" not in str(err).strip()
        event(type(err).__name__)
        return
    event("result")
    for res in out if isinstance(out, list) else [out]:
        valid_lens(res)


LOGITS_KW = st.fixed_dictionaries(
    {},
    optional={
        "target": st.one_of(TEXT, st.lists(IDS, max_size=3)),
        "generate": mostly(st.integers(1, 3), NUMBERS),
        "truncate": st.booleans(),
    },
)


@bounded(25)
@given(x=INPUTS, kw=LOGITS_KW)
def test_logits_api(demo, x, kw):
    try:
        out = demo.logits(x, **kw)
    except LogitscopeError:
        return
    for res in out if isinstance(out, list) else [out]:
        assert torch.isfinite(res.logits).all() and res.logits.shape[-1] == 4096


@bounded(30)
@given(
    q=st.one_of(INPUTS, st.lists(st.floats(), min_size=256, max_size=256).map(torch.tensor)),
    k=SMALL,
    metric=st.sampled_from(["cosine", "dot", "l2", ""]),
)
def test_nearest_and_embed_api(demo, q, k, metric):
    try:
        near = demo.nearest(q, k=k, metric=metric)
    except LogitscopeError:
        pass
    else:
        for n in near if isinstance(near, list) else [near]:
            assert np.isfinite(n.scores).all() and len(n.ids) == k
    try:
        emb = demo.embed(q)
    except LogitscopeError:
        return
    assert torch.isfinite(emb.vectors).all() and emb.vectors.shape == (len(emb.token_ids), 256)


EVAL_KW = st.fixed_dictionaries(
    {"n_boot": mostly(st.integers(1, 20), st.one_of(st.integers(-1, 0), st.floats(), st.none()))},
    optional={
        "seq_len": mostly(st.integers(1, 600), NUMBERS),
        "max_tokens": mostly(st.integers(1, 50), NUMBERS),
        "batch_size": mostly(st.sampled_from(["auto", 1, 4]), st.one_of(NUMBERS, st.sampled_from(["8", ""]))),
        "ci": mostly(st.sampled_from(["bootstrap", "stderr"]), st.sampled_from(["none", ""])),
        "confidence": mostly(st.floats(0.01, 0.99), NUMBERS),
    },
)


@bounded(30)
@given(data=st.one_of(INPUTS, st.sampled_from(["typo.jsonl", "no/such/dir", "hf:", "hf:x:y:z:w"])), kw=EVAL_KW)
def test_evaluate_api(demo, data, kw):
    try:
        res = demo.evaluate(data, **kw)
    except LogitscopeError as err:
        assert str(err)
        return
    assert res.n_tokens >= 1 and np.isfinite(res.ce).all() and np.isfinite(res.kl_to_final).all()
    lo, hi = res.ci["ce"].T
    if res.n_windows > 1 or res.meta["ci"] == "bootstrap":  # stderr needs two windows (else NaN: undefined)
        assert (lo <= res.ce + 1e-9).all() and (res.ce <= hi + 1e-9).all()
    else:
        assert np.isnan(lo).all() and np.isnan(hi).all()


# -- the command line --------------------------------------------------------------------------
ENCODINGS = ["utf-8", "latin-1", "utf-16", "cp1252"]
SUFFIXES = [".json", ".jsonl", ".csv", ".parquet", ".png", ".svg", ".html", ".txt", ""]


@st.composite
def file_content(draw) -> bytes:
    """Random bytes, or random text (sometimes as JSON Lines) in a random encoding."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=60))
    lines = draw(st.lists(st.text(min_size=1, max_size=25), min_size=0, max_size=4))
    if draw(st.booleans()):
        key = draw(mostly(st.just("text"), st.just("body")))
        lines = [
            json.dumps({key: line, "target": draw(st.one_of(st.none(), st.text(max_size=5), IDS))}) for line in lines
        ]
    return "\n".join(lines).encode(draw(mostly(st.just("utf-8"), st.sampled_from(ENCODINGS))), errors="replace")


@st.composite
def corpus_file(draw, folder: Path) -> Path:
    """A corpus file: mostly well-formed for its suffix (random documents), else random content."""
    import pandas as pd

    suffix = draw(st.sampled_from([".txt", ".jsonl", ".json", ".csv", ".parquet", ""]))
    path = folder / f"c{suffix}"
    docs = draw(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=4))
    if draw(mostly(st.just(True), st.just(False))):
        if suffix in (".txt", ""):
            path.write_text("\n".join(docs), encoding="utf-8")
        elif suffix == ".jsonl":
            path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
        elif suffix == ".json":
            path.write_text(json.dumps([{"text": d} for d in docs]), encoding="utf-8")
        elif suffix == ".csv":
            pd.DataFrame({"text": docs}).to_csv(path, index=False)
        else:
            pd.DataFrame({"text": docs}).to_parquet(path)
    else:
        path.write_bytes(draw(file_content()))
    return path


@st.composite
def destination(draw, folder: Path, suffixes=SUFFIXES) -> str:
    """A path in ``folder`` that may be new, an existing file, a directory, under a missing folder or /dev/null."""
    kind = draw(mostly(st.sampled_from(["new", "existing"]), st.sampled_from(["dir", "missing_parent", "devnull"])))
    suffix = draw(st.sampled_from(suffixes))
    n = draw(st.integers(0, 3))
    if kind == "devnull":
        return os.devnull
    if kind == "dir":
        (folder / f"d{n}").mkdir(exist_ok=True)
        return str(folder / f"d{n}")
    if kind == "missing_parent":
        return str(folder / "nodir" / f"x{n}{suffix}")
    path = folder / f"out{n}{suffix}"
    if kind == "existing":
        path.write_bytes(b"old")
    return str(path)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_outcome(result, folder: Path, before: dict[str, bytes]) -> None:
    """Exit 0, or exit 2 with one ``error:`` line and the folder untouched; never a temporary left."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output, repr(result.exception))
    event(f"exit {result.exit_code}")
    assert "Traceback" not in result.output
    assert not [p for p in folder.rglob(".*") if ".tmp" in p.name], "a temporary file was left behind"
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert snapshot(folder) == before, "a failed command changed its output folder"


@bounded(30)
@given(data=st.data())
def test_lens_cli(tiny_lm_dir, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("lens")
    draw = data.draw
    args = ["lens", str(tiny_lm_dir)]
    source = draw(mostly(st.sampled_from(["text", "text", "file"]), st.sampled_from(["both", "none"])))
    if source in ("text", "both"):
        args.append(draw(TEXT))
    if source in ("file", "both"):
        path = folder / f"in{draw(st.sampled_from(['.txt', '.jsonl', '.json', '']))}"
        path.write_bytes(draw(file_content()))
        args += ["--input-file", str(path)]
    options = {
        "--top-k": mostly(st.sampled_from(["1", "3"]), st.sampled_from(["0", "5000", "abc", "2.5", "-1"])),
        "--layers": mostly(st.sampled_from(["0,-1", "embed", "-1", "2"]), st.sampled_from(["1,2,x", "", "99", "0,,1"])),
        "--target": TEXT,
        "--track": mostly(
            st.sampled_from([" the", " fox", "<|endoftext|>"]), st.sampled_from([" quick brown", "", "5"])
        ),
        "--metric": mostly(st.sampled_from(["entropy", "prob", "target", "rank", "kl"]), st.just("bogus")),
        "--format": mostly(st.sampled_from(["json", "csv", "parquet", "table"]), st.just("xml")),
        "--out": destination(folder, [".json", ".jsonl", ".csv", ".parquet", ".txt", ""]),
        "--plot": destination(folder, [".png", ".svg", ".html", ".txt"]),
        "--trajectory": destination(folder, [".png", ".svg", ".html", ".csv"]),
        "--position": st.integers(-8, 8).map(str),
        "--batch-size": mostly(st.sampled_from(["1", "3"]), st.sampled_from(["0", "x"])),
    }
    for flag, strategy in options.items():
        if draw(st.integers(0, 2)) == 0:  # each option in about one run out of three
            args += [flag, draw(strategy)]
        if flag == "--track" and draw(st.integers(0, 4)) == 0:
            args += [flag, draw(strategy)]
    if draw(st.booleans()):
        args.append("--truncate")
    before = snapshot(folder)
    result = CliRunner().invoke(app, args)
    check_outcome(result, folder, before)


@bounded(15)
@given(data=st.data())
def test_eval_cli(tiny_lm_dir, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("eval")
    draw = data.draw
    corpus = draw(corpus_file(folder))
    out = draw(mostly(st.just(str(folder / "run")), destination(folder, [""])))
    args = ["eval", str(tiny_lm_dir), "--data", str(corpus), "--out", out]
    options = {
        "--seq-len": mostly(st.sampled_from(["1", "4", "16", "64"]), st.sampled_from(["65", "0"])),
        "--max-tokens": mostly(st.sampled_from(["1", "5"]), st.sampled_from(["0", "x"])),
        "--batch-size": mostly(st.sampled_from(["auto", "1", "3"]), st.sampled_from(["0", "x"])),
        "--ci": mostly(st.sampled_from(["bootstrap", "stderr"]), st.just("none")),
        "--confidence": mostly(st.sampled_from(["0.5", "0.95"]), st.sampled_from(["0", "1", "2"])),
        "--n-boot": mostly(st.sampled_from(["1", "10"]), st.just("0")),
        "--text-field": mostly(st.just("text"), st.sampled_from(["body", ""])),
        "--encoding-errors": mostly(st.sampled_from(["strict", "replace"]), st.just("ignore")),
        "--device-map": mostly(st.just("cpu"), st.just("foo")),
    }
    for flag, strategy in options.items():
        if draw(st.integers(0, 2)) == 0:
            args += [flag, draw(strategy)]
    args.append("--no-plots" if draw(st.integers(0, 4)) else "--plots")
    before = snapshot(folder)
    result = CliRunner().invoke(app, args)
    check_outcome(result, folder, before)


DAMAGE = [
    "none", "no_config", "config_garbage", "config_list", "config_unknown_type", "config_wrong_shape",
    "no_weights", "weights_truncated", "weights_garbage", "weights_nan", "tokenizer_garbage", "file_as_model",
]  # fmt: skip


def damaged_model(source: Path, folder: Path, damage: str) -> Path:
    """A copy of a tiny model folder, broken in one way (or not at all)."""
    model = folder / "model"
    shutil.copytree(source, model)
    config, weights = model / "config.json", model / "model.safetensors"
    cfg = json.loads(config.read_text())
    if damage == "no_config":
        config.unlink()
    elif damage == "config_garbage":
        config.write_bytes(b'{"model_type": "gpt2", \xff')
    elif damage == "config_list":
        config.write_text("[1, 2]")
    elif damage == "config_unknown_type":
        config.write_text(json.dumps(dict(cfg, model_type="no-such-arch")))
    elif damage == "config_wrong_shape":
        config.write_text(json.dumps(dict(cfg, n_embd=cfg["n_embd"] * 2)))
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "weights_truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "weights_garbage":
        weights.write_bytes(b"\x00garbage" * 50)
    elif damage == "weights_nan":
        from safetensors.torch import load_file, save_file

        tensors = load_file(weights)
        name = sorted(k for k in tensors if "mlp" in k)[0]
        tensors[name][0] = float("nan")
        save_file(tensors, weights, metadata={"format": "pt"})
    elif damage == "tokenizer_garbage":
        (model / "tokenizer.json").write_bytes(b"\xff\xfe not json")
    elif damage == "file_as_model":
        return config
    return model


@bounded(14)
@given(damage=st.sampled_from(DAMAGE), command=st.sampled_from(["info", "lens", "logits", "embed"]))
def test_model_folders_cli(tiny_lm_dir, tmp_path_factory, damage, command):
    folder = tmp_path_factory.mktemp("model")
    model = damaged_model(tiny_lm_dir, folder, damage)
    args = [command, str(model)] + ([] if command == "info" else ["The fox"])
    result = CliRunner().invoke(app, args)
    check_outcome(result, folder, snapshot(folder) if result.exit_code == 2 else {})
    if damage == "none":
        assert result.exit_code == 0, result.output
    if damage.startswith(("no_", "config_", "weights_g", "weights_t")) or damage == "file_as_model":
        assert result.exit_code == 2
    if damage == "weights_nan":  # named, and info still works
        assert (result.exit_code == 0) == (command in ("info", "embed")), result.output
        if command in ("lens", "logits"):
            assert "NaN" in result.stderr and "mlp" in result.stderr
