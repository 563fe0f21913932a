"""A UTF-8 byte-order mark at the start of a user's file is not text, wherever logitscope reads one.

Each reader (``lens --input-file``, the corpora of ``eval --data``, ``train-lens --data`` and
``fit-jlens --data``, in every corpus format) is run on a file and on the same file with a mark
in front: the results must be the same. Without the fix the mark is the first three tokens.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from logitscope.cli import app
from logitscope.data.corpus import Corpus
from logitscope.errors import InputError
from logitscope.io.textfile import BOM, decode_file_bytes, skip_bom

LINES = ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void."]
FILES = {
    "txt": "\n".join(LINES) + "\n",
    "jsonl": "".join(json.dumps({"text": t}) + "\n" for t in LINES),
    "json": json.dumps([{"text": t} for t in LINES]),
    "csv": "text,n\n" + "".join(f'"{t}",{i}\n' for i, t in enumerate(LINES)),
}


def pair(tmp_path, suffix: str, content: str | None = None):
    """The same file without and with a leading byte-order mark."""
    plain, bom = tmp_path / f"plain.{suffix}", tmp_path / f"bom.{suffix}"
    plain.write_text(FILES[suffix] if content is None else content, encoding="utf-8")
    bom.write_bytes(BOM + plain.read_bytes())
    return plain, bom


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_the_reader_helpers(tmp_path):
    import io

    assert decode_file_bytes(BOM + "héllo".encode(), "x.txt") == "héllo"
    assert decode_file_bytes("\ufeff".encode() * 2, "x.txt") == "\ufeff"  # only one mark is dropped
    fh = io.BufferedReader(io.BytesIO(BOM + b"abc"))
    assert skip_bom(fh) == 3 and fh.read() == b"abc"
    fh = io.BufferedReader(io.BytesIO(b"abc"))
    assert skip_bom(fh) == 0 and fh.read() == b"abc"
    # a bad byte after a mark: the line and the file's own byte offset (the mark counted)
    with pytest.raises(InputError, match=r"x\.txt:2: not valid UTF-8 \(byte 0xff at byte offset 7\)"):
        decode_file_bytes(BOM + b"abc\n\xff", "x.txt")


@pytest.mark.parametrize("suffix", sorted(FILES))
def test_corpus_reads_the_same_documents(tmp_path, suffix):
    plain, bom = pair(tmp_path, suffix)
    docs = list(Corpus(plain))
    assert docs == list(Corpus(bom))
    assert docs[0][0].startswith("In the beginning")


def test_corpus_folder_and_error_offsets(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for suffix in ("txt", "jsonl"):
        plain, bom = pair(tmp_path, suffix)
        plain.rename(tmp_path / "a" / f"doc.{suffix}")
        bom.rename(tmp_path / "b" / f"doc.{suffix}")
    assert list(Corpus(tmp_path / "a")) == list(Corpus(tmp_path / "b"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(BOM + b"fine\n\xfe\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: not valid UTF-8 \(byte 0xfe at byte offset 8\)"):
        list(Corpus(bad))
    only = tmp_path / "only.txt"
    only.write_bytes(BOM)
    assert list(Corpus(only)) == [("", True)]  # a mark alone holds no text


def test_lens_input_file_jsonl(tmp_path):
    plain, bom = pair(tmp_path, "jsonl")
    a, b = (run("lens", "demo", "--input-file", str(p), "-f", "json").stdout.splitlines() for p in (plain, bom))
    assert a == b and len(a) == 2
    assert json.loads(a[0])["tokens"][0] == "In"


@pytest.mark.parametrize("suffix", ["txt", "jsonl"])
def test_eval_data(tmp_path, suffix):
    plain, bom = pair(tmp_path, suffix)
    metrics = []
    for name, data in (("plain", plain), ("bom", bom)):
        out = tmp_path / f"eval-{name}"
        run(
            "eval", "demo", "--data", str(data), "--out", str(out), "--no-plots", "--max-tokens", "24", "--n-boot", "10"
        )
        m = json.loads((out / "metrics.json").read_text())
        metrics.append({k: m[k] for k in ("n_tokens", "n_bytes", "n_windows", "layers")})
    assert metrics[0] == metrics[1]
    assert metrics[0]["n_tokens"] == 24


def test_train_lens_data(tmp_path):
    plain, bom = pair(tmp_path, "txt", FILES["txt"] * 4)
    params = []
    for name, data in (("plain", plain), ("bom", bom)):
        out = tmp_path / f"lens-{name}"
        run(
            "train-lens",
            "demo",
            "--data",
            str(data),
            "--out",
            str(out),
            "--steps",
            "2",
            "--tokens-per-step",
            "32",
            "--seq-len",
            "16",
            "--seed",
            "0",
        )
        params.append(torch.load(out / "params.pt", map_location="cpu", weights_only=True))
    assert params[0].keys() == params[1].keys()
    assert any(v.abs().sum() > 0 for v in params[0].values())  # it trained (zero-initialised translators moved)
    for key in params[0]:
        torch.testing.assert_close(params[0][key], params[1][key], rtol=0, atol=0)


def test_fit_jlens_data(tmp_path):
    plain, bom = pair(tmp_path, "txt")
    lenses = []
    for name, data in (("plain", plain), ("bom", bom)):
        out = tmp_path / f"j-{name}.pt"
        run(
            "fit-jlens",
            "demo",
            "--data",
            str(data),
            "--out",
            str(out),
            "--prompts",
            "1",
            "--max-seq-len",
            "8",
            "--skip-first",
            "0",
            "--dim-batch",
            "64",
            "--source-layers",
            "3",
        )
        lenses.append(torch.load(out, map_location="cpu", weights_only=False))
    a, b = lenses

    def tensors(obj, prefix=""):
        if isinstance(obj, torch.Tensor):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from tensors(v, f"{prefix}.{k}")

    ta, tb = dict(tensors(a)), dict(tensors(b))
    assert ta and ta.keys() == tb.keys()
    for key in ta:
        torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=0)
