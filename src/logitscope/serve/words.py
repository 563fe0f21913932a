"""The library's messages in the viewer's words.

Library errors name Python arguments (``truncate=True``, ``sublayers=True``, ``scope.embed()``);
the viewer has no such arguments, so before a message reaches the page those are replaced by what
the page offers (as ``cli/common.py`` does with the CLI's flags).
"""

from __future__ import annotations

import re

VIEWER_WORDS: list[tuple[str, str]] = [
    (r"shorten it or pass truncate=True \(keeps the first tokens; with a target, the prompt's last\)",
     "shorten it (the viewer does not cut inputs)"),
    (r"sublayers=True works with the logit lens only, not with an? [\w-]+ lens",
     "sub-layer rows work with the logit lens only: turn sub-layers off or pick the logit lens"),
    (r"; pass strict=False to apply it anyway", "; serve it with a lens trained for this model"),
    (r"use scope\.embed\(\)/scope\.nearest\(\)", "use the Embeddings tab"),
    (r"pass track=\[\.\.\.\] tokens to lens\(\)", "pin a token"),
    (r"\btop_k=(-?\d+)", r"top-k \1"),
    (r"\btop_k\b", "top-k"),
    (r"\btrack\b(?= )", "pinned tokens"),
    (r"\btarget=", "a target "),
    (r"\bgenerate=", "generate "),
]  # fmt: skip

FIELDS = {
    "top_k": "top-k",
    "track": "pinned tokens",
    "k": "neighbours",
    "generate": "generate",
    "stride": "stride",
    "position": "position",
    "text": "text",
    "target": "target",
}


def viewer_words(message: str) -> str:
    """A library message with its Python argument names replaced by the viewer's controls."""
    for pattern, repl in VIEWER_WORDS:
        message = re.sub(pattern, repl, message)
    return message


def field_label(loc) -> str:
    """The viewer's name of a request field from a validation error's ``loc`` (``a.text`` -> ``A text``)."""
    parts = [str(x) for x in loc if x != "body"]
    if not parts:
        return ""
    side = {"a": "A ", "b": "B "}.get(parts[0], "") if len(parts) > 1 else ""
    name = parts[-1]
    return side + FIELDS.get(name, name.replace("_", " "))
