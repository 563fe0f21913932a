"""Tokens holding part of a UTF-8 character are shown by their bytes (``<0xE4>``),
not as "�", everywhere token strings appear; a UTF-8 byte-order mark in --input-file is dropped."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.engine.token_bytes import piece_bytes, readable
from logitscope.render.text import label

TEXTS = ["你好世界", "مرحبا بالعالم", "emoji 🙂 and “quotes” — é"]


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


def back_to_bytes(shown: str) -> bytes:
    """Invert the display: ``<0xNN>`` groups are bytes, everything else UTF-8 text."""
    out = b""
    for part in re.split(r"(<0x[0-9A-F]{2}>)", shown):
        out += bytes([int(part[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", part) else part.encode()
    return out


@pytest.mark.parametrize("text", TEXTS)
def test_tokens_are_their_bytes(demo, text):
    ids = demo.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert demo.tokenizer.decode(ids) == text  # the oracle: the tokenizer's own round trip
    res = demo.lens(ids)
    assert not any("\ufffd" in t for t in res.tokens), res.tokens
    assert b"".join(back_to_bytes(t) for t in res.tokens) == text.encode("utf-8")
    whole = [t for t in res.tokens if "<0x" not in t]
    assert all(demo.tokenizer.decode(demo.tokenizer(t, add_special_tokens=False)["input_ids"]) == t for t in whole)
    assert not any("\ufffd" in t for row in res.top_tokens for cell in row for t in cell)


def test_readable_and_pieces():
    assert readable("你".encode()[:2]) == "<0xE4><0xBD>"
    assert readable(b" " + "你".encode()) == " 你"
    assert readable("你".encode()[2:] + "好".encode()) == "<0xA0>好"
    assert readable("\ufffd".encode()) == "\ufffd"  # a real U+FFFD stays itself
    assert piece_bytes("<0xE4>") == b"\xe4"  # SentencePiece byte fallback
    assert piece_bytes("Ġä") == b" \xc3\xa4"[:1] + b"\xe4"  # GPT-2 byte-level stand-ins
    assert piece_bytes("▁the") is None


def test_labels_never_cut_a_byte_group():
    assert label("<0xE4><0xBD>", 8) == "<0xE4>…"
    assert label("<0xE4>", 6) == "<0xE4>"


def test_table_json_and_png(demo, tmp_path):
    text = TEXTS[0]
    out = CliRunner().invoke(app, ["lens", "demo", text, "-f", "table"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "\ufffd" not in out.stdout and "<0xE4>" in out.stdout, out.stdout
    res = demo.lens(text)
    res.save(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["tokens"] == res.tokens and "\ufffd" not in json.dumps(data, ensure_ascii=False)
    fig = res.plot(None)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert any("<0x" in t for t in labels) and not any("\ufffd" in t for t in labels)


def test_viewer_gets_the_same_strings(demo):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from logitscope.serve import create_app

    client = TestClient(create_app({"demo": demo}), base_url="http://localhost:8000")
    r = client.post("/api/lens", json={"model": "demo", "text": TEXTS[1]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["tokens"] == demo.lens(TEXTS[1]).tokens and any("<0x" in t for t in got["tokens"])
    assert "\ufffd" not in json.dumps(got, ensure_ascii=False)


def test_bom_is_stripped_from_input_file(tmp_path):
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text("In the beginning\n", encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    runs = [CliRunner().invoke(app, ["lens", "demo", "--input-file", str(p), "-f", "json"]) for p in (plain, bom)]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    a, b = (json.loads(r.stdout.splitlines()[0]) for r in runs)
    assert a["token_ids"] == b["token_ids"] and a["tokens"][0] == "In"
