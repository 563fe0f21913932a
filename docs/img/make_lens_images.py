"""Regenerate the example figures of docs/lens_output.md: ``python docs/img/make_lens_images.py``.

Uses the bundled demo model (``logitscope.load("demo")``) and, for the layout at 40+ layers, a tiny
random-init GPT-2 with 40 blocks built in code (its predictions are noise; only the layout matters).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import logitscope

HERE = Path(__file__).parent
SHORT = "Jesus answered and said unto them, Verily I say unto"
LONG = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
    "And God said, Let there be light: and there was light."
)


def demo_figures() -> None:
    scope = logitscope.load("demo", device="cpu")
    res = scope.lens(SHORT, track=[" you", " thee", " them"])
    res.plot(HERE / "lens_entropy_10.png", metric="entropy", dpi=150)
    res.plot(HERE / "lens_rank_10.png", metric="rank", dpi=150)
    res.plot_trajectory(position=-1, path=HERE / "trajectory.png", value="prob", dpi=150)
    long = scope.lens(scope.tokenizer(LONG)["input_ids"][:60])
    long.plot(HERE / "lens_entropy_60.png", metric="entropy", dpi=110)


def deep_figure() -> None:
    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    import tiny

    with tempfile.TemporaryDirectory() as tmp:
        model, tok = tiny.saved_gpt2(tmp, n_layer=40)
        scope = logitscope.Scope(model, tok, name="tiny-gpt2-40")
        res = scope.lens(tok(tiny.TEXT)["input_ids"][:60])
    res.plot(HERE / "lens_40_layers.png", metric="kl", dpi=150)


if __name__ == "__main__":
    deep_figure()
    demo_figures()
