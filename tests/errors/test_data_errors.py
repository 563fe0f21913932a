"""Corpora read what they say or fail naming the file and line: bytes that are not UTF-8, every
document format (json, parquet, csv, saved datasets), paths versus texts versus bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from errors_common import DOCS, cli

import logitscope
from logitscope.errors import InputError


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


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
