"""Property-based fuzzing (hypothesis) of the output methods and of the API's argument types
(issue 21): whatever the destination or the argument, the outcome is a written file or one
``LogitscopeError`` (an output error naming the user's path, never a temporary); never a raw
``OSError``/``TypeError``; nothing half-written or temporary is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from test_fuzz import bounded

import logitscope
from logitscope.errors import LogitscopeError


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


@pytest.fixture(scope="module")
def results(demo):
    return {
        "lens": demo.lens("In the beginning God", track=[" the"]),
        "logits": demo.logits("In the beginning"),
        "attribution": demo.attribute("In the beginning God", target=" created"),
    }


WRITERS = {  # name: (call, suffixes it accepts)
    "LensResult.save": (lambda r, p: r["lens"].save(p), [".json", ".jsonl", ".csv", ".parquet", ".txt", ""]),
    "LensResult.plot": (lambda r, p: r["lens"].plot(p), [".png", ".svg", ".html", ".pdf", ".gif"]),
    "LensResult.plot_trajectory": (lambda r, p: r["lens"].plot_trajectory(-1, p), [".png", ".html"]),
    "LogitsResult.save": (lambda r, p: r["logits"].save(p), [".npy", ".safetensors", ".json"]),
    "AttributionResult.plot": (lambda r, p: r["attribution"].plot(p), [".png", ".html", ".svg"]),
}
PLACES = ["ok", "missing_dir", "file_as_dir", "proc", "read_only_file", "directory", "dev_null", "symlink", "empty"]


def destination(tmp: Path, place: str, name: str) -> Path | str:
    if place == "ok":
        return tmp / name
    if place == "missing_dir":
        return tmp / "no" / "such" / name
    if place == "file_as_dir":
        (tmp / "f").write_text("x")
        return tmp / "f" / name
    if place == "proc":
        return Path("/proc") / name
    if place == "read_only_file":
        (tmp / name).write_text("keep")
        (tmp / name).chmod(0o444)
        return tmp / name
    if place == "directory":
        (tmp / name).mkdir()
        return tmp / name
    if place == "dev_null":
        return "/dev/null"
    if place == "symlink":
        (tmp / "real").mkdir()
        (tmp / name).symlink_to(tmp / "real" / name)
        return tmp / name
    return ""


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@bounded(40)
@given(
    writer=st.sampled_from(sorted(WRITERS)),
    place=st.sampled_from(PLACES),
    stem=st.sampled_from(["out", "a b", "é×", ".hidden", "x.y"]),
    pick=st.integers(0, 10),
)
def test_output_methods(results, tmp_path_factory, writer, place, stem, pick):
    call, suffixes = WRITERS[writer]
    tmp = tmp_path_factory.mktemp("out")
    dest = destination(tmp, place, stem + suffixes[pick % len(suffixes)])
    before = snapshot(tmp)
    try:
        call(results, dest)
    except LogitscopeError as err:
        event(f"{writer}: {type(err).__name__}")
        msg = str(err)
        assert ".tmp" not in msg, msg
        if type(err).__name__ == "OutputError" and os.fspath(dest):  # ("" is "an empty file name")
            assert repr(os.fspath(dest)) in msg, msg
        after = snapshot(tmp)
        assert after == before, (place, sorted(set(after) ^ set(before)))
        return
    event(f"{writer}: written")
    if place != "dev_null":
        target = Path(dest).resolve()
        assert target.is_file() and target.stat().st_size > 0
    assert not [p for p in tmp.rglob(".*") if ".tmp" in p.name]


ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.lists(st.one_of(st.integers(-2, 5000), st.text(max_size=3), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([
        np.array([5, 6, 7]), np.array([5.0, 6.0]), np.array([[1, 2], [3, 4]]), np.array([], dtype=np.int64),
        np.int64(3), np.float32(2.5), torch.tensor([5, 6]), torch.tensor(1.5), torch.tensor([[7, 8]]),
        {1, 2}, (4, 5), range(3), object(), Path("demo"),
    ]),
)  # fmt: skip

CALLS = {
    "lens(inputs)": lambda s, v: s.lens(v),
    "lens(top_k=)": lambda s, v: s.lens("In the", top_k=v),
    "lens(layers=)": lambda s, v: s.lens("In the", layers=v),
    "lens(track=)": lambda s, v: s.lens("In the", track=v),
    "lens(target=)": lambda s, v: s.lens("In the", target=v),
    "lens(batch_size=)": lambda s, v: s.lens(["In", "the"], batch_size=v),
    "logits(inputs)": lambda s, v: s.logits(v),
    "logits(generate=)": lambda s, v: s.logits("In the", generate=v),
    "embed(inputs)": lambda s, v: s.embed(v),
    "nearest(k=)": lambda s, v: s.nearest(" the", k=v),
    "compare(b)": lambda s, v: logitscope.compare(s, v, "In the"),
    "load(name)": lambda s, v: logitscope.load(v),
}


@bounded(60)
@given(call=st.sampled_from(sorted(CALLS)), value=ODD)
def test_api_argument_types(demo, call, value):
    if call == "load(name)" and isinstance(value, (str, Path)) and str(value) not in ("", "demo"):
        value = f"/nonexistent/{value}"  # never the hub
    if call == "logits(generate=)" and isinstance(value, (int, np.integer)) and value > 8:
        value = 8  # stay quick
    try:
        out = CALLS[call](demo, value)
    except LogitscopeError as err:
        event(f"{call}: {type(err).__name__}")
        message = str(err)
        assert message.strip() and "Traceback" not in message  # one readable message
        assert ".tmp" not in message  # never a temporary name
        return
    event(f"{call}: ok")
    assert out is not None  # an accepted argument gives a result, never a silent None
    if (entropy := getattr(out, "entropy", None)) is not None:  # a lens result: entropies are real nats
        entropy = np.asarray(entropy)
        assert np.isfinite(entropy).all() and (entropy >= -1e-5).all()
